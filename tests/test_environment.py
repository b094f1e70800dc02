"""One set of pins: pyproject.toml, environment.yml and requirements.lock agree.

The `site` extra (the website's builder) is pinned apart: it is installed into .venv-site from
requirements-site.lock, never into the course's environment, and that lock must keep every
version requirements.lock chose (the site's chapters run on the course's own packages).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[a-z0-9,]+\])?==([^;\s]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines:
        match = PIN.match(line.strip())
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


SITE_EXTRA = "site"


def pyproject_pins(*, site: bool = False) -> dict[str, str]:
    """The course's pins (its dependencies and every extra but the site's), or the site extra's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    every = list(extras[SITE_EXTRA]) if site else list(project["dependencies"])
    for name, extra in extras.items():
        if name != SITE_EXTRA and not site:
            every += extra
    unpinned = [requirement for requirement in every if not PIN.match(requirement)]
    assert not unpinned, f"pyproject.toml has requirements without an exact pin: {unpinned}"
    return pins(every)


def environment_pins() -> dict[str, str]:
    # environment.yml is simple enough to read without a YAML parser: the pip section's items.
    lines = (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines()
    start = lines.index("  - pip:")
    items = [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]
    assert "-e ." in items, "environment.yml must install the helper package (`- -e .` in its pip section)"
    return pins(items)


def test_environment_yml_lists_exactly_the_pyproject_pins() -> None:
    assert environment_pins() == pyproject_pins()


def test_the_lock_contains_every_pin() -> None:
    locked = pins((ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines())
    missing = {name: version for name, version in pyproject_pins().items() if locked.get(name) != version}
    assert not missing, f"requirements.lock disagrees with pyproject.toml on {missing}; run `make lock`"


def test_the_site_lock_contains_the_site_pins_and_keeps_the_course_lock() -> None:
    site = pins((ROOT / "requirements-site.lock").read_text(encoding="utf-8").splitlines())
    course = pins((ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines())
    missing = {name: version for name, version in pyproject_pins(site=True).items() if site.get(name) != version}
    assert not missing, f"requirements-site.lock disagrees with pyproject.toml on {missing}; run `make lock`"
    moved = {name: (course[name], version) for name, version in site.items() if course.get(name, version) != version}
    assert not moved, f"requirements-site.lock moved these pins of requirements.lock (course, site): {moved}"
    # The site executes the chapters on the course's interpreter, and builds on these.
    assert {"fastapi", "starlette", "nbformat", "nbclient"} <= set(site)


def test_testclient_imports_without_a_deprecation_warning() -> None:
    # A fresh interpreter, so that no earlier import has already used up the warning.
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import fastapi.testclient, starlette.testclient"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
