"""The course's command line (also ``python -m bgcourse``): ``lab`` for learners; ``release``, ``grade``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bgcourse.instructor._release import ReleaseError, build_release, chapters, find_course, stale_files

__all__ = ["main"]


class UsageError(Exception):
    """The command cannot do what was asked; the message says why."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status (0: done; 1: `release --check` found it stale; 2: bad usage)."""
    parser = _parser()
    # `lab` passes what it does not know on to JupyterLab (`make lab LAB_OPTIONS="--no-browser"`).
    options, unknown = parser.parse_known_args(argv)
    if unknown and options.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    options.jupyter_options = unknown
    try:
        course = find_course(options.course)
        result: int = options.run(options, course)
    except (ReleaseError, FileNotFoundError, UsageError) as error:
        parser.exit(2, f"bgcourse {options.command}: {error}\n")
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bgcourse", description="Release and grade the course's notebooks.")
    parser.add_argument("--course", type=Path, help="the course folder (default: the one at or above the cwd)")
    commands = parser.add_subparsers(dest="command", required=True)

    lab = commands.add_parser(
        "lab",
        help="open JupyterLab on chapter 1 of your own copy of the course (my-course/)",
        description="Copy the course's practice notebooks into COURSE/my-course/ (new chapters are added; "
        "a chapter you have edited is never overwritten: a newer version goes beside it as "
        "<chapter>.updated.ipynb), then start JupyterLab there, on chapter 1. Other options go to JupyterLab.",
    )
    lab.add_argument("--master", action="store_true", help="the master notebooks instead (authors, instructors)")
    lab.add_argument(
        "--language", choices=["en", "zh-CN"], default="en",
        help="the course's edition: en (default) or zh-CN, the Chinese one (中文版: my-course-zh-CN/)",
    )  # fmt: skip
    lab.set_defaults(run=_lab)

    release = commands.add_parser(
        "release",
        help="write the learners' copies (practice and assessed) of the notebooks and quiz files",
        description="Write release/practice/ (full quiz files: instant feedback) and release/assessed/ "
        "(quiz files without answers: feedback after grading), plus release/checksums.json.",
    )
    release.add_argument("chapters", nargs="*", help="chapter slugs, e.g. ch01_core_mechanics (default: all)")
    release.add_argument("--output", type=Path, help="where to write (default: COURSE/release)")
    release.add_argument("--check", action="store_true", help="write nothing; fail if the release is not current")
    release.set_defaults(run=_release)

    grade = commands.add_parser(
        "grade",
        help="grade SUBMISSIONS_DIR/<learner>/<chapter>.ipynb and write a gradebook",
        description="Grade every learner's notebook of an assignment in fresh, guarded kernels, in parallel; "
        "write OUTPUT/<chapter>/: gradebook.csv, learners/<learner>/results.json and feedback.md, summary.md "
        "and summary.png. Re-running gives the same files.",
    )
    grade.add_argument("submissions", type=Path, metavar="SUBMISSIONS_DIR", help="one folder a learner")
    grade.add_argument(
        "--assignment", action="append", default=[], metavar="CHAPTER", help="chapter slug (default: those handed in)"
    )
    grade.add_argument("--output", type=Path, help="gradebook folder (default: SUBMISSIONS_DIR/../gradebook)")
    grade.add_argument("--timeout", type=float, default=60, help="seconds a cell may run (default: 60)")
    grade.add_argument("--deadline", type=float, default=600, help="seconds a whole notebook may run (default: 600)")
    grade.add_argument("--memory-mb", type=int, default=4096, help="address-space limit of a kernel (default: 4096)")
    grade.add_argument("--output-limit", type=int, default=100_000, help="characters a cell may print (default: 1e5)")
    grade.add_argument("--workers", type=int, default=0, help="notebooks graded at once (default: one a CPU)")
    grade.add_argument("--no-progress", action="store_true", help="no progress bar")
    grade.add_argument(
        "--trusted-cohort",
        action="store_true",
        help="where no sandbox can be made (no bubblewrap, macOS): grade anyway, trusting every learner; "
        "the gradebook says so",
    )
    grade.set_defaults(run=_grade)

    versions = commands.add_parser(
        "versions",
        help="measure the course's version-dependent facts on every stack of the version matrix",
        description="Make one environment per stack of src/bgcourse/versions/stacks.toml (uv, under ENVIRONMENTS), "
        "run the probes of src/bgcourse/versions/_version_probes.py on a real server in each, and write "
        "src/bgcourse/versions/results.json, the table the chapters show.",
    )
    versions.add_argument(
        "--environments", type=Path, help="where the stacks' environments go (default: COURSE/.venv-versions)"
    )
    versions.add_argument("--jobs", type=int, default=2, help="stacks measured at once (default: 2)")
    versions.add_argument(
        "--check", action="store_true", help="write nothing; fail if a measurement disagrees with the table"
    )
    versions.set_defaults(run=_versions)

    edition = commands.add_parser(
        "edition",
        help="check an edition in another language against the English notebooks; start or stamp a translation",
        description="An edition (notebooks/LANGUAGE/) mirrors the English notebooks cell for cell: the same code, "
        "the same nbgrader metadata, each markdown cell stamped with a hash of the English cell it translates. "
        "With no option, list what differs, naming each cell.",
    )
    edition.add_argument("language", choices=["zh-CN"], help="the edition's language")
    edition.add_argument("--new", metavar="CHAPTER", help="start a translation: a stamped copy of the English notebook")
    edition.add_argument(
        "--stamp", action="append", default=[], metavar="CHAPTER:INDEX",
        help="record that this cell translates the English cell as it is now (after translating its change)",
    )  # fmt: skip
    edition.set_defaults(run=_edition)

    site = commands.add_parser(
        "site",
        help="build the course as a website: every chapter executed, both editions (make site)",
        description="Execute every chapter of both editions on the course's pinned versions (or reuse the cached "
        "execution when nothing it depends on has changed), then build the pages with Sphinx, MyST-NB and the "
        "book theme: English at OUTPUT/, Chinese at OUTPUT/zh-CN/. Needs the site's packages (make site-env).",
    )
    site.add_argument("--output", type=Path, help="where the site goes (default: COURSE/site; replaced on each build)")
    site.add_argument("--cache", type=Path, help="the executions' cache (default: COURSE/build/site-cache)")
    site.add_argument(
        "--work", type=Path, help="the editions' sources and Sphinx's files (default: COURSE/build/site-work)"
    )
    site.add_argument("--jobs", type=int, default=2, help="notebooks executed at once (default: 2)")
    site.add_argument(
        "--python", default=None,
        help="the interpreter the chapters run on (default: COURSE/.venv/bin/python, else this one)",
    )  # fmt: skip
    site.add_argument("--repository", help="the course's repository URL, for the pages' clone command")
    site.set_defaults(run=_site)
    return parser


