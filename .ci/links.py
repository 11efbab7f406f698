#!/usr/bin/env python3
"""Checks the relative links of the project's Markdown: every `[text](path)`
and `[text](path#anchor)` in the top-level documents, `rules/`, `docs/` and
`benches/` must name a file that exists and, with an anchor, a heading of
that file (GitHub's slugs). Web links are not fetched: CI has no network.
Prints each broken link as `file:line: link` and exits 1 if there is any."""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def documents():
    yield from sorted(ROOT.glob("*.md"))
    for folder in ("rules", "docs", "benches"):
        yield from sorted((ROOT / folder).rglob("*.md"))


def prose(path):
    """The lines outside fenced code blocks, with their numbers."""
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield number, line


def slug(heading):
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    return {slug(line.lstrip("#")) for _, line in prose(path) if line.startswith("#")}


def main():
    broken = []
    checked = 0
    for doc in documents():
        for number, line in prose(doc):
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue
                checked += 1
                file, _, anchor = target.partition("#")
                dest = (doc.parent / file).resolve() if file else doc
                if not dest.exists():
                    broken.append(f"{doc.relative_to(ROOT)}:{number}: {target} (no such file)")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    broken.append(f"{doc.relative_to(ROOT)}:{number}: {target} (no such heading)")
    for b in broken:
        print(b)
    print(f"links: {checked} relative links checked, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
