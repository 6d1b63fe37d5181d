"""The documentation holds together: every relative link in README.md and docs/*.md
points to a file that exists (and, with a #fragment, to a heading of that page),
every docs page is reachable from README, and README stays an overview."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto: ...


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks: a link inside code is not a link."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = INLINE_CODE.sub(lambda match: match.group(0).strip("`"), heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor the page's headings give, a repeated one numbered as GitHub does."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            found.add(f"{base}-{count}" if count else base)
            seen[base] = count + 1
    return found


def relative_links(page: Path) -> list[str]:
    """The targets of the page's Markdown links and images that stay inside the repository."""
    targets = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if not EXTERNAL.match(target):
                targets.append(target)
    return targets


def broken_links(page: Path) -> list[str]:
    """One sentence per link of the page that points nowhere."""
    problems = []
    for target in relative_links(page):
        path_part, _, fragment = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            problems.append(f"{page.name}: {target} points to a missing file")
        elif fragment and destination.suffix == ".md" and fragment.lower() not in anchors(destination):
            problems.append(f"{page.name}: {target} points to no heading of {destination.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_a_missing_file_or_heading_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section: with punctuation\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#a-section-with-punctuation) [here](#page) [web](https://example.org/missing.md)\n"
        "[gone](missing.md) [no such heading](other.md#nowhere) ![no picture](images/none.png)\n"
        "```\n[inside code](not-a-link.md)\n```\n"
        "`[inline code](not-a-link-either.md)`\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "page.md: missing.md points to a missing file",
        "page.md: other.md#nowhere points to no heading of other.md",
        "page.md: images/none.png points to a missing file",
    ]


def test_anchors_follow_github():
    assert slug("Faster precision: bf16 and int8") == "faster-precision-bf16-and-int8"
    assert slug("The `genseq` command, in full") == "the-genseq-command-in-full"
    assert slug("Inside the cells: the gate inspector") == "inside-the-cells-the-gate-inspector"


def test_a_repeated_heading_gets_a_numbered_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n## Tests\n\n## Tests\n\n## Tests\n", encoding="utf-8")
    assert anchors(page) == {"page", "tests", "tests-1", "tests-2"}


def test_every_docs_page_is_linked_from_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in relative_links(README)}
    assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []


def test_readme_stays_an_overview():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move the depth into docs/"