def _site(options: argparse.Namespace, course: Path) -> int:
    try:
        from bgcourse.website._build import SiteError, build_site
        from bgcourse.website._execute import ExecutionFailed
    except ImportError as error:
        missing = f"the site's packages are missing ({error.name})"
        raise UsageError(f"{missing}: run `make site`, which installs them into .venv-site.") from None
    course_python = course / ".venv" / "bin" / "python"
    python = options.python or (str(course_python) if course_python.exists() else sys.executable)
    try:
        build_site(
            course,
            output=(options.output or course / "site").resolve(),
            cache=(options.cache or course / "build" / "site-cache").resolve(),
            work=(options.work or course / "build" / "site-work").resolve(),
            python=python,
            jobs=options.jobs,
            repository=options.repository,
        )
    except (SiteError, ExecutionFailed) as error:
        raise UsageError(str(error)) from None
    return 0


def _edition(options: argparse.Namespace, course: Path) -> int:
    from bgcourse.editions._editions import Edition, problems, stamp, start_translation

    edition = Edition(course, options.language)
    if options.new:
        print(f"Wrote {start_translation(edition, options.new)}: translate its markdown cells in the .py file.")
        return 0
    if options.stamp:
        for chapter, _, index in (item.partition(":") for item in options.stamp):
            stamp(edition, chapter, [int(index)])
        print(f"Stamped {len(options.stamp)} cells.")
        return 0
    found = [problem for slug in edition.slugs() for problem in problems(edition, slug)]
    for problem in found:
        print(problem)
    print(f"{len(edition.slugs())} chapters of the {options.language} edition; {len(found)} problems.")
    return 1 if found else 0


