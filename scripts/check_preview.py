#!/usr/bin/env python3
"""Loads `gazette preview` output in headless Chromium and checks what it shows.

Usage: check_preview.py DIR OUTDIR

  1. `chromium --dump-dom file://DIR/index.html`: the DOM must hold one
     `tr.email` row per DIR/*.eml, each row linking its STEM.eml (which is how
     rows and files are matched), every link of a row must name a file that
     exists in DIR, and each row's `.subject` text must equal the decoded
     Subject of its .eml (whitespace collapsed on both sides).
  2. `--dump-dom` of the first row's digest, DIR/STEM.html: it must hold a
     link, with text, to the https List-Unsubscribe URL of DIR/STEM.eml.
  3. Screenshots into OUTDIR: index.png (1200x1600) and digest-STEM.png
     (700x2400); each must be a PNG of that size and more than 10 KB (a blank
     page is a few KB).

Chromium is /usr/bin/chromium (or $CHROMIUM), run under `timeout` with the
flags in shared/design/PEERS.md, --no-sandbox (CI runs as root) and a fresh
--user-data-dir per run.

Prints `ok FILE (…)` per good file and `FILE: problem` per problem.
Exit codes: 0 all good, 1 problems found, 2 wrong usage or Chromium missing
(never passes because a tool is missing).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--hide-scrollbars"]
TIMEOUT = 60  # seconds per Chromium run
MIN_PNG = 10 * 1024
INDEX_SIZE = (1200, 1600)
DIGEST_SIZE = (700, 2400)
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, test) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if test(child):
                    found.append(child)
                found.extend(child.find_all(test))
        return found


class TreeBuilder(HTMLParser):
    """Just enough of a DOM for Chromium's serialized, well-formed output."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse_dom(markup: str) -> Node:
    builder = TreeBuilder()
    builder.feed(markup)
    builder.close()
    return builder.root


def collapse(text: str) -> str:
    return " ".join(text.split())


def png_size(path: Path) -> tuple[int, int] | None:
    head = path.read_bytes()[:24]
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


