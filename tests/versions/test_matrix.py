"""The version matrix: its table describes the probes and stacks of today, and measuring again agrees.

The last test makes every stack's environment under ``tmp_path`` (uv links the packages from its
cache; the first run downloads them) and runs every probe on a real server: about a minute.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from bgcourse import VersionTable, version_table
from bgcourse.versions._versions import (
    FACTS,
    PROBES_FILE,
    RESULTS_FILE,
    STACKS_FILE,
    compare,
    fingerprint,
    load_results,
    load_stacks,
    measure_all,
)

ROOT = Path(__file__).resolve().parents[2]


def _probe_names() -> list[str]:
    tree = ast.parse(PROBES_FILE.read_text())
    [table] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "PROBES"
    ]
    assert isinstance(table, ast.Dict)
    return [key.value for key in table.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)]


def test_every_probe_has_a_column_heading_in_the_same_order() -> None:
    assert _probe_names() == list(FACTS)


def test_the_table_was_measured_with_todays_probes_and_stacks() -> None:
    recorded = load_results()
    assert recorded["fingerprint"] == fingerprint(), "the probes or the stacks changed: run `make versions`"
    assert list(recorded["results"]) == [stack.name for stack in load_stacks()]
    for stack, outcomes in recorded["results"].items():
        assert list(outcomes) == list(FACTS), stack
        assert not [outcome for outcome in outcomes.values() if outcome.startswith("probe failed")], stack


def test_the_pinned_stack_is_the_course_environment() -> None:
    [pinned] = [stack for stack in load_stacks() if stack.pinned]
    locked = (ROOT / "requirements.lock").read_text().splitlines()
    for package, version in pinned.pins.items():
        assert f"{package}=={version}" in locked, package


def test_the_article_stack_is_in_the_matrix() -> None:
    pins = {stack.name: stack.pins for stack in load_stacks()}
    assert pins["FastAPI 0.103.2"] == pins["FastAPI 0.103.2"] | {
        "fastapi": "0.103.2", "starlette": "0.27.0", "uvicorn": "0.23.2"
    }  # fmt: skip


def test_compare_reduces_counts_to_none_or_some() -> None:
    recorded = {"S": {"race": "'No response returned.' 10 of 10", "exit": "before the response"}}
    assert compare(recorded, {"S": {"race": "'No response returned.' 7 of 10", "exit": "before the response"}}) == []
    differences = compare(recorded, {"S": {"race": "'No response returned.' 0 of 10", "exit": "after"}})
    assert len(differences) == 2
    assert differences[0].startswith("S, exit: the table says 'before the response'")


def test_version_table_shows_only_the_stacks_that_answer() -> None:
    table = version_table("yield_exit", "task_set_in_dispatch")
    assert isinstance(table, VersionTable)
    assert [stack.name for stack, _ in table.rows] == [stack.name for stack in load_stacks()]
    fastapi_only = version_table("yield_exit_function_scope")
    assert {stack.name for stack, _ in fastapi_only.rows} == {"FastAPI 0.121.0", "FastAPI 0.163.2"}
    markdown = fastapi_only._repr_markdown_()
    assert markdown.splitlines()[0] == '| stack | the same, `scope="function"` |'
    assert fastapi_only.outcome("FastAPI 0.163.2", "yield_exit_function_scope").startswith("before the response")


def test_version_table_names_the_facts_it_knows() -> None:
    with pytest.raises(KeyError, match="no such fact: yield_exits; the facts are yield_exit, "):
        version_table("yield_exits")


def test_the_data_files_ship_with_the_package() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for path in (STACKS_FILE, RESULTS_FILE):
        assert f"{path.parent.name}/*{path.suffix}" in package_data["bgcourse"]


def test_every_stack_agrees_with_the_table_when_measured_again(tmp_path: Path) -> None:
    measured = measure_all(tmp_path, jobs=2)
    assert compare(load_results()["results"], measured) == []
