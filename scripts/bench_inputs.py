"""Deterministic synthetic inputs for scripts/bench.

Posts: Markdown with YAML front matter (title, date, tags, summary) and a
body of about 800 words (headings, paragraphs, a list, links, emphasis),
dated backwards from the pinned clock so none is in the future.

Subscribers: a CSV with email, name, segment, interests, status, personalize
and company (a custom attribute); ten segments s0..s9; a few percent
unsubscribed; names drawn from many scripts (accents, Cyrillic, Greek, CJK),
some empty (the greeting falls back).

Everything comes from a seeded random.Random, so the same parameters give
byte-identical files on every machine; a stamp file next to each output
records the parameters so a second run reuses what is there.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

# Bump when the generator's output changes, so stale inputs are rebuilt.
VERSION = 1

TAGS = [
    "ai", "machine learning", "privacy", "email", "analytics", "seo",
    "content strategy", "customer experience", "data", "personalization",
    "automation", "social media", "ecommerce", "branding", "growth", "product",
    "design", "ux", "security", "cloud", "devops", "rust", "python", "économie",
]

# Segment sN is about these interests (two tags each).
SEGMENT_INTERESTS = [
    ["ai", "machine learning"], ["privacy", "security"], ["email", "automation"],
    ["analytics", "data"], ["seo", "content strategy"],
    ["customer experience", "ux"], ["ecommerce", "growth"],
    ["branding", "social media"], ["cloud", "devops"], ["rust", "python"],
]

WORDS = """
audience signal campaign reader inbox digest editor metric journey context
insight pattern model feature dataset pipeline funnel cohort segment channel
message subject preview link button layout template summary headline story
draft review launch release roadmap budget quarter forecast trend baseline
experiment variant result effect sample signal noise latency throughput cache
query index ranking score weight factor decay window filter bubble balance
choice habit routine attention trust consent policy regulation framework
platform service customer partner vendor market brand voice tone clarity
focus detail craft practice method approach process workflow handoff review
team manager analyst engineer designer writer founder leader mentor student
simple careful steady honest useful quiet clear fresh early late rapid small
large modern classic local global open private shared personal practical
build measure learn ship test compare explain improve reduce increase choose
write read send sort rank group split merge tune plan track share keep start
""".split()

FIRST_NAMES = [
    "Ada", "Grace", "María José", "José", "Zoë", "Søren", "Łukasz", "Ægir",
    "François", "Björn", "Ólafur", "Dvořák", "Çağla", "Nguyễn Văn", "Αλέξανδρος",
    "Иван", "Ольга", "李", "伟", "さくら", "Jürgen", "Inés", "Siobhán", "Chloé",
    "Amélie", "Ngozi", "Oluwaseun", "Priya", "Ravi", "Ahmed", "Fatima", "Kai",
    "Linnea", "Mateus", "Ana", "Tomás", "Noé", "Renée", "Håkon", "Eliška",
]
LAST_NAMES = [
    "Lovelace", "Hopper", "Núñez", "Müller", "Østergaard", "Kowalski", "Dubois",
    "Andersson", "Guðmundsson", "Novák", "Yılmaz", "Trần", "Παπαδόπουλος",
    "Иванов", "王", "佐藤", "Schäfer", "Ó Briain", "Lefèvre", "Adébáyọ̀",
    "Sharma", "Haddad", "Smith", "Garcia", "Silva", "Kim", "Nakamura", "Brown",
]
ASCII_FIRST = ["ada", "grace", "maria", "jose", "zoe", "soren", "lukasz", "aegir",
               "francois", "bjorn", "olafur", "antonin", "cagla", "van", "alex",
               "ivan", "olga", "li", "wei", "sakura", "jurgen", "ines", "siobhan",
               "chloe", "amelie", "ngozi", "seun", "priya", "ravi", "ahmed",
               "fatima", "kai", "linnea", "mateus", "ana", "tomas", "noe", "renee",
               "hakon", "eliska"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com",
           "corp.example", "news.example.co.uk"]
COMPANIES = ["Analytical Engines", "Solana Labs", "Núcleo", "Fjord & Co", "Κύμα",
             "Acme", "Globex", "Initech", ""]

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
SEED = 20261125


def _stamp_ok(stamp: Path, params: dict) -> bool:
    try:
        return json.loads(stamp.read_text()) == params
    except (OSError, ValueError):
        return False


def _sentence(rng: random.Random, lo: int = 8, hi: int = 18) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


def _title(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS).capitalize() for _ in range(rng.randint(4, 8)))


def _body(rng: random.Random, target_words: int = 800) -> tuple[str, str]:
    """A Markdown body of about target_words words, and its summary."""
    parts: list[str] = []
    words = 0
    summary = _sentence(rng, 12, 22) + " " + _sentence(rng, 10, 18)
    parts.append(summary)
    words += len(summary.split())
    section = 0
    while words < target_words:
        kind = rng.random()
        if kind < 0.12:
            section += 1
            heading = _title(rng)
            parts.append(f"## {heading}")
            words += len(heading.split())
        elif kind < 0.22:
            items = [_sentence(rng, 4, 10) for _ in range(rng.randint(3, 5))]
            parts.append("\n".join(f"- {item}" for item in items))
            words += sum(len(i.split()) for i in items)
        else:
            sentences = [_sentence(rng) for _ in range(rng.randint(3, 6))]
            # Some inline Markdown: emphasis, a link, a code span.
            if rng.random() < 0.5:
                i = rng.randrange(len(sentences))
                w = sentences[i].split()
                j = rng.randrange(len(w))
                w[j] = f"**{w[j].rstrip('.')}**" + ("." if w[j].endswith(".") else "")
                sentences[i] = " ".join(w)
            if rng.random() < 0.4:
                sentences.append(f"See [the {rng.choice(WORDS)} notes](https://example.com/notes/{rng.randrange(1000)}/).")
            if rng.random() < 0.2:
                sentences.append(f"Run `{rng.choice(WORDS)} --{rng.choice(WORDS)}` first.")
            text = " ".join(sentences)
            parts.append(text)
            words += len(text.split())
    return "\n\n".join(parts) + "\n", summary


def posts(out: Path, count: int) -> Path:
    """out/ filled with count posts (reused when already generated)."""
    params = {"version": VERSION, "kind": "posts", "count": count, "seed": SEED}
    stamp = out.with_name(out.name + ".stamp")
    if out.is_dir() and _stamp_ok(stamp, params):
        return out
    if out.exists():
        for f in out.iterdir():
            f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    rng = random.Random(SEED * 31 + count)
    # Spread over three years before the clock, newest an hour before it.
    span = timedelta(days=3 * 365)
    for i in range(count):
        age = timedelta(hours=1) + span * (count - 1 - i) / max(count - 1, 1)
        date = (NOW - age).replace(microsecond=0)
        title = _title(rng)
        tags = rng.sample(TAGS, rng.randint(1, 4))
        body, summary = _body(rng)
        slug = f"p{i:05d}-" + "-".join(title.lower().split()[:4])
        front = [
            "---",
            f"title: {json.dumps(title, ensure_ascii=False)}",
            f"date: {date.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            "tags: [" + ", ".join(json.dumps(t, ensure_ascii=False) for t in tags) + "]",
        ]
        if rng.random() < 0.7:
            front.append(f"summary: {json.dumps(summary, ensure_ascii=False)}")
        front.append("---")
        (out / f"{slug}.md").write_text("\n".join(front) + "\n\n" + body, encoding="utf-8")
    stamp.write_text(json.dumps(params))
    return out


def subscribers(out: Path, count: int) -> dict:
    """out (a CSV) with count subscribers (reused when already generated).

    Returns its facts: rows, active (mailable) and unsubscribed counts."""
    params = {"version": VERSION, "kind": "subscribers", "count": count, "seed": SEED}
    stamp = out.with_name(out.name + ".stamp")
    if out.is_file() and _stamp_ok(stamp, params):
        return json.loads(out.with_name(out.name + ".facts").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    rng = random.Random(SEED * 17 + count)
    active = unsubscribed = 0
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["email", "name", "segment", "interests", "status", "personalize", "company"])
        for i in range(count):
            fi = rng.randrange(len(FIRST_NAMES))
            name = "" if rng.random() < 0.08 else f"{FIRST_NAMES[fi]} {rng.choice(LAST_NAMES)}"
            # The row number keeps every address unique.
            email = f"{ASCII_FIRST[fi]}.{i}@{rng.choice(DOMAINS)}"
            segment = f"s{rng.randrange(10)}"
            r = rng.random()
            k = 0 if r < 0.15 else 1 if r < 0.55 else 2 if r < 0.85 else 3
            interests = ";".join(rng.sample(TAGS, k))
            status = "unsubscribed" if rng.random() < 0.03 else "active"
            personalize = "false" if rng.random() < 0.05 else ""
            if status == "active":
                active += 1
            else:
                unsubscribed += 1
            w.writerow([email, name, segment, interests, status, personalize,
                        rng.choice(COMPANIES)])
    tmp.replace(out)
    facts = {"rows": count, "active": active, "unsubscribed": unsubscribed}
    out.with_name(out.name + ".facts").write_text(json.dumps(facts))
    stamp.write_text(json.dumps(params))
    return facts


def head(src: Path, out: Path, rows: int) -> dict:
    """out: the header and the first rows of the subscribers file src."""
    active = unsubscribed = 0
    with open(src, newline="", encoding="utf-8") as f, \
            open(out, "w", newline="", encoding="utf-8") as g:
        r = csv.reader(f)
        w = csv.writer(g, lineterminator="\n")
        w.writerow(next(r))
        for i, row in enumerate(r):
            if i >= rows:
                break
            w.writerow(row)
            if row[4] == "active":
                active += 1
            else:
                unsubscribed += 1
    return {"rows": active + unsubscribed, "active": active, "unsubscribed": unsubscribed}


def config(*, content: str, audience: str, concurrency: int = 4, tags_feeds: bool = True) -> str:
    """gazette.yaml for a bench project: ten segments s0..s9."""
    lines = [
        "site:",
        '  title: "Bench Weekly — synthetic posts"',
        '  base_url: "https://bench.example.com"',
        '  description: "Generated by scripts/bench."',
        '  author: { name: "Bench editors", email: "editors@bench.example.com" }',
        "content:",
        f"  dir: {json.dumps(content)}",
        "feeds:",
        "  out: public",
        "  limit: 20",
        "  content: full",
        f"  tags: {'true' if tags_feeds else 'false'}",
        "audience:",
        f"  file: {json.dumps(audience)}",
        "digest:",
        "  first_issue_posts: 10",
        "  max_posts: 5",
        "  half_life_days: 14",
        "segments:",
    ]
    for n, interests in enumerate(SEGMENT_INTERESTS):
        lines += [
            f"  - id: s{n}",
            f'    name: "Segment {n}"',
            f"    match: {{ segment: s{n} }}",
            "    interests: [" + ", ".join(json.dumps(t, ensure_ascii=False) for t in interests) + "]",
        ]
        if n % 3 == 0:
            lines += [
                "    subject:",
                '      - { id: plain, text: "{{ site.title }}: {{ picks[0].title }}" }',
                '      - { id: ask, text: "Have you seen {{ picks[0].title }}?" }',
            ]
        if n % 2 == 0:
            lines += [
                "    cta:",
                '      - { id: demo, text: "Book a demo", url: "/demo/" }',
                '      - { id: guide, text: "Get the guide", url: "/guide/" }',
            ]
    lines += [
        "  - id: default",
        '    name: "Everyone else"',
        "email:",
        '  from: "Bench Weekly <digest@bench.example.com>"',
        '  postal_address: "Bench Media, 1 Example Street, London EC1A 1AA"',
        "  utm: { source: gazette, medium: email }",
        "unsubscribe:",
        '  url: "https://bench.example.com/unsubscribe"',
        '  mailto: "unsubscribe@bench.example.com"',
        "delivery:",
        f"  concurrency: {concurrency}",
        "  retries_in_run: 0",
        "  max_connection_failures: 3",
        "",
    ]
    return "\n".join(lines)