class Checker:
    def __init__(self, root: Path, outdir: Path):
        self.root, self.outdir = root, outdir
        self.problems = 0

    def problem(self, name: str, message: str) -> None:
        self.problems += 1
        print(f"{name}: {message}")

    def chromium(self, name: str, url: str, *extra: str) -> str | None:
        """Runs headless Chromium on url; its stdout, or None after a problem."""
        with tempfile.TemporaryDirectory(prefix="gazette-chromium-") as profile:
            command = ["timeout", "--kill-after=5", str(TIMEOUT), CHROMIUM, *FLAGS,
                       f"--user-data-dir={profile}", *extra, url]
            run = subprocess.run(command, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL)
        if run.returncode != 0:
            why = "timed out" if run.returncode in (124, 137) else f"exited {run.returncode}"
            tail = [l for l in run.stderr.splitlines() if "dbus" not in l][-5:]
            self.problem(name, f"chromium {why} ({' '.join(extra)}): " + " | ".join(tail))
            return None
        return run.stdout

    def read_emails(self) -> dict[str, tuple[str, str | None]]:
        """STEM → (decoded Subject, first https List-Unsubscribe URL)."""
        emails = {}
        for path in sorted(self.root.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            url = None
            for item in str(message.get("List-Unsubscribe", "")).split(","):
                item = item.strip().strip("<>")
                if item.startswith("https://"):
                    url = item
                    break
            emails[path.stem] = (collapse(str(message.get("Subject", ""))), url)
        return emails

    def index(self, emails: dict[str, tuple[str, str | None]]) -> str | None:
        """Checks index.html's DOM; returns the stem of its first row."""
        name = "index.html"
        if not (self.root / name).is_file():
            self.problem(name, "missing")
            return None
        dom = self.chromium(name, (self.root / name).as_uri(), "--dump-dom")
        if dom is None:
            return None
        before = self.problems
        rows = parse_dom(dom).find_all(lambda n: n.tag == "tr" and "email" in n.classes())
        if len(rows) != len(emails):
            self.problem(name, f"{len(rows)} tr.email row(s), but {len(emails)} .eml file(s)")
        seen: dict[str, int] = {}
        first = None
        for number, row in enumerate(rows, start=1):
            hrefs = [a.attrs["href"] for a in row.find_all(lambda n: n.tag == "a" and "href" in n.attrs)]
            for href in hrefs:
                target = unquote(urlsplit(href).path)
                if not (self.root / target).is_file():
                    self.problem(name, f"row {number}: link {href!r} names no file in the folder")
            stems = [Path(unquote(urlsplit(h).path)).stem for h in hrefs if h.endswith(".eml")]
            if len(stems) != 1:
                self.problem(name, f"row {number}: {len(stems)} links to an .eml file, expected 1")
                continue
            stem = stems[0]
            seen[stem] = seen.get(stem, 0) + 1
            first = first or stem
            subjects = row.find_all(lambda n: "subject" in n.classes())
            if len(subjects) != 1:
                self.problem(name, f"row {number} ({stem}): {len(subjects)} .subject elements, expected 1")
                continue
            shown = collapse(subjects[0].text())
            expected = emails.get(stem, (None, None))[0]
            if expected is None:
                self.problem(name, f"row {number}: links {stem}.eml, which does not exist")
            elif shown != expected:
                self.problem(name, f"row {number} ({stem}): subject shown {shown!r}, "
                             f"but {stem}.eml has Subject {expected!r}")
        for stem in emails:
            if seen.get(stem, 0) != 1:
                self.problem(name, f"{stem}.eml has {seen.get(stem, 0)} rows, expected 1")
        if self.problems == before:
            print(f"ok {name} ({len(rows)} rows; subjects match the .eml files)")
        return first

    def digest(self, stem: str, url: str | None) -> None:
        name = f"{stem}.html"
        if url is None:
            self.problem(name, f"{stem}.eml has no https List-Unsubscribe URL to look for")
            return
        dom = self.chromium(name, (self.root / name).as_uri(), "--dump-dom")
        if dom is None:
            return
        links = parse_dom(dom).find_all(lambda n: n.tag == "a" and n.attrs.get("href") == url)
        texts = [collapse(a.text()) for a in links]
        if not any(texts):
            self.problem(name, f"no link with text to the unsubscribe URL {url} "
                         f"({len(links)} link(s) without text)")
        else:
            print(f"ok {name} (unsubscribe link {next(t for t in texts if t)!r} → {url})")

    def screenshot(self, name: str, page: Path, size: tuple[int, int]) -> None:
        out = self.outdir / name
        out.unlink(missing_ok=True)
        if self.chromium(name, page.as_uri(), f"--screenshot={out}",
                         f"--window-size={size[0]},{size[1]}") is None:
            return
        if not out.is_file():
            self.problem(name, f"chromium wrote no screenshot to {out}")
            return
        length = out.stat().st_size
        got = png_size(out)
        if got is None:
            self.problem(name, "not a PNG file")
        elif got != size:
            self.problem(name, f"{got[0]}x{got[1]} pixels, expected {size[0]}x{size[1]}")
        elif length <= MIN_PNG:
            self.problem(name, f"only {length} bytes: a blank page? (expected > {MIN_PNG})")
        else:
            print(f"ok {name} ({got[0]}x{got[1]}, {length // 1024} KB, {out})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="the folder `gazette preview --out` wrote")
    parser.add_argument("outdir", type=Path, help="where to write the screenshots")
    args = parser.parse_args()

    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        print(f"check_preview.py: Chromium is not installed at {CHROMIUM} "
              "(apt-get install chromium)", file=sys.stderr)
        return 2
    if shutil.which("timeout") is None:
        print("check_preview.py: `timeout` (coreutils) is missing", file=sys.stderr)
        return 2
    root = args.dir.resolve()
    if not root.is_dir():
        print(f"check_preview.py: {args.dir} is not a folder", file=sys.stderr)
        return 2
    outdir = args.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)

    checker = Checker(root, outdir)
    emails = checker.read_emails()
    if not emails:
        print(f"{root}: no .eml files found")
        return 1
    first = checker.index(emails)
    checker.screenshot("index.png", root / "index.html", INDEX_SIZE)
    if first is not None and (root / f"{first}.html").is_file():
        checker.digest(first, emails.get(first, (None, None))[1])
        checker.screenshot(f"digest-{first}.png", root / f"{first}.html", DIGEST_SIZE)
    else:
        checker.problem("index.html", "no first row with an existing digest .html to load")

    if checker.problems:
        print(f"FAILED: {checker.problems} problem(s)")
        return 1
    print(f"preview ok in Chromium; screenshots in {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
