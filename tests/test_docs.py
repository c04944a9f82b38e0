"""The documentation: the configuration reference is generated from the code and must not go stale, every
link between the pages lands on a file and heading that exist, and the README stays a front page."""

import re
import subprocess
import sys

import pytest

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(page):
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def local_links(page):
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if not re.match(r"[a-z]+:", target):
            yield target


def test_configuration_reference_matches_the_argument_dataclasses():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "config_reference.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_lands_on_an_existing_page_and_heading(page):
    broken = []
    for target in local_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that id in {linked.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_readme_is_a_front_page_linking_every_docs_page():
    readme = (REPO / "README.md").read_text()
    linked = {target.partition("#")[0] for target in local_links(REPO / "README.md")}
    orphans = [page.name for page in PAGES[1:] if f"docs/{page.name}" not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"
    first_screen = "\n".join(readme.splitlines()[:50])
    assert "make demo" in first_screen and "make test" in first_screen
    assert len(readme.splitlines()) <= 120, "the README is a front page: move details into docs/"
