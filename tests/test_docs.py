"""What a newcomer reads: the README stays short and shows a curl example of every endpoint in
docs/API.md; the README and docs/ speak to users (no issue numbers, no internal documents); the
Makefile's targets do what the README says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = [
    p
    for pattern in ("service/**/*", "models/**/*.py", "benchmarks/**/*.py", "tests/**/*.py", "scripts/*", "docker/**/*",
                    "docs/experiments/*.py", "Makefile", "pyproject.toml", "docker-compose*.yml", ".env.example")
    for p in sorted(ROOT.glob(pattern))
    if p.is_file() and p.suffix not in (".png", ".pyc") and p != Path(__file__)
]  # fmt: skip
"""What a reviewer reads walking the code."""
INTERNAL = (r"\bissue \d", r"\bDESIGN\b", r"shared folder", r"\bshared/")
"""References to documents and issues users and reviewers do not have."""


def test_the_readme_is_at_most_200_lines() -> None:
    assert len(README.splitlines()) <= 200


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_cite_no_issue_and_no_internal_document(path: Path) -> None:
    text = path.read_text()
    for pattern in (*INTERNAL, r"this machine"):
        assert not re.search(pattern, text, re.IGNORECASE), f"{pattern!r} in {path.name}"


def test_the_code_cites_no_issue_and_no_internal_document() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {pattern!r}"
        for path in SOURCES
        for pattern in INTERNAL
        if re.search(pattern, path.read_text(errors="replace"), re.IGNORECASE)
    ]
    assert not found, found


def curl_requests(text: str) -> set[tuple[str, str]]:
    """(method, path) of every ``curl ... $API/path`` in ``text``'s code, continuation lines joined."""
    requests = set()
    for line in text.replace("\\\n", " ").splitlines():
        if not line.startswith("curl "):
            continue
        match = re.search(r"\$API(/[^\s\"?]*)", line)
        assert match, line
        method = "DELETE" if "-X DELETE" in line else "POST" if re.search(r" -[Fd] ", line) else "GET"
        requests.add((method, match.group(1)))
    return requests


def test_the_readme_has_a_curl_example_of_every_endpoint() -> None:
    endpoints = re.findall(r"^\| (GET|POST|DELETE) \| (/\S*) \|", (ROOT / "docs/API.md").read_text(), re.MULTILINE)
    assert len(endpoints) >= 16
    examples = curl_requests(README)
    for method, path in endpoints:
        pattern = re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$")
        assert any(m == method and pattern.match(p) for m, p in examples), f"no README example of {method} {path}"


def test_make_test_fast_leaves_out_the_e2e_tests_and_ci_runs_lint_and_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r'^test-fast:.*\n\t\$\(BIN\)/pytest -q -m "not e2e"$', makefile, re.MULTILINE)
    assert re.search(r"^test: .*\bredis\b.*\bbrowser\b|^test: .*\bbrowser\b.*\bredis\b", makefile, re.MULTILINE)
    ci = (ROOT / ".ci/run").read_text()
    assert "make lint" in ci and "make test" in ci
