#!/usr/bin/env python3
"""Validates the feeds gazette wrote under a folder.

Usage: check_feeds.py DIR [--expect-posts N]

For every rss.xml / atom.xml under DIR (recursively): `xmllint --noout`
must succeed, feedparser must parse it without `bozo`, and every entry needs
a title, an absolute http(s) link, a published date, and no relative
`href="…"` / `src="…"` / `srcset="…"` in its content or summary. For every
feed.json: valid JSON, version 1.1, items with id, url, title,
date_published and content, and absolute URLs. With --expect-posts N the
top-level rss.xml, atom.xml and feed.json must each hold exactly N entries.

Prints `ok FILE (N entries)` per good file and `FILE: problem` per problem.
Exit codes: 0 all good, 1 problems found, 2 a required tool is missing or
the usage is wrong (never passes because a tool is missing).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

try:
    import feedparser
except ImportError as err:  # pragma: no cover - environment problem
    print(f"check_feeds.py: cannot import feedparser ({err}); "
          "install it with `python3 -m pip install -r scripts/requirements.txt`",
          file=sys.stderr)
    sys.exit(2)

# Attributes in entry HTML that must carry absolute URLs.
URL_ATTR = re.compile(
    r"""\b(href|src|poster|srcset)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""",
    re.IGNORECASE,
)
XML_FEEDS = ("rss.xml", "atom.xml")
JSON_FEED = "feed.json"
JSON_VERSION = "https://jsonfeed.org/version/1.1"


def is_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def url_ok(url: str) -> bool:
    """Absolute http(s), or mailto:. Everything else counts as relative."""
    url = url.strip()
    return is_http(url) or url.lower().startswith("mailto:")


def bad_urls_in(markup: str) -> list[str]:
    """The relative URLs in the URL attributes of an HTML fragment."""
    bad = []
    for match in URL_ATTR.finditer(markup or ""):
        attr = match.group(1).lower()
        value = html.unescape(next(g for g in match.groups()[1:] if g is not None))
        if attr == "srcset":
            urls = [c.strip().split()[0] for c in value.split(",") if c.strip()]
        else:
            urls = [value]
        bad.extend(f'{attr}="{u}"' for u in urls if not url_ok(u))
    return bad


class Checker:
    def __init__(self, root: Path):
        self.root = root
        self.problems = 0
        self.counts: dict[Path, int] = {}

    def problem(self, path: Path, message: str) -> None:
        self.problems += 1
        print(f"{path.relative_to(self.root)}: {message}")

    def ok(self, path: Path, entries: int) -> None:
        print(f"ok {path.relative_to(self.root)} ({entries} entries)")

    def xml_feed(self, path: Path) -> None:
        before = self.problems
        run = subprocess.run(["xmllint", "--noout", str(path)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            detail = (run.stderr or run.stdout).strip().splitlines()
            self.problem(path, f"xmllint exit {run.returncode}: "
                         + " | ".join(detail[:5]))
        # No URL resolution or sanitizing: the checks must see what gazette wrote.
        parsed = feedparser.parse(path.read_bytes(), resolve_relative_uris=False,
                                  sanitize_html=False)
        if parsed.bozo:
            self.problem(path, f"feedparser bozo: {parsed.bozo_exception!r}")
        expected = "rss20" if path.name == "rss.xml" else "atom10"
        if parsed.version != expected:
            self.problem(path, f"feedparser sees version {parsed.version!r}, expected {expected!r}")
        feed_link = parsed.feed.get("link", "")
        if not is_http(feed_link):
            self.problem(path, f"feed link {feed_link!r} is not an absolute http(s) URL")
        for index, entry in enumerate(parsed.entries):
            where = f"entry {index + 1} ({entry.get('link', '?')})"
            if not entry.get("title", "").strip():
                self.problem(path, f"{where}: no title")
            link = entry.get("link", "")
            if not is_http(link):
                self.problem(path, f"{where}: link {link!r} is not an absolute http(s) URL")
            if not entry.get("published_parsed"):
                self.problem(path, f"{where}: no (parsable) published date")
            for item_id in [entry.get("id", "")]:
                if item_id and not is_http(item_id):
                    self.problem(path, f"{where}: id/guid {item_id!r} is not an absolute URL")
            markup = [c.get("value", "") for c in entry.get("content", [])]
            markup.append(entry.get("summary", ""))
            for block in markup:
                for bad in bad_urls_in(block):
                    self.problem(path, f"{where}: relative URL in content: {bad}")
        self.counts[path] = len(parsed.entries)
        if self.problems == before:
            self.ok(path, len(parsed.entries))

    def json_feed(self, path: Path) -> None:
        before = self.problems
        try:
            feed = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            self.problem(path, f"not valid JSON: {err}")
            return
        if not isinstance(feed, dict):
            self.problem(path, "top level is not an object")
            return
        if feed.get("version") != JSON_VERSION:
            self.problem(path, f"version is {feed.get('version')!r}, expected {JSON_VERSION}")
        if not isinstance(feed.get("title"), str) or not feed["title"].strip():
            self.problem(path, "feed has no title")
        for key in ("home_page_url", "feed_url"):
            if key in feed and not is_http(str(feed[key])):
                self.problem(path, f"{key} {feed[key]!r} is not an absolute http(s) URL")
        items = feed.get("items")
        if not isinstance(items, list):
            self.problem(path, "no 'items' array")
            items = []
        for index, item in enumerate(items):
            where = f"item {index + 1} ({item.get('url', '?') if isinstance(item, dict) else '?'})"
            if not isinstance(item, dict):
                self.problem(path, f"{where}: not an object")
                continue
            for key in ("id", "url", "title", "date_published"):
                if not isinstance(item.get(key), str) or not item[key].strip():
                    self.problem(path, f"{where}: missing or empty '{key}'")
            if not any(isinstance(item.get(k), str) for k in ("content_html", "content_text")):
                self.problem(path, f"{where}: neither content_html nor content_text")
            for key in ("url", "image", "banner_image", "external_url"):
                if key in item and not is_http(str(item[key])):
                    self.problem(path, f"{where}: {key} {item[key]!r} is not an absolute http(s) URL")
            for bad in bad_urls_in(item.get("content_html", "")):
                self.problem(path, f"{where}: relative URL in content_html: {bad}")
        self.counts[path] = len(items)
        if self.problems == before:
            self.ok(path, len(items))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--expect-posts", type=int, metavar="N")
    args = parser.parse_args()

    if shutil.which("xmllint") is None:
        print("check_feeds.py: xmllint is not installed (apt-get install libxml2-utils)",
              file=sys.stderr)
        return 2
    root = args.dir.resolve()
    if not root.is_dir():
        print(f"check_feeds.py: {args.dir} is not a folder", file=sys.stderr)
        return 2

    checker = Checker(root)
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and p.name in (*XML_FEEDS, JSON_FEED))
    if not files:
        print(f"{root}: no rss.xml, atom.xml or feed.json found")
        return 1
    for path in files:
        if path.name == JSON_FEED:
            checker.json_feed(path)
        else:
            checker.xml_feed(path)

    if args.expect_posts is not None:
        for name in (*XML_FEEDS, JSON_FEED):
            path = root / name
            if not path.is_file():
                checker.problem(path, "missing")
            elif checker.counts.get(path, -1) != args.expect_posts:
                checker.problem(path, f"{checker.counts.get(path)} entries, "
                                f"expected {args.expect_posts}")

    total = len(files)
    if checker.problems:
        print(f"FAILED: {checker.problems} problem(s) in {total} file(s)")
        return 1
    print(f"all {total} feed file(s) ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
