"""The zh-CN page that sets the article's claims against the course: every claim tied to a proof that exists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_editions import glossary_first_use_misses

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "notebooks" / "zh-CN" / "against_the_article.md"

# The article's six sections and its quiz, in the article's order: a word each section's heading must contain.
PARTS = ("机制", "注册", "补偿", "包装", "性能", "No response returned", "测验")

LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
FACT = re.compile(r"事实\s*(\d+\.\d+)")
CHAPTER = re.compile(r"ch\d\d_[a-z_]+\.ipynb")


SEPARATOR = re.compile(r"\|(\s*:?-+:?\s*\|)+")


@dataclass(frozen=True)
class Row:
    claim: str
    cells: tuple[str, ...]
    columns: int  # how many the table's header has


def sections(text: str) -> list[tuple[str, str]]:
    """The page's `## ` sections: (heading, body)."""
    parts = re.split(r"^## +(.+)$", text, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def table_rows(body: str) -> list[Row]:
    """The body rows of the tables in a section (header and separator rows left out)."""
    rows = []
    columns = 0
    lines = [line.strip() for line in body.splitlines()]
    for index, line in enumerate(lines):
        if not line.startswith("|") or SEPARATOR.fullmatch(line):
            continue
        cells = tuple(cell.strip() for cell in line.strip("|").split("|"))
        if index + 1 < len(lines) and SEPARATOR.fullmatch(lines[index + 1]):
            columns = len(cells)  # a header row
            continue
        rows.append(Row(cells[0], cells, columns))
    return rows


def link_problems(text: str, where: str, page: Path) -> list[str]:
    """What is wrong with the links in `text`: a missing target, a chapter link that cites no fact, or a fact
    that its chapter does not state."""
    problems = []
    for label, target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute address: not this page's to check
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            problems.append(f"{where}: [{label}]({target}) points to {path.relative_to(ROOT)}, which does not exist")
            continue
        if not CHAPTER.fullmatch(path.name):
            continue
        facts = FACT.findall(label)
        if not facts:
            problems.append(f"{where}: [{label}]({target}) links a chapter without naming a 事实 N.M")
        source = path.with_suffix(".py").read_text(encoding="utf-8")
        for number in facts:
            if f"**事实 {number}**" not in source:
                problems.append(f"{where}: {target} states no **事实 {number}** (in {path.with_suffix('.py').name})")
    return problems


def page_problems(text: str, page: Path = PAGE) -> list[str]:
    """Everything the page's tests hold it to, as messages naming the section, and the row by its claim."""
    found = sections(text)
    problems = []
    headings = [heading for heading, _ in found]
    for part in PARTS:
        if not any(part in heading for heading in headings):
            problems.append(f"no section for the article's part {part!r} (sections: {headings})")
    for heading, body in found:
        rows = table_rows(body)
        if any(part in heading for part in PARTS) and not rows:
            problems.append(f"section {heading!r} has no table of claims")
        for row in rows:
            where = f"section {heading!r}, row {row.claim!r}"
            if len(row.cells) != row.columns:
                problems.append(f"{where}: {len(row.cells)} cells under a header of {row.columns} (a stray '|'?)")
            proofs = [label for label, target in LINK.findall(row.cells[-1]) if CHAPTER.search(target)]
            if not any(FACT.search(label) for label in proofs):
                problems.append(f"{where}: no proof link (a [事实 N.M](chNN_slug.ipynb) in its last column)")
        problems += link_problems(body, f"section {heading!r}", page)
    problems += link_problems(text.split("\n## ", 1)[0], "the opening", page)
    return problems


def test_every_part_has_a_section_and_every_claim_a_proof_that_exists() -> None:
    assert page_problems(PAGE.read_text(encoding="utf-8")) == []


def test_a_glossary_term_first_appears_on_the_page_with_its_english_name() -> None:
    missing = glossary_first_use_misses(PAGE.read_text(encoding="utf-8"))
    assert not missing, f"{PAGE.name}: on first use, write {', '.join(missing)}"


def test_both_readmes_link_the_page() -> None:
    for readme in ("README.md", "README.zh-CN.md"):
        assert "notebooks/zh-CN/against_the_article.md" in (ROOT / readme).read_text(encoding="utf-8"), readme


GOOD_SECTIONS = "".join(
    f"## {number}. {part}\n\n| 说法 | 证明 |\n|---|---|\n| 一条说法 | [事实 1.1](ch01_core_mechanics.ipynb) |\n\n"
    for number, part in enumerate(PARTS, start=1)
)


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        pytest.param(
            GOOD_SECTIONS.replace("## 7. 测验", "## 7. 小结"),
            "no section for the article's part '测验'",
            id="a part without a section",
        ),
        pytest.param(
            GOOD_SECTIONS.replace("| 一条说法 | [事实 1.1](ch01_core_mechanics.ipynb) |", "| 一条说法 | 第 1 章 |", 1),
            "section '1. 机制', row '一条说法': no proof link",
            id="a row without a proof",
        ),
        pytest.param(
            GOOD_SECTIONS.replace("(ch01_core_mechanics.ipynb)", "(ch01_mechanics.ipynb)", 1),
            "[事实 1.1](ch01_mechanics.ipynb) points to notebooks/zh-CN/ch01_mechanics.ipynb, which does not exist",
            id="a notebook that does not exist",
        ),
        pytest.param(
            GOOD_SECTIONS.replace("[事实 1.1]", "[事实 1.9]", 1),
            "ch01_core_mechanics.ipynb states no **事实 1.9**",
            id="a fact the chapter does not state",
        ),
        pytest.param(
            GOOD_SECTIONS.replace("[事实 1.1]", "[第 1 章]", 1),
            "[第 1 章](ch01_core_mechanics.ipynb) links a chapter without naming a 事实 N.M",
            id="a chapter link without a fact",
        ),
    ],
)
def test_the_check_names_what_is_wrong(broken: str, expected: str) -> None:
    assert page_problems(GOOD_SECTIONS) == []
    problems = page_problems(broken)
    assert any(expected in problem for problem in problems), problems
