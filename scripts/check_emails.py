#!/usr/bin/env python3
"""Checks the .eml files gazette wrote (e.g. with `gazette preview --out DIR`).

Usage: check_emails.py DIR [--expect N]

Every DIR/*.eml is parsed with Python's `email` package under
`email.policy.strict`, so any parse defect fails (message-level defects raise
while parsing; header defects are collected from every header of every part).
Each message needs:

  * exactly one List-Unsubscribe, a comma-separated list of one or more
    `<URI>` items, the first an absolute https:// URL (RFC 2369, RFC 8058);
  * exactly one `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058);
  * headers in US-ASCII only (non-ASCII text RFC 2047-encoded);
  * no line (header or body, any part) longer than 998 octets without its
    line ending (RFC 5322 2.1.1);
  * a multipart/alternative top level with exactly two leaf parts, text/plain
    then text/html (RFC 2046 5.1.4: the preferred, richest part goes last);
  * exactly one each of Message-ID, Date, From, To, Subject, List-Id and
    MIME-Version, and no Bcc;
  * the List-Unsubscribe https URL in both decoded bodies (the HTML one also
    after undoing entity escapes), so a reader can unsubscribe by hand too.

With --expect N there must be exactly N .eml files.

Prints `ok FILE (subject)` per good file and `FILE: problem` per problem.
Exit codes: 0 all good, 1 problems found, 2 wrong usage.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import html
import re
import sys
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

MAX_LINE = 998
ONCE = ("Message-ID", "Date", "From", "To", "Subject", "List-Id", "MIME-Version")
ONE_CLICK = "List-Unsubscribe=One-Click"
# One `<URI>` item of a List-Unsubscribe value (after unfolding).
ITEM = re.compile(r"\s*<([^<>\s]+)>\s*")


def unsubscribe_items(value: str) -> list[str] | None:
    """The URIs of a List-Unsubscribe value, or None when it is malformed."""
    items = []
    for chunk in value.split(","):
        match = ITEM.fullmatch(chunk)
        if match is None:
            return None
        items.append(match.group(1))
    return items


def describe(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def header_defects(message: EmailMessage) -> list[str]:
    """Defects of every header of every part (parsing them forces the check),
    and raw 8-bit bytes in a header (RFC 5322 headers are US-ASCII; the parser
    would quietly accept UTF-8 there)."""
    found = []
    for part in message.walk():
        for name, raw in part.raw_items():
            if not raw.isascii():
                found.append(f"header {name}: raw non-ASCII bytes (needs RFC 2047 encoding)")
        for name, value in part.items():
            for defect in getattr(value, "defects", ()):
                found.append(f"header {name}: {describe(defect)}")
        found.extend(describe(d) for d in part.defects)
    return found


class Checker:
    def __init__(self, root: Path):
        self.root = root
        self.problems = 0

    def problem(self, path: Path, message: str) -> None:
        self.problems += 1
        print(f"{path.relative_to(self.root)}: {message}")

    def long_lines(self, path: Path, raw: bytes) -> None:
        in_headers = True
        for number, line in enumerate(raw.split(b"\n"), start=1):
            line = line.removesuffix(b"\r")
            if in_headers and not line:
                in_headers = False
            if len(line) > MAX_LINE:
                where = "header" if in_headers else "body"
                self.problem(path, f"line {number} ({where}) is {len(line)} octets, "
                             f"more than {MAX_LINE}: {line[:60]!r}…")

    def check(self, path: Path) -> None:
        before = self.problems
        raw = path.read_bytes()
        self.long_lines(path, raw)
        try:
            message = email.message_from_bytes(raw, policy=email.policy.strict)
            defects = header_defects(message)
        except Exception as err:  # strict policy raises MessageDefect (and others)
            self.problem(path, f"does not parse under email.policy.strict: {describe(err)}")
            return
        for defect in defects:
            self.problem(path, f"defect: {defect}")

        for name in ONCE:
            count = len(message.get_all(name, []))
            if count != 1:
                self.problem(path, f"{count} {name} header(s), expected exactly 1")
        if message.get_all("MIME-Version", []) and str(message["MIME-Version"]).strip() != "1.0":
            self.problem(path, f"MIME-Version is {str(message['MIME-Version'])!r}, expected 1.0")
        if "Bcc" in message:
            self.problem(path, "has a Bcc header")

        url = self.list_unsubscribe(path, message)
        bodies = self.parts(path, message)
        if url and bodies:
            plain, rich = bodies
            if url not in plain:
                self.problem(path, f"the unsubscribe URL {url} is not in the text/plain body")
            if url not in rich and url not in html.unescape(rich):
                self.problem(path, f"the unsubscribe URL {url} is not in the text/html body")

        if self.problems == before:
            print(f"ok {path.relative_to(self.root)} ({message['Subject']})")

    def list_unsubscribe(self, path: Path, message: EmailMessage) -> str | None:
        """Checks List-Unsubscribe(-Post); returns its https URL when usable."""
        posts = [str(v).strip() for v in message.get_all("List-Unsubscribe-Post", [])]
        if posts != [ONE_CLICK]:
            self.problem(path, f"List-Unsubscribe-Post headers are {posts!r}, "
                         f"expected exactly [{ONE_CLICK!r}]")
        values = message.get_all("List-Unsubscribe", [])
        if len(values) != 1:
            self.problem(path, f"{len(values)} List-Unsubscribe headers, expected exactly 1")
            if not values:
                return None
        value = str(values[0])
        items = unsubscribe_items(value)
        if not items:
            self.problem(path, f"List-Unsubscribe {value!r} is not a list of <URI> items")
            return None
        first = urlsplit(items[0])
        if first.scheme != "https" or not first.netloc:
            self.problem(path, f"the first List-Unsubscribe item {items[0]!r} "
                         "is not an absolute https:// URL")
            return None
        return items[0]

    def parts(self, path: Path, message: EmailMessage) -> tuple[str, str] | None:
        """Checks the MIME structure; returns the decoded (plain, html) bodies."""
        if message.get_content_type() != "multipart/alternative":
            self.problem(path, f"top level is {message.get_content_type()}, "
                         "expected multipart/alternative")
            return None
        parts = list(message.iter_parts())
        types = [p.get_content_type() for p in parts]
        if types != ["text/plain", "text/html"]:
            self.problem(path, f"multipart/alternative holds {types}, "
                         "expected exactly ['text/plain', 'text/html']")
            return None
        bodies = []
        for part in parts:
            try:
                bodies.append(part.get_content())
            except Exception as err:
                self.problem(path, f"cannot decode the {part.get_content_type()} part: "
                             f"{describe(err)}")
                return None
        return bodies[0], bodies[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--expect", type=int, metavar="N",
                        help="require exactly N .eml files")
    args = parser.parse_args()

    root = args.dir.resolve()
    if not root.is_dir():
        print(f"check_emails.py: {args.dir} is not a folder", file=sys.stderr)
        return 2
    checker = Checker(root)
    files = sorted(root.glob("*.eml"))
    if not files:
        print(f"{root}: no .eml files found")
        return 1
    for path in files:
        checker.check(path)
    if args.expect is not None and len(files) != args.expect:
        checker.problems += 1
        print(f"{root}: {len(files)} .eml file(s), expected {args.expect}")

    if checker.problems:
        print(f"FAILED: {checker.problems} problem(s) in {len(files)} .eml file(s)")
        return 1
    print(f"all {len(files)} .eml file(s) ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