def _release(options: argparse.Namespace, course: Path) -> int:
    output = options.output or course / "release"
    if options.check:
        stale = stale_files(course, output)
        for name in stale:
            print(f"out of date: {output / name}")
        if stale:
            print("The release is not current: run `make release` (bgcourse release).", file=sys.stderr)
        return 1 if stale else 0
    written = build_release(course, output, options.chapters)
    print(f"Wrote {len(written)} files to {output}.")
    return 0


def _lab(options: argparse.Namespace, course: Path) -> int:
    from bgcourse.lab._lab import lab_arguments, prepare_lab

    folder, said = prepare_lab(course, master=options.master, language=options.language)
    for line in said:
        print(line)
    arguments = lab_arguments(course, folder, master=options.master, extra=options.jupyter_options)
    sys.stdout.flush()
    os.execv(arguments[0], arguments)  # JupyterLab takes over this process: Ctrl-C reaches it directly


def _versions(options: argparse.Namespace, course: Path) -> int:
    from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints

    from bgcourse.versions._versions import compare, load_results, load_stacks, measure_all, write_results

    stacks = load_stacks()
    root: Path = (options.environments or course / ".venv-versions").resolve()
    root.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(stacks), desc="stacks measured", unit="stack") as progress:
        measured = measure_all(root, stacks, jobs=options.jobs, progress=lambda stack: progress.update())
    if options.check:
        differences = compare(load_results()["results"], measured)
        for line in differences:
            print(line)
        if differences:
            print("The version table disagrees with what was measured: run `make versions`.", file=sys.stderr)
        else:
            print(f"All {len(stacks)} stacks agree with the version table.")
        return 1 if differences else 0
    write_results(measured)
    print(f"Measured {len(stacks)} stacks; wrote src/bgcourse/versions/results.json.")
    return 0


def _grade(options: argparse.Namespace, course: Path) -> int:
    # Imported here: grading needs matplotlib, nbclient and tqdm, which `release` does not.
    from bgcourse.instructor._grade import grade_assignment, protected_folders
    from bgcourse.instructor._gradebook import write_gradebook
    from bgcourse.instructor._isolation import SandboxUnavailableError, choose_isolation
    from bgcourse.instructor._sandbox import Limits
    from bgcourse.instructor._submissions import load_assignment

    submissions: Path = options.submissions.resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"no folder {submissions}")
    output: Path = (options.output or submissions.parent / "gradebook").resolve()
    if output.is_relative_to(submissions):
        raise UsageError(f"the gradebook {output} must not be inside {submissions}, or it would be graded too")
    known = [chapter.slug for chapter in chapters(course)]
    slugs = [Path(slug).stem for slug in options.assignment] or sorted(
        {
            path.stem
            for path in submissions.rglob("*.ipynb")
            if path.stem in known and ".ipynb_checkpoints" not in path.parts
        }
    )
    if not slugs:
        raise FileNotFoundError(f"no notebook named after a chapter in {submissions}; name one with --assignment")
    chapters(course, slugs)  # an unknown slug fails here, naming the known ones
    limits = Limits(options.timeout, options.deadline, options.memory_mb, options.output_limit)
    try:
        isolation = choose_isolation(trusted=options.trusted_cohort)
    except SandboxUnavailableError as error:
        raise UsageError(str(error)) from None
    protected = protected_folders(course, submissions, output)
    for slug in slugs:
        results = grade_assignment(
            course, submissions, slug, limits=limits, protected=protected, isolation=isolation,
            workers=options.workers, progress=not options.no_progress,
        )  # fmt: skip
        assignment = load_assignment(course.resolve(), slug)
        write_gradebook(output / slug, assignment, results, isolation=isolation.mode)
        mean = sum(result.score for result in results) / len(results) if results else 0.0
        print(f"{slug}: {len(results)} learners, mean {mean:.1f} of {assignment.total:g}; gradebook in {output / slug}")
    return 0
