"""Every link of the project's documentation resolves: relative links of the Markdown files to a file and, with
`#anchor`, to a heading there (GitHub's anchors), and every `docs/<page>.md#anchor` a comment or config cites."""
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), not images
CITED = re.compile(r"\b(docs/[\w.-]+\.md)#([\w-]+)")  # docs/<page>.md#<anchor> in code, configs and captions


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / line for line in out.stdout.splitlines()]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped (not - or _), spaces to -."""
    text = re.sub(r"`|\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file: each heading's (repeats numbered -1, -2, as GitHub does) and explicit ids."""
    found: set[str] = set()
    inside_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            inside_code = not inside_code
        elif not inside_code and (m := re.match(r"#{1,6} (.+)", line)):
            base, k = slug(m.group(1)), 0
            while (name := base if k == 0 else f"{base}-{k}") in found:
                k += 1
            found.add(name)
    found.update(re.findall(r"<a (?:id|name)=\"([^\"]+)\"", path.read_text()))
    return found


def test_slugs_follow_github():
    assert slug("Results you can trust") == "results-you-can-trust"
    assert slug("`ccreid-weights`: fetch *and* verify") == "ccreid-weights-fetch-and-verify"
    assert slug("3DSL (deviations)") == "3dsl-deviations"
    assert slug("CRE+BSGA") == "crebsga"  # "+" dropped, as GitHub does
    assert slug("Experiments: variants side by side") == "experiments-variants-side-by-side"


MARKDOWN = tracked("*.md")


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_of_a_page_resolves(page):
    broken = []
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)  # code is not links
    for target in LINK.findall(re.sub(r"`[^`\n]*`", "", text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no {file.relative_to(REPO) if file.is_relative_to(REPO) else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert broken == []


def test_every_cited_docs_anchor_resolves():
    broken = []
    for source in tracked("*.py", "*.smk", "Snakefile", "*.yaml", "*.sh", "*.rst", "*.md"):
        for page, anchor in CITED.findall(source.read_text(errors="replace")):
            if not (REPO / page).is_file() or anchor not in anchors(REPO / page):
                broken.append(f"{source.relative_to(REPO)}: {page}#{anchor}")
    assert sorted(set(broken)) == []
