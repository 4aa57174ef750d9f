#!/usr/bin/env python3
"""Delivery checks: `gazette send` against real SMTP server processes.

Usage: check_delivery.py GAZETTE [CHECK ...] [--kills N] [--signals N] [--seed N] [--keep]

GAZETTE is the gazette binary. CHECK is any of the names below (default: all,
in this order). Every server binds 127.0.0.1 on a free port and is stopped at
the end, pass or fail. A missing peer is a failure, never a skip.

  faults   aiosmtpd scripted per recipient: 451/550 at RCPT, 451/554 at the
           end of DATA, a 421 and close in answer to the message (deferred,
           retried), a drop right after DATA's end, stalls past
           `delivery.timeout_seconds`; a peer that closes its connections after
           every 3 messages (silently, and with a 421), and one whose idle
           timeout is shorter than the pause the rate limit makes between two
           messages of a connection. Each case checks
           the ledger rows, the exit code, what the server got and that nobody
           got a message twice; later runs check the retries (backoff,
           max_attempts, resend_unknown: false, then the default resending an
           always-stalling message until max_attempts).
  relay    aiosmtpd peers that refuse what they would refuse for anyone:
           every RCPT with 554 5.7.1, MAIL FROM with 554 and with 451, the
           message with a 554 (no enhanced code), a quota (550 5.4.5) after
           5 messages, 550 5.1.1 to every reader (a streak, past
           delivery.refusal_streak); and a peer without SMTPUTF8 (readers
           josé@example.com and user@bücher.de). For each: the ledger (relay
           problems leave the messages `pending` with no attempt counted),
           who is suppressed (nobody), the exit code (1 for a 5xx, 75 for a
           4xx), the reply printed on stderr with the reader who got it, and
           a later run against a healthy peer that mails everyone exactly
           once.
  sink     Postfix smtp-sink: a clean send of 300 readers (all `sent`, one
           message each, Message-IDs as in the ledger), then `-r RCPT` (4xx:
           deferred, then failed after max_attempts), `-f RCPT` (5xx: failed
           with 500 5.3.0, a relay problem: exit 1, the run stops, nobody
           suppressed, a clean sink then mails everyone once), `-Q MAIL` (421 and
           disconnect: deferred) and `-q .` (no reply to the message: at most
           max_connection_failures in a row, then exit 75 with the rest
           pending).
  crash    kill -9 of `send` (two connections, default settings) at random
           moments against a slow aiosmtpd peer that keeps a message only
           once its 250 goes out, --kills times (default 50, seed printed).
           After every kill: nothing received whose row is not
           sent/sending/unknown, every `sent` received, at most 6 rows
           `sending` per connection, and of the messages that reached the
           peer unconfirmed, at most one per connection whose 250 went out
           more than 300 ms before the kill (the rest were acknowledged
           during the group commit under way). Then ONE plain run (it may
           not say "nothing new" while readers are not sent): every reader `sent` and
           received, copies only of messages that reached the peer
           unconfirmed at a kill, all with the ledger's Message-ID.
  sigterm  SIGTERM of `send` at random moments, --signals times (default
           10): each run exits 75 and says so, leaves nothing `sending` or
           `unknown`, the peer has exactly the `sent` ones; then a plain run
           mails everyone exactly once.
  overlap  two `send` started at the same moment (several rounds, with the
           lock file of an earlier run in place): one proceeds, the other
           exits 75 with "another send is in progress (pid N)", N the pid of
           the one that proceeds.
  handover an unsubscribe recorded (`gazette unsubscribe`) while the reader's
           message waits in the send's queue, its `sending` mark written:
           the message never goes, the delivery ends `suppressed`, everyone
           else is mailed once.
  throttle an aiosmtpd peer that takes 20 messages a second and answers
           "451 4.7.0 too many messages, slow down" beyond: the run says it
           slows down, finishes within itself (what was deferred is tried
           again in the run), every reader gets one message.
  state    Postfix smtp-sink, 200 readers: after an issue and 10
           unsubscribes, `.gazette/` deleted: `send` exits 1 naming
           --first-issue with no transaction; `send --first-issue` mails the
           190 others and none of the 10 (suppressed.csv imported). Then a
           0-byte, a truncated and a garbage state.db, and a state.db-wal
           without its state.db: each exit 1 naming the file, no transaction;
           `state restore` of a backup: the next run has nothing new and makes
           no transaction.
  maildev  maildev@2.2.1 (scripts/node_modules) end to end with the sample
           project and `--smtp smtp://127.0.0.1:PORT` only: count,
           recipients, one List-Unsubscribe, the one-click
           List-Unsubscribe-Post, no Bcc, both MIME parts, Message-IDs as in
           the ledger.

Prints `ok …` per case passed and `FAIL: …` per case failed (every case runs;
the failures are listed again at the end). Exit codes: 0 all passed, 1 some
failed, 2 wrong usage. --keep leaves the temporary projects in place.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.parser
import email.policy
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "some-32-byte-test-key-xxxxxxxxxxx"
NOW = "2026-06-01T12:00:00Z"
LATER = "2026-06-02T12:00:00Z"  # past every retry time the checks configure
HELD = re.compile(r"another send is in progress \(pid (\d+)\)")
CHECKS = ("faults", "relay", "sink", "crash", "sigterm", "overlap", "handover", "throttle", "state", "maildev")


class Failed(Exception):
    """A check failed; the message says what and how."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def ok(message: str) -> None:
    print(f"ok {message}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None, what: str, timeout: float = 20) -> None:
    """Waits until something accepts on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Failed(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise Failed(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def mid_of(raw: bytes) -> str | None:
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    value = headers.get("Message-ID")
    return value.strip() if value else None


# --------------------------------------------------------------------------
# Processes: every one started here is killed at the end.


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, **kwargs)
        self.running.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.running.clear()


PROCS = Processes()


# --------------------------------------------------------------------------
# A project: the sample project's config and posts, with its own readers.


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    pid: int = 0

    def show(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


class Project:
    def __init__(self, gazette: Path, base: Path, name: str, readers: list[str] | None = None,
                 **delivery) -> None:
        self.gazette = gazette
        self.dir = base / name
        self.dir.mkdir(parents=True)
        shutil.copytree(ROOT / "content", self.dir / "content")
        shutil.copy(ROOT / "subscribers.csv", self.dir / "subscribers.csv")
        self.base_config = (ROOT / "gazette.yaml").read_text()
        check("\ndelivery:" not in self.base_config,
              "the sample gazette.yaml has a delivery: block; the checks add their own")
        if readers is not None:
            rows = "".join(f"{address},Reader {i}\n" for i, address in enumerate(readers))
            (self.dir / "subscribers.csv").write_text("email,name\n" + rows)
        # These checks follow retries across runs; the second try within a
        # run (a pause of retry_in_run_seconds) is tested in cargo test.
        self.delivery: dict = {"retries_in_run": 0}
        self.configure(**delivery)

    def configure(self, **delivery) -> None:
        """Sets `delivery:` keys (None removes one)."""
        for key, value in delivery.items():
            if value is None:
                self.delivery.pop(key, None)
            else:
                self.delivery[key] = value
        text = self.base_config
        if self.delivery:
            text += "\ndelivery:\n" + "".join(
                f"  {k}: {json.dumps(v)}\n" for k, v in self.delivery.items())
        (self.dir / "gazette.yaml").write_text(text)

    def env(self, now: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GAZETTE_")}
        env.update(GAZETTE_SECRET=SECRET, GAZETTE_NOW=now, NO_COLOR="1")
        return env

    def args(self, *args: str) -> list[str]:
        return [str(self.gazette), "-C", str(self.dir), *args]

    def run(self, *args: str, now: str = NOW, timeout: float = 120) -> Result:
        proc = PROCS.start(self.args(*args), env=self.env(now), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise Failed(f"gazette {' '.join(args)} did not end within {timeout:.0f} s\n{out}{err}")
        return Result(proc.returncode, out, err, proc.pid)

    def send(self, port: int, now: str = NOW, timeout: float = 120) -> Result:
        return self.run("send", "--smtp", f"smtp://127.0.0.1:{port}", now=now, timeout=timeout)

    def start_send(self, port: int, now: str = NOW) -> subprocess.Popen:
        return PROCS.start(self.args("send", "--smtp", f"smtp://127.0.0.1:{port}"),
                           env=self.env(now), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)

    def db(self) -> sqlite3.Connection:
        path = self.dir / ".gazette" / "state.db"
        check(path.exists(), f"no ledger at {path}")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def rows(self) -> dict[str, dict]:
        """The deliveries of every issue, by address (one issue per project here)."""
        with self.db() as conn:
            rows = [dict(r) for r in conn.execute("SELECT * FROM deliveries")]
        issues = {r["issue_id"] for r in rows}
        check(len(issues) <= 1, f"expected one issue in the ledger, found {sorted(issues)}")
        return {r["address"]: r for r in rows}

    def suppressed(self) -> dict[str, str]:
        with self.db() as conn:
            return {r["address"]: r["reason"] for r in conn.execute("SELECT * FROM suppression")}

    def status_json(self) -> list:
        res = self.run("status", "--format", "json")
        check(res.code == 0, f"gazette status failed: {res.show()}")
        return json.loads(res.stdout)


def statuses(rows: dict[str, dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows.values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return dict(sorted(counts.items()))


def expect_exit(res: Result, code: int, what: str) -> None:
    check(res.code == code, f"{what}: expected exit {code}, got {res.show()}")


# --------------------------------------------------------------------------
# The aiosmtpd peer: one handler, faults chosen by the recipient's local part.

# local-part prefix -> fault
RCPT_451, RCPT_550 = "rcpt451", "rcpt550"
DATA_451, DATA_554 = "data451", "data554"
DROP = "drop"            # the message arrives, then the connection closes: no reply
STALL = "stall"          # the message arrives, the 250 comes after `stall` seconds
STALL_RCPT = "slowrcpt"  # RCPT answered after `stall` seconds
DATA_421 = "data421"     # the message arrives, then "421 closing" and the connection closes
FAULTS = (RCPT_451, RCPT_550, DATA_451, DATA_554, DROP, STALL, STALL_RCPT, DATA_421)
THROTTLED = "451 4.7.0 too many messages, slow down"


@dataclass
class Got:
    """A message the peer accepted (or took in before dropping/stalling)."""
    rcpt: str
    message_id: str | None
    reply: str | None   # the reply the peer gave, None when it gave none
    session: int
    at: float = field(default_factory=time.monotonic)  # when it was kept


@dataclass
class Peer:
    """aiosmtpd on 127.0.0.1:port with a scriptable handler."""
    delay: float = 0.0          # wait before every 250 to DATA (a slow peer)
    stall: float = 3.0          # how long STALL / STALL_RCPT wait
    idle_timeout: float = 60    # aiosmtpd's own: 421 and close after so long idle
    close_after: int | None = None   # close each session at the MAIL after N messages
    close_with_421: bool = False     # … saying 421 first
    faults: bool = True
    # Offer PIPELINING (RFC 2920), as Postfix and the big relays do: gazette
    # then sends each message's data with the next one's envelope in one
    # write. Without it, one command at a time.
    pipelining: bool = True
    # True: a message counts as received only once its 250 is being sent (the
    # client gone during `delay` cancels it), so a duplicate can only come
    # from a kill between the 250 and the client's commit. False: as soon as
    # it is in, like a relay that queues before it replies.
    keep_on_reply: bool = False
    # Offer SMTPUTF8 (RFC 6531); without it a UTF-8 address cannot be sent.
    smtputf8: bool = True
    # Called with the recipient of each message as it is kept (on the
    # peer's loop: the session waits for it).
    on_message: object = None
    # Messages a second the peer takes; beyond, RCPT gets THROTTLED.
    per_second: float | None = None
    got: list = field(default_factory=list)
    transactions: int = 0
    sessions: int = 0
    throttled: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.port = 0
        self.controller = None
        self.bucket = (self.per_second or 0.0, time.monotonic())

    # aiosmtpd hooks (run on the controller's loop thread)
    def fault(self, address: str) -> str | None:
        if not self.faults:
            return None
        local = address.split("@")[0].lower()
        return next((f for f in FAULTS if local.startswith(f)), None)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not hasattr(session, "number"):
            with self.lock:
                self.sessions += 1
                session.number = self.sessions
                session.messages = 0
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.close_after and getattr(session, "messages", 0) >= self.close_after:
            # A server that takes N messages a connection ends it at the
            # next MAIL (as relays with a per-connection limit do), which a
            # pipelining client may have sent with the Nth message.
            if self.close_with_421:
                server.transport.write(b"421 4.4.2 closing the connection\r\n")
            server.transport.close()
            await asyncio.sleep(3600)  # cancelled when the connection is lost
        with self.lock:
            self.transactions += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    def take_token(self) -> bool:
        """A token bucket of `per_second` a second, as deep as one second."""
        if self.per_second is None:
            return True
        with self.lock:
            tokens, then = self.bucket
            now = time.monotonic()
            tokens = min(self.per_second, tokens + (now - then) * self.per_second)
            if tokens < 1:
                self.bucket = (tokens, now)
                self.throttled += 1
                return False
            self.bucket = (tokens - 1, now)
            return True

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not self.take_token():
            return THROTTLED
        fault = self.fault(address)
        if fault == RCPT_451:
            return "451 4.3.0 try again later"
        if fault == RCPT_550:
            return "550 5.1.1 no such mailbox"
        if fault == STALL_RCPT:
            await asyncio.sleep(self.stall)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        rcpt = ",".join(envelope.rcpt_tos)
        fault = self.fault(rcpt)
        if fault == DATA_451:
            return "451 4.3.0 queue busy"
        if fault == DATA_554:
            # A mailbox-level refusal after the message (a bounce); a 554
            # without a mailbox code there is a relay problem (check relay).
            return "554 5.2.1 mailbox disabled"
        if fault == DATA_421:
            # A throttling relay: it answers the message with 421 and closes,
            # having taken nothing.
            server.transport.write(b"421 4.7.0 too many messages, closing\r\n")
            server.transport.close()
            await asyncio.sleep(3600)  # cancelled when the connection is lost
        raw = envelope.original_content or envelope.content
        number = getattr(session, "number", 0)
        if self.keep_on_reply and self.delay:
            await asyncio.sleep(self.delay)  # cancelled if the client goes away
        with self.lock:
            index = len(self.got)
            reply = f"250 2.0.0 OK queued as Q{index:05d}.{rcpt}"
            got = Got(rcpt, mid_of(raw), None if fault == DROP else reply, number)
            self.got.append(got)
        if self.on_message is not None:
            self.on_message(rcpt)
        if fault == DROP:
            server.transport.close()
            await asyncio.sleep(3600)  # cancelled when the connection is lost
        if fault == STALL:
            await asyncio.sleep(self.stall)
        if self.delay and not self.keep_on_reply:
            await asyncio.sleep(self.delay)
        session.messages = getattr(session, "messages", 0) + 1
        return reply

    # control
    def start(self) -> "Peer":
        try:
            from aiosmtpd.controller import Controller
        except ImportError as err:
            raise Failed(f"aiosmtpd is missing ({err}); pip install -r scripts/requirements.txt")
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                     ready_timeout=10, decode_data=False,
                                     enable_SMTPUTF8=self.smtputf8, timeout=self.idle_timeout)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> "Peer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def snapshot(self) -> list:
        with self.lock:
            return list(self.got)

    def by_rcpt(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for got in self.snapshot():
            out.setdefault(got.rcpt, []).append(got)
        return out


def no_duplicates(received: dict[str, list], what: str) -> None:
    twice = {a: len(g) for a, g in received.items() if len(g) > 1}
    check(not twice, f"{what}: readers got a message more than once: {twice}")


# --------------------------------------------------------------------------
# faults: aiosmtpd, per recipient


def fault_readers(n: int) -> list[str]:
    readers = [f"reader{i:02d}@example.com" for i in range(n)]
    return readers + [f"{f}@example.com" for f in (RCPT_451, RCPT_550, DATA_451, DATA_554, DROP)]


def check_replies(gazette: Path, base: Path, concurrency: int) -> None:
    """451/550 at RCPT, 451/554 at DATA's end, a drop after DATA's end."""
    what = f"faults (concurrency {concurrency})"
    # resend_unknown: false (at most once) first; the default later.
    project = Project(gazette, base, f"faults-c{concurrency}", fault_readers(16),
                      concurrency=concurrency, timeout_seconds=2, max_attempts=2,
                      retry_after_minutes=60, resend_unknown=False)
    with Peer() as peer:
        res = project.send(peer.port)
        expect_exit(res, 1, f"{what}: first run (5xx failures)")
        rows = project.rows()
        received = peer.by_rcpt()
        no_duplicates(received, what)
        normal = [a for a in rows if a.startswith("reader")]
        for address in normal:
            row = rows[address]
            check(row["status"] == "sent",
                  f"{what}: {address} should be sent, is {row['status']} ({row['last_reply']})")
            got = received.get(address, [])
            check(len(got) == 1, f"{what}: {address} is sent but the peer got {len(got)} copies")
            check(row["last_reply"] == got[0].reply,
                  f"{what}: {address}: ledger reply {row['last_reply']!r} is not the peer's "
                  f"reply to its message {got[0].reply!r}")
            check(got[0].message_id == row["message_id"],
                  f"{what}: {address}: Message-ID {got[0].message_id} != ledger {row['message_id']}")
        expect = {
            f"{RCPT_451}@example.com": ("deferred", "451"),
            f"{DATA_451}@example.com": ("deferred", "451"),
            f"{RCPT_550}@example.com": ("failed", "550"),
            f"{DATA_554}@example.com": ("failed", "554"),
        }
        for address, (status, code) in expect.items():
            row = rows[address]
            check(row["status"] == status and code in (row["last_reply"] or ""),
                  f"{what}: {address} should be {status} with a {code} reply, is "
                  f"{row['status']} ({row['last_reply']})")
            check(address not in received, f"{what}: {address} was rejected but the peer kept it")
        first_retry = datetime.fromisoformat(NOW.replace("Z", "+00:00")) + timedelta(minutes=60)
        for address in (f"{RCPT_451}@example.com", f"{DATA_451}@example.com"):
            nxt = rows[address]["next_attempt"]
            check(nxt is not None and datetime.fromisoformat(nxt) == first_retry,
                  f"{what}: deferred {address} should next be tried retry_after_minutes=60 "
                  f"later, at {first_retry.isoformat()}, not {nxt}")
        drop = rows[f"{DROP}@example.com"]
        check(drop["status"] == "unknown",
              f"{what}: a drop right after DATA's end should be unknown, is {drop['status']}")
        check(len(received.get(f"{DROP}@example.com", [])) == 1,
              f"{what}: the dropped message should have reached the peer once")
        bounced = project.suppressed()
        for address in (f"{RCPT_550}@example.com", f"{DATA_554}@example.com"):
            check(bounced.get(address) == "bounced",
                  f"{what}: {address} (5xx) is not in the suppression list as bounced: {bounced}")
        for address in (f"{RCPT_451}@example.com", f"{DATA_451}@example.com"):
            check(address not in bounced, f"{what}: a 4xx put {address} in the suppression list")
        check("not confirmed" in res.stderr or "unknown" in res.stderr,
              f"{what}: the unknown message is not reported: {res.stderr!r}")
        ok(f"{what}: 451 at RCPT and DATA deferred, 550/554 failed and bounced, drop after DATA "
           f"unknown, {len(normal)} others sent once with their own 250, exit 1")

        # Run again at once: nothing due (the deferred wait, and with
        # resend_unknown: false the unknown one is not resent).
        before = peer.transactions
        res = project.send(peer.port)
        expect_exit(res, 0, f"{what}: second run at once")
        check(peer.transactions == before,
              f"{what}: second run at once made {peer.transactions - before} SMTP transactions")
        check(project.rows() == rows, f"{what}: second run at once changed the ledger")
        ok(f"{what}: a second run at once makes no SMTP transaction and exits 0")

        # A day later: the deferred are due and 4xx again; max_attempts 2 -> failed.
        res = project.send(peer.port, now=LATER)
        # They fail for good now: exit 1 ("some messages failed permanently").
        expect_exit(res, 1, f"{what}: run after the retry time (4xx again, max_attempts reached)")
        rows2 = project.rows()
        for address in (f"{RCPT_451}@example.com", f"{DATA_451}@example.com"):
            row = rows2[address]
            check(row["status"] == "failed",
                  f"{what}: {address} got a 4xx on both of its max_attempts=2 attempts and "
                  f"should now be failed; it is {row['status']} with attempts={row['attempts']} "
                  f"next_attempt={row['next_attempt']} ({row['last_reply']})")
            check(address not in project.suppressed(),
                  f"{what}: {address} failed on 4xx but was added to the suppression list")
        for address in (f"{RCPT_550}@example.com", f"{DATA_554}@example.com"):
            check(rows2[address]["attempts"] == rows[address]["attempts"],
                  f"{what}: a 5xx delivery {address} was tried again")
        no_duplicates(peer.by_rcpt(), what)
        ok(f"{what}: deferred retried after the backoff, failed after max_attempts, not bounced")

        # resend_unknown: the dropped message goes again with its Message-ID.
        # (Still within max_age_hours: an unknown message of an older issue
        # is given up, not resent.)
        project.configure(resend_unknown=True)
        peer.faults = False
        res = project.send(peer.port, now=LATER)
        expect_exit(res, 0, f"{what}: run with resend_unknown")
        rows3 = project.rows()
        received = peer.by_rcpt()
        got = received[f"{DROP}@example.com"]
        check(rows3[f"{DROP}@example.com"]["status"] == "sent" and len(got) == 2
              and got[0].message_id == got[1].message_id == drop["message_id"],
              f"{what}: resend_unknown should send the unknown message again with the same "
              f"Message-ID: {rows3[f'{DROP}@example.com']['status']}, {got}")
        for address in expect:
            check(address not in received, f"{what}: failed {address} was sent later")
        twice = {a for a, g in received.items() if len(g) > 1}
        check(twice == {f"{DROP}@example.com"}, f"{what}: duplicates beyond the unknown: {twice}")
        ok(f"{what}: resend_unknown sends the unknown message again with the same Message-ID, "
           f"nothing else")


def check_stalls(gazette: Path, base: Path) -> None:
    """A stall past timeout_seconds at RCPT and after DATA's end."""
    what = "stalls"
    readers = [f"reader{i:02d}@example.com" for i in range(10)]
    readers += [f"{STALL}@example.com", f"{STALL_RCPT}@example.com"]
    project = Project(gazette, base, "stalls", readers, concurrency=1, timeout_seconds=2,
                      resend_unknown=False, max_attempts=3)
    with Peer(stall=3.0) as peer:
        started = time.monotonic()
        res = project.send(peer.port, timeout=60)
        took = time.monotonic() - started
        expect_exit(res, 0, f"{what}: stall at RCPT and after DATA (no 5xx)")
        rows = project.rows()
        received = peer.by_rcpt()
        no_duplicates(received, what)
        for address in readers[:10]:
            row = rows[address]
            got = received.get(address, [])
            check(row["status"] == "sent" and len(got) == 1,
                  f"{what}: {address} should be sent once, is {row['status']} "
                  f"({row['last_reply']}), received {len(got)}")
            check(row["last_reply"] == got[0].reply,
                  f"{what}: {address}: ledger reply {row['last_reply']!r} is not the peer's "
                  f"reply to its message {got[0].reply!r} (replies out of step after a stall)")
        stall = rows[f"{STALL}@example.com"]
        check(stall["status"] == "unknown",
              f"{what}: no reply to the message within the timeout should be unknown, is "
              f"{stall['status']} ({stall['last_reply']})")
        slow = rows[f"{STALL_RCPT}@example.com"]
        check(slow["status"] in ("pending", "deferred") and f"{STALL_RCPT}@example.com"
              not in received,
              f"{what}: a stall at RCPT should leave the message unsent (pending/deferred), is "
              f"{slow['status']} ({slow['last_reply']})")
        ok(f"{what}: stall after DATA -> unknown, stall at RCPT -> {slow['status']}, the rest "
           f"sent with their own replies, exit 0 ({took:.1f} s)")
        before = len(peer.snapshot())
        res = project.send(peer.port, timeout=60)
        check(res.code in (0, 75), f"{what}: second run: {res.show()}")
        check(f"{STALL}@example.com" not in [g.rcpt for g in peer.snapshot()[before:]],
              f"{what}: the unknown message was sent again with resend_unknown: false")
        no_duplicates(peer.by_rcpt(), what)
        ok(f"{what}: with resend_unknown: false the next run does not resend the unknown message")

        # The default (resend_unknown: true): the reader whose message
        # always stalls is resent until max_attempts (3), then given up —
        # failed, not bounced: no copy a day forever.
        project.configure(resend_unknown=None)
        codes = []
        for day in range(4):
            res = project.send(peer.port, now=f"2026-06-0{2 + day}T12:00:00Z", timeout=60)
            codes.append(res.code)
        row = project.rows()[f"{STALL}@example.com"]
        copies = len(peer.by_rcpt().get(f"{STALL}@example.com", []))
        check(row["status"] == "failed" and row["attempts"] == 3 and copies == 3,
              f"{what}: an always-unknown message should be tried max_attempts=3 times, then "
              f"failed: {row['status']} after {row['attempts']} attempts, {copies} copies, "
              f"exits {codes}")
        check(f"{STALL}@example.com" not in project.suppressed(),
              f"{what}: a given-up unknown message suppressed its reader")
        ok(f"{what}: by default the stalled message is resent until max_attempts (3 copies, "
           f"same Message-ID), then failed without suppression (exits {codes})")


def check_421_after_data(gazette: Path, base: Path) -> None:
    """A 421 in answer to a message: deferred and tried again, never `unknown`."""
    what = "421 at DATA's end"
    readers = [f"reader{i:02d}@example.com" for i in range(6)] + [f"{DATA_421}@example.com"]
    project = Project(gazette, base, "data421", readers, concurrency=1, retries_in_run=0,
                      max_attempts=3, retry_after_minutes=60)
    with Peer() as peer:
        res = project.send(peer.port)
        expect_exit(res, 0, f"{what}: first run")
        rows = project.rows()
        row = rows[f"{DATA_421}@example.com"]
        check(row["status"] == "deferred" and "421" in (row["last_reply"] or ""),
              f"{what}: should be deferred with the 421, is {row['status']} ({row['last_reply']})")
        others = [a for a in readers if a.startswith("reader")]
        check(all(rows[a]["status"] == "sent" for a in others),
              f"{what}: the others should all be sent: {[rows[a]['status'] for a in others]}")
        check(f"{DATA_421}@example.com" not in peer.by_rcpt(),
              f"{what}: the peer did not keep the message it refused")
        check(f"{DATA_421}@example.com" not in project.suppressed(),
              f"{what}: a 421 put the reader in the suppression list")
        attempts = row["attempts"]
        res = project.send(peer.port, now=LATER)
        expect_exit(res, 0, f"{what}: a day later")
        again = project.rows()[f"{DATA_421}@example.com"]
        check(again["status"] == "deferred" and again["attempts"] == attempts + 1,
              f"{what}: a day later it should have been tried again, is {again['status']} "
              f"after {again['attempts']} attempts (was {attempts})")
        ok(f"{what}: deferred with the relay's 421, not suppressed, tried again the next day; "
           f"{len(others)} others sent")


def check_handover(gazette: Path, base: Path) -> None:
    """An unsubscribe that lands while the reader is queued stops the message."""
    what = "unsubscribe while queued"
    readers = [f"reader{i:02d}@example.com" for i in range(16)]
    # One slow connection: four jobs wait in the queue with their `sending`
    # marks written (the pool asks for them as jobs are queued).
    project = Project(gazette, base, "handover", readers, concurrency=1)
    leaver = readers[7]
    unsubscribed: list[Result] = []

    def unsubscribe_when(rcpt: str) -> None:
        if rcpt == readers[2] and not unsubscribed:
            unsubscribed.append(project.run("unsubscribe", leaver))

    with Peer(delay=0.3, on_message=unsubscribe_when) as peer:
        res = project.send(peer.port)
        expect_exit(res, 0, f"{what}: the send")
        check(len(unsubscribed) == 1 and unsubscribed[0].code == 0,
              f"{what}: gazette unsubscribe did not run or failed: "
              f"{unsubscribed[0].show() if unsubscribed else 'never ran'}")
        received = peer.by_rcpt()
        check(leaver not in received,
              f"{what}: {leaver} unsubscribed while queued and was mailed anyway")
        rows = project.rows()
        check(rows[leaver]["status"] == "suppressed",
              f"{what}: {leaver} should be suppressed, is {rows[leaver]['status']}")
        others = [a for a in readers if a != leaver]
        check(all(len(received.get(a, [])) == 1 for a in others),
              f"{what}: everyone else should have one message: "
              f"{ {a: len(received.get(a, [])) for a in others} }")
        # The next run sends nothing more.
        again = project.send(peer.port, now=LATER)
        expect_exit(again, 0, f"{what}: the next run")
        check(len(peer.snapshot()) == len(others), f"{what}: the next run mailed someone again")
    ok(f"{what}: the reader unsubscribed after their job was queued was not mailed "
       f"(suppressed), {len(others)} others mailed once")


def check_throttle(gazette: Path, base: Path) -> None:
    """A relay's rate-limit replies slow the run down; it finishes within itself."""
    what = "rate-limit replies"
    readers = [f"reader{i:03d}@example.com" for i in range(120)]
    project = Project(gazette, base, "throttle", readers, concurrency=4,
                      retries_in_run=3, retry_in_run_seconds=2)
    with Peer(per_second=20) as peer:
        started = time.monotonic()
        res = project.send(peer.port)
        took = time.monotonic() - started
        expect_exit(res, 0, f"{what}: the send")
        check(peer.throttled > 0, f"{what}: the peer never throttled: the check tests nothing")
        check("the relay asks to slow down" in res.stderr and "4.7.0" in res.stderr,
              f"{what}: the run did not say it slowed down: {res.show()}")
        rows = project.rows()
        check(statuses(rows) == {"sent": len(readers)},
              f"{what}: everyone should be sent within the run, got {statuses(rows)}")
        received = peer.by_rcpt()
        no_duplicates(received, what)
        check(len(received) == len(readers), f"{what}: {len(received)} of {len(readers)} received")
    ok(f"{what}: slowed down ({peer.throttled} refusals), all {len(readers)} sent within "
       f"the run in {took:.1f} s")


def check_idle_close(gazette: Path, base: Path, with_421: bool) -> None:
    """The peer ends every session at the MAIL after its 3rd message."""
    what = f"close after 3 messages{' with 421' if with_421 else ''}"
    readers = [f"reader{i:02d}@example.com" for i in range(30)]
    project = Project(gazette, base, f"close{int(with_421)}", readers, concurrency=2,
                      timeout_seconds=5)
    with Peer(close_after=3, close_with_421=with_421) as peer:
        res = project.send(peer.port)
        expect_all_sent(project, peer, res, readers, what, sessions=10)


def check_idle_timeout(gazette: Path, base: Path) -> None:
    """The peer's idle timeout (421 and close) is shorter than the pause
    gazette's rate limit makes between two messages of a connection."""
    what = "server idle timeout"
    readers = [f"reader{i:02d}@example.com" for i in range(16)]
    # 5 a second over 2 connections: each idles 0.4 s between two messages.
    project = Project(gazette, base, "idle-timeout", readers, concurrency=2, per_second=5,
                      timeout_seconds=5)
    with Peer(idle_timeout=0.25) as peer:
        res = project.send(peer.port)
        expect_all_sent(project, peer, res, readers, what, sessions=6)


def expect_all_sent(project: Project, peer: Peer, res: Result, readers: list[str], what: str,
                    sessions: int) -> None:
    expect_exit(res, 0, what)
    rows = project.rows()
    received = peer.by_rcpt()
    no_duplicates(received, what)
    not_sent = {a: (r["status"], r["last_reply"]) for a, r in rows.items()
                if r["status"] != "sent"}
    check(not not_sent, f"{what}: connections the server closed must be replaced; "
                        f"not sent: {not_sent}")
    check(set(received) == set(readers), f"{what}: the peer did not get every reader")
    check(peer.sessions >= sessions,
          f"{what}: expected at least {sessions} sessions, saw {peer.sessions}")
    ok(f"{what}: {len(readers)} readers over {peer.sessions} sessions, all sent once, exit 0")


def check_faults(gazette: Path, base: Path) -> list[str]:
    return run_parts([
        lambda: check_replies(gazette, base, 1),
        lambda: check_replies(gazette, base, 4),
        lambda: check_stalls(gazette, base),
        lambda: check_421_after_data(gazette, base),
        lambda: check_idle_close(gazette, base, False),
        lambda: check_idle_close(gazette, base, True),
        lambda: check_idle_timeout(gazette, base),
    ])


def run_parts(parts) -> list[str]:
    """Runs independent cases, each to its end; returns their failures."""
    failures = []
    for part in parts:
        try:
            part()
        except Failed as err:
            print(f"FAIL: {err}", flush=True)
            failures.append(str(err))
        except Exception:  # a surprise is a failure too, with its traceback
            text = traceback.format_exc()
            print(f"FAIL: unexpected error\n{text}", flush=True)
            failures.append(f"unexpected error: {text.strip().splitlines()[-1]}")
        finally:
            PROCS.stop_all()
    return failures


# --------------------------------------------------------------------------
# relay: refusals that are the relay's, not the readers'


@dataclass
class RelayPeer(Peer):
    """A peer that refuses what it would refuse for anyone: MAIL FROM with
    `mail`, every RCPT with `rcpt` (after the first `accept` messages), the
    message with `end`. None: as Peer does."""
    mail: str | None = None
    rcpt: str | None = None
    end: str | None = None
    accept: int = 0
    only: frozenset | None = None   # refuse RCPT only to these addresses
    faults: bool = False
    offers: int = 0                 # MAIL FROM commands seen, refused or not

    def heal(self) -> None:
        self.mail = self.rcpt = self.end = None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.offers += 1
        if self.mail:
            return self.mail
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refused = self.only is None or address in self.only
        if self.rcpt and refused and len(self.snapshot()) >= self.accept:
            return self.rcpt
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        if self.end:
            return self.end
        return await super().handle_DATA(server, session, envelope)


def relay_readers(n: int = 20) -> list[str]:
    return [f"reader{i:02d}@example.com" for i in range(n)]


def relay_case(gazette: Path, base: Path, name: str, reply: str, code: int, accepted: int = 0,
               delivery: dict | None = None, stop_within: int = 9, **script) -> None:
    """A peer that answers `reply` as `script` says: exit `code`, the reply and
    the reader who got it printed, the `accepted` first readers sent and
    everyone else pending with no attempt, nobody suppressed; then the same
    peer healed mails everyone else, and nobody twice. The run stops: at most
    `stop_within` messages offered (those in flight when the refusal came)."""
    what = f"relay: {name}"
    readers = relay_readers()
    project = Project(gazette, base, f"relay-{name.replace(' ', '-')}", readers,
                      **(delivery or {}))
    with RelayPeer(accept=accepted, **script) as peer:
        res = project.send(peer.port)
        expect_exit(res, code, f"{what}: first run")
        rows = project.rows()
        sent = [a for a, r in rows.items() if r["status"] == "sent"]
        check(len(sent) == accepted,
              f"{what}: expected {accepted} sent before the refusals, got {statuses(rows)}")
        rest = {a: (r["status"], r["attempts"], r["last_reply"]) for a, r in rows.items()
                if r["status"] != "sent"}
        wrong = {a: v for a, v in rest.items() if v[0] != "pending" or v[1] != 0}
        check(not wrong, f"{what}: a relay problem must leave the messages pending with no "
                         f"attempt; {statuses(rows)}: {dict(list(wrong.items())[:3])}")
        check(not project.suppressed(),
              f"{what}: nobody may be suppressed for a relay problem: {project.suppressed()}")
        printed = [line for line in res.stderr.splitlines() if reply in line]
        check(printed and any(a in printed[0] for a in readers)
              and "nobody was suppressed" in printed[0],
              f"{what}: stderr should print the reply {reply!r} with the reader who got it: "
              f"{res.stderr!r}")
        check("stopped: the relay refused" in res.stdout,
              f"{what}: the summary should say why the run stopped: {res.stdout!r}")
        check(peer.offers <= stop_within,
              f"{what}: the run should stop at the relay problem, but {peer.offers} of "
              f"{len(readers)} messages were offered (at most {stop_within} expected)")
        check(sorted(sent) == sorted(peer.by_rcpt()),
              f"{what}: the peer kept {sorted(peer.by_rcpt())}, the ledger has sent {sent}")
        peer.heal()
        res = project.send(peer.port)
        expect_exit(res, 0, f"{what}: the healed peer")
        rows = project.rows()
        received = peer.by_rcpt()
        no_duplicates(received, what)
        check(statuses(rows) == {"sent": len(readers)} and set(received) == set(readers),
              f"{what}: the healed peer should mail everyone once: {statuses(rows)}, "
              f"received {len(received)}")
    ok(f"{what}: exit {code}, the reply printed with its reader, {accepted} sent, the rest "
       f"pending with no attempt, nobody suppressed; healed, everyone mailed once")


def relay_streak(gazette: Path, base: Path) -> None:
    """550 5.1.1 to every reader: past delivery.refusal_streak (default 10) a
    relay problem; fewer than that in a row, real bounces."""
    relay_case(gazette, base, "550 5.1.1 streak", "550 5.1.1", 1, stop_within=19,
               rcpt="550 5.1.1 <someone>: Recipient address rejected: User unknown")
    what = "relay: a short streak of 550 5.1.1"
    readers = relay_readers(6)
    project = Project(gazette, base, "relay-short-streak", readers, concurrency=1,
                      refusal_streak=4)
    bad = {readers[1], readers[2], readers[4]}
    with RelayPeer(rcpt="550 5.1.1 no such user", only=frozenset(bad)) as peer:
        res = project.send(peer.port)
        expect_exit(res, 1, f"{what}: real bounces fail")
        rows = project.rows()
        check({a for a, r in rows.items() if r["status"] == "failed"} == bad,
              f"{what}: {statuses(rows)}")
        check(set(project.suppressed()) == bad and set(project.suppressed().values()) == {"bounced"},
              f"{what}: the real bounces should be suppressed: {project.suppressed()}")
    ok(f"{what}: refusals in a row below refusal_streak stand: failed and bounced")


def relay_smtputf8(gazette: Path, base: Path) -> None:
    """A peer without SMTPUTF8: the IDN domain goes as punycode, the UTF-8
    local part waits (deferred); then a peer with SMTPUTF8 takes it."""
    what = "relay: no SMTPUTF8"
    readers = relay_readers(4) + ["josé@example.com", "user@bücher.de"]
    project = Project(gazette, base, "relay-smtputf8", readers, retry_after_minutes=60)
    with Peer(faults=False, smtputf8=False) as peer:
        res = project.send(peer.port)
        expect_exit(res, 0, f"{what}: first run")
        rows = project.rows()
        received = peer.by_rcpt()
        check("user@xn--bcher-kva.de" in received and rows["user@bücher.de"]["status"] == "sent",
              f"{what}: user@bücher.de should go as user@xn--bcher-kva.de: received "
              f"{sorted(received)}, row {rows['user@bücher.de']['status']}")
        jose = rows["josé@example.com"]
        check(jose["status"] == "deferred" and "SMTPUTF8" in (jose["last_reply"] or ""),
              f"{what}: josé@example.com should be deferred for want of SMTPUTF8: "
              f"{jose['status']} ({jose['last_reply']})")
        check(not any("josé" in a for a in received), f"{what}: the peer got {sorted(received)}")
        check(not project.suppressed(), f"{what}: suppressed {project.suppressed()}")
    ok(f"{what}: user@bücher.de sent as user@xn--bcher-kva.de, josé@example.com deferred "
       f"with the reason, nobody suppressed, exit 0")
    with Peer(faults=False, smtputf8=True) as peer:
        res = project.send(peer.port, now=LATER)
        expect_exit(res, 0, f"{what}: a later run through a relay with SMTPUTF8")
        rows = project.rows()
        received = peer.by_rcpt()
        check(list(received) == ["josé@example.com"] and rows["josé@example.com"]["status"] == "sent",
              f"{what}: the relay with SMTPUTF8 should get josé@example.com alone, once: "
              f"{sorted(received)}, {statuses(rows)}")
        check(statuses(rows) == {"sent": len(readers)}, f"{what}: {statuses(rows)}")
    ok(f"{what}: a relay with SMTPUTF8 then mails josé@example.com once; everyone has one message")


def check_relay(gazette: Path, base: Path) -> list[str]:
    return run_parts([
        lambda: relay_case(gazette, base, "554 5.7.1 to every RCPT", "554 5.7.1 Relay access denied",
                           1, rcpt="554 5.7.1 Relay access denied"),
        lambda: relay_case(gazette, base, "554 to MAIL FROM", "554 5.7.1 sender not authorized", 1,
                           mail="554 5.7.1 sender not authorized"),
        lambda: relay_case(gazette, base, "451 to MAIL FROM", "451 4.3.0 try again later", 75,
                           mail="451 4.3.0 try again later"),
        lambda: relay_case(gazette, base, "554 to the message", "554 content rejected", 1,
                           end="554 content rejected"),
        # One connection: the 6th RCPT comes after the 5th message.
        lambda: relay_case(gazette, base, "quota after 5", "550 5.4.5 Daily user sending quota",
                           1, accepted=5, delivery={"concurrency": 1},
                           rcpt="550 5.4.5 Daily user sending quota exceeded"),
        lambda: relay_streak(gazette, base),
        lambda: relay_smtputf8(gazette, base),
    ])


# --------------------------------------------------------------------------
# sink: Postfix smtp-sink


class Sink:
    """smtp-sink on 127.0.0.1:port, dumping each message to a file."""

    def __init__(self, base: Path, name: str, *options: str) -> None:
        self.binary = shutil.which("smtp-sink") or (
            "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None)
        check(self.binary is not None, "smtp-sink is missing (Debian package postfix)")
        self.dumps = base / f"dumps-{name}"
        self.dumps.mkdir()
        self.dumps.chmod(0o777)  # smtp-sink runs as nobody
        self.options = list(options)
        self.port = 0
        self.proc = None

    def __enter__(self) -> "Sink":
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.log = open(self.dumps.parent / f"{self.dumps.name}.log", "w")
        self.proc = PROCS.start([self.binary, *user, "-v", "-d", f"{self.dumps}/", *self.options,
                                 f"127.0.0.1:{self.port}", "256"],
                                stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, "smtp-sink")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()

    def messages(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for path in sorted(self.dumps.rglob("*")):
            if not path.is_file():
                continue
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
            rcpts = [re.sub(r"^TO:|<|>", "", v.strip(), flags=re.I).strip()
                     for v in msg.get_all("X-Rcpt-Args", [])]
            check(len(rcpts) == 1, f"smtp-sink dump {path} has recipients {rcpts}")
            out.setdefault(rcpts[0].lower(), []).append(msg.get("Message-ID", "").strip())
        return out

    def transactions(self) -> int:
        time.sleep(0.2)  # let smtp-sink log the last session
        text = (self.dumps.parent / f"{self.dumps.name}.log").read_text(errors="replace")
        return len(re.findall(r"^.*\bMAIL FROM:", text, flags=re.M | re.I))


def check_sink(gazette: Path, base: Path) -> list[str]:
    readers = [f"reader{i:03d}@example.com" for i in range(300)]
    few = readers[:20]
    return run_parts([
        lambda: sink_clean(gazette, base, readers),
        lambda: sink_soft(gazette, base, few),
        lambda: sink_hard(gazette, base, few),
        lambda: sink_421(gazette, base, few),
        lambda: sink_lost(gazette, base, few),
    ])


def sink_clean(gazette: Path, base: Path, readers: list[str]) -> None:
    """A clean send of a few hundred readers."""
    project = Project(gazette, base, "sink-clean", readers)
    with Sink(base, "clean") as sink:
        started = time.monotonic()
        res = project.send(sink.port)
        took = time.monotonic() - started
        expect_exit(res, 0, "smtp-sink clean send")
        rows = project.rows()
        check(statuses(rows) == {"sent": 300}, f"smtp-sink clean send: {statuses(rows)}")
        time.sleep(0.2)
        got = sink.messages()
        no_duplicates(got, "smtp-sink clean send")
        check(set(got) == set(readers),
              f"smtp-sink clean send: the sink got {len(got)} readers, expected 300; missing "
              f"{sorted(set(readers) - set(got))[:5]}")
        for address, row in rows.items():
            check(got[address] == [row["message_id"]],
                  f"smtp-sink: {address}: Message-ID {got[address]} != ledger {row['message_id']}")
        status = project.status_json()
        check(status[0]["deliveries"]["sent"] == 300 and status[0]["completed"],
              f"smtp-sink: status --format json: {status[0]}")
        before = sink.transactions()
        res = project.send(sink.port)
        expect_exit(res, 0, "smtp-sink second run")
        check("nothing new to send" in res.stdout,
              f"smtp-sink second run: {res.show()}")
        check(sink.transactions() == before,
              "smtp-sink: the second run made SMTP transactions")
        ok(f"smtp-sink: 300 readers sent once each in {took:.1f} s, Message-IDs as in the ledger; "
           f"a second run makes no transaction")


def sink_soft(gazette: Path, base: Path, few: list[str]) -> None:
    """-r RCPT: every RCPT gets a 4xx."""
    project = Project(gazette, base, "sink-soft", few, max_attempts=2, retry_after_minutes=60)
    with Sink(base, "soft", "-r", "RCPT") as sink:
        res = project.send(sink.port)
        rows = project.rows()
        wrong = {a: (r["status"], r["last_reply"]) for a, r in rows.items()
                 if r["status"] != "deferred"}
        check(not wrong, f"smtp-sink -r RCPT: every reader should be deferred, "
                         f"{statuses(rows)}: {dict(list(wrong.items())[:3])}")
        expect_exit(res, 0, "smtp-sink -r RCPT (4xx)")
        check(all(r["last_reply"] and "450" in r["last_reply"] and r["next_attempt"]
                  for r in rows.values()), f"smtp-sink -r RCPT: {list(rows.values())[0]}")
        ok("smtp-sink -r RCPT: every reader deferred with the 450 and a next attempt, exit 0")
        res = project.send(sink.port, now=LATER)
        expect_exit(res, 1, "smtp-sink -r RCPT, second attempt (failed for good now)")
        rows = project.rows()
        check(statuses(rows) == {"failed": 20},
              f"smtp-sink -r RCPT: after max_attempts=2 4xx attempts every reader should be "
              f"failed: {statuses(rows)}; e.g. attempts={list(rows.values())[0]['attempts']} "
              f"next_attempt={list(rows.values())[0]['next_attempt']}")
        check(not project.suppressed(), "smtp-sink -r RCPT: 4xx failures were suppressed")
        check(not sink.messages(), "smtp-sink -r RCPT: the sink kept messages")
        ok("smtp-sink -r RCPT: failed after max_attempts=2, not bounced, exit 1")


def sink_hard(gazette: Path, base: Path, few: list[str]) -> None:
    """-f RCPT: every RCPT gets smtp-sink's `500 5.3.0 Error: command failed`:
    a mail-system refusal (X.3), the relay's problem, not twenty bounces."""
    what = "smtp-sink -f RCPT"
    project = Project(gazette, base, "sink-hard", few)
    with Sink(base, "hard", "-f", "RCPT") as sink:
        res = project.send(sink.port)
        expect_exit(res, 1, f"{what} (500 5.3.0: a relay problem)")
        rows = project.rows()
        check(statuses(rows) == {"pending": 20} and all(r["attempts"] == 0 for r in rows.values()),
              f"{what}: every reader should be left pending with no attempt: {statuses(rows)}, "
              f"attempts {sorted({r['attempts'] for r in rows.values()})}")
        check(not project.suppressed(), f"{what}: suppressed {project.suppressed()}")
        check("500 5.3.0" in res.stderr and any(a in res.stderr for a in few),
              f"{what}: the reply and its reader are not printed: {res.stderr!r}")
        check(not sink.messages(), f"{what}: the sink kept messages")
    with Sink(base, "hard-healed") as sink:
        res = project.send(sink.port, now=LATER)
        expect_exit(res, 0, f"{what}, then a clean sink")
        got = sink.messages()
        no_duplicates(got, what)
        check(set(got) == set(few) and statuses(project.rows()) == {"sent": 20},
              f"{what}: a clean sink should then get everyone once: {statuses(project.rows())}")
    ok(f"{what}: a relay problem, exit 1, the reply printed, nobody suppressed; a clean sink "
       f"then mails all {len(few)} once")


def sink_421(gazette: Path, base: Path, few: list[str]) -> None:
    """-Q MAIL: 421 and disconnect at MAIL."""
    project = Project(gazette, base, "sink-421", few, max_connection_failures=3)
    with Sink(base, "421", "-Q", "MAIL") as sink:
        res = project.send(sink.port, timeout=60)
        check(res.code in (0, 75), f"smtp-sink -Q MAIL: {res.show()}")
        rows = project.rows()
        bad = {a: (r["status"], r["last_reply"]) for a, r in rows.items()
               if r["status"] not in ("deferred", "pending")}
        check(not bad, f"smtp-sink -Q MAIL: expected deferred/pending only: {bad}")
        check(not sink.messages(), "smtp-sink -Q MAIL: the sink kept messages")
        ok(f"smtp-sink -Q MAIL: 421 and disconnect -> {statuses(rows)}, exit {res.code}")


def sink_lost(gazette: Path, base: Path, few: list[str]) -> None:
    """-q .: the message goes over, the connection closes without a reply."""
    project = Project(gazette, base, "sink-lost", few, max_connection_failures=3, concurrency=1)
    with Sink(base, "lost", "-q", ".") as sink:
        res = project.send(sink.port, timeout=60)
        rows = project.rows()
        counts = statuses(rows)
        check(counts.get("sent", 0) == 0, f"smtp-sink -q .: sent with no reply: {counts}")
        check(set(counts) <= {"unknown", "pending"}, f"smtp-sink -q .: {counts}")
        check(res.code == 75 and counts.get("unknown", 0) <= 3,
              f"smtp-sink -q .: every connection drops right after the message: after "
              f"max_connection_failures=3 drops in a row the run should stop with exit 75 and "
              f"leave the rest pending; got exit {res.code} and {counts}")
        ok(f"smtp-sink -q .: stops after 3 lost replies in a row, exit 75, {counts}")


# --------------------------------------------------------------------------
# crash: kill -9 at random moments

# How many messages a connection may have marked `sending` at once (README,
# "Sending"): 4 queued for it, 1 whose envelope went, 1 handed over.
SENDING_PER_CONNECTION = 6
# Connections of the crash and sigterm checks.
CRASH_CONCURRENCY = 2
# How long a `sent` mark may wait to be durable after its 250 (the group
# commit under way: GROUP_WAIT and an fsync, generously on a loaded host).
COMMIT_WINDOW = 0.3


def startup(gazette: Path, base: Path, name: str, readers: list[str], peer: Peer) -> float:
    """How long a run takes to reach its first message: a send of two
    readers to `peer` (forgotten by it afterwards), in seconds."""
    probe = Project(gazette, base, f"{name}-probe", readers[:2])
    t = time.monotonic()
    expect_exit(probe.send(peer.port), 0, f"{name}: probe run")
    took = time.monotonic() - t
    peer.got.clear()
    return took


def handed_over_unconfirmed(rows: dict[str, dict], before: dict[str, list],
                            received: dict[str, list]) -> set[str]:
    """Readers whose message reached the peer during the last run (its 250
    went out) while the ledger still says `sending`: the next run sends them
    again, the only duplicates a kill may cause."""
    return {a for a, r in rows.items() if r["status"] == "sending"
            and len(received.get(a, [])) > len(before.get(a, []))}


def check_crash(gazette: Path, base: Path, kills: int, rng: random.Random) -> None:
    # The peer keeps a message only when its (slow) 250 goes out: a
    # duplicate can only come from a kill between the 250 and the commit of
    # its `sent` mark. Every other message left `sending` (queued with its
    # mark written, or its envelope sent) never arrived, and the next run
    # simply sends it.
    concurrency = CRASH_CONCURRENCY
    marked = SENDING_PER_CONNECTION * concurrency
    readers = [f"reader{i:03d}@example.com" for i in range(250)]
    project = Project(gazette, base, "crash", readers, concurrency=concurrency,
                      timeout_seconds=10)
    started = time.monotonic()
    with Peer(delay=0.05, keep_on_reply=True) as peer:
        window = startup(gazette, base, "crash", readers, peer) + 0.35
        worst_inflight = worst_at_risk = 0
        at_risk: dict[str, int] = {}
        for kill in range(kills):
            before = peer.by_rcpt()
            proc = project.start_send(peer.port)
            delay = rng.uniform(0, window)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            proc.communicate()
            rows = project.rows() if (project.dir / ".gazette" / "state.db").exists() else {}
            received = peer.by_rcpt()
            inflight = [a for a, r in rows.items() if r["status"] == "sending"]
            worst_inflight = max(worst_inflight, len(inflight))
            check(len(inflight) <= marked,
                  f"crash: kill {kill + 1} left {len(inflight)} deliveries sending, more than "
                  f"the {marked} {concurrency} connections may have marked")
            risky = handed_over_unconfirmed(rows, before, received)
            worst_at_risk = max(worst_at_risk, len(risky))
            # One per connection (its message handed over, the 250 on its
            # way), plus those whose 250 came during the group commit under
            # way (GROUP_WAIT and an fsync, which a loaded disk can stretch):
            # any other `sent` mark must have been durable at the kill.
            old = sorted(a for a in risky
                         if received[a][-1].at < killed_at - COMMIT_WINDOW)
            check(len(old) <= concurrency,
                  f"crash: kill {kill + 1} at {delay:.3f} s left {len(old)} messages that "
                  f"arrived unconfirmed more than {COMMIT_WINDOW * 1000:.0f} ms before it, "
                  f"more than one per connection: {old} (all unconfirmed: {sorted(risky)})")
            for address in risky:
                at_risk[address] = at_risk.get(address, 0) + 1
            for address, got in received.items():
                row = rows.get(address)
                check(row is not None and row["status"] in ("sent", "sending", "unknown"),
                      f"crash: after kill {kill + 1}: {address} reached the peer but its "
                      f"ledger row is {row and row['status']}")
                check({g.message_id for g in got} == {row["message_id"]},
                      f"crash: {address}: Message-IDs {[g.message_id for g in got]} != "
                      f"{row['message_id']}")
            for address, row in rows.items():
                if row["status"] == "sent":
                    check(address in received,
                          f"crash: after kill {kill + 1}: {address} is sent but never arrived")
        sent_before = sum(1 for r in project.rows().values() if r["status"] == "sent")
        # ONE plain run with the default settings: everyone has the issue.
        res = project.send(peer.port)
        expect_exit(res, 0, "crash: the one plain run after the kills")
        rows = project.rows()
        check(statuses(rows) == {"sent": len(readers)},
              f"crash: after {kills} kills one plain run should leave every delivery sent: "
              f"{statuses(rows)}; stdout {res.stdout.strip()!r}")
        if sent_before < len(readers):
            check("nothing new" not in res.stdout,
                  f"crash: the last run said nothing new with {len(readers) - sent_before} "
                  f"readers not sent: {res.stdout}")
        received = peer.by_rcpt()
        check(set(received) == set(readers), "crash: not every reader got the issue")
        twice = {a: len(g) for a, g in received.items() if len(g) > 1}
        for address, got in received.items():
            check({g.message_id for g in got} == {rows[address]["message_id"]},
                  f"crash: {address}'s copies have Message-IDs {[g.message_id for g in got]}, "
                  f"ledger {rows[address]['message_id']}")
            check(len(got) <= 1 + at_risk.get(address, 0),
                  f"crash: {address} got {len(got)} copies but was handed over unconfirmed "
                  f"{at_risk.get(address, 0)} times")
    ok(f"crash: {kills} kill -9 at random moments (0–{window:.2f} s, {concurrency} connections), "
       f"then one plain run: all {len(readers)} sent and received, {sent_before} sent before it; "
       f"{len(twice)} duplicates (same Message-ID), each of a message handed over unconfirmed "
       f"at a kill; at most {worst_at_risk} such per kill, {worst_inflight} left in flight; "
       f"{time.monotonic() - started:.1f} s")


def check_sigterm(gazette: Path, base: Path, signals: int, rng: random.Random) -> None:
    """SIGTERM at random moments: each run stops gracefully (exit 75), leaves
    nothing `sending` or `unknown`, the peer has exactly the `sent` ones;
    then one plain run mails everyone exactly once."""
    concurrency = CRASH_CONCURRENCY
    readers = [f"reader{i:03d}@example.com" for i in range(250)]
    project = Project(gazette, base, "sigterm", readers, concurrency=concurrency,
                      timeout_seconds=10)
    started = time.monotonic()
    with Peer(delay=0.02) as peer:
        window = startup(gazette, base, "sigterm", readers, peer) + 0.3
        for n in range(signals):
            proc = project.start_send(peer.port)
            delay = rng.uniform(0, window)
            time.sleep(delay)
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise Failed(f"sigterm {n + 1} at {delay:.3f} s: the run did not stop in 30 s")
            what = f"sigterm {n + 1} at {delay:.3f} s"
            check(proc.returncode == 75, f"{what}: expected exit 75, got "
                                         f"{Result(proc.returncode, out, err).show()}")
            rows = project.rows() if (project.dir / ".gazette" / "state.db").exists() else {}
            counts = statuses(rows)
            check(not {"sending", "unknown"} & set(counts),
                  f"{what}: a signal left messages in doubt: {counts}\n{err}")
            received = peer.by_rcpt()
            no_duplicates(received, what)
            sent = {a for a, r in rows.items() if r["status"] == "sent"}
            check(sent == set(received),
                  f"{what}: the ledger's sent ({len(sent)}) and the peer's ({len(received)}) differ")
            check(not rows or "SIGTERM" in err, f"{what}: stderr does not say why it stopped: {err}")
        sent_before = sum(1 for r in project.rows().values() if r["status"] == "sent")
        res = project.send(peer.port)
        expect_exit(res, 0, "sigterm: the plain run after the signals")
        rows = project.rows()
        check(statuses(rows) == {"sent": len(readers)}, f"sigterm: after the last run {statuses(rows)}")
        received = peer.by_rcpt()
        no_duplicates(received, "sigterm: after the last run")
        check(set(received) == set(readers), "sigterm: not every reader got the issue")
    ok(f"sigterm: {signals} SIGTERMs at random moments (0–{window:.2f} s): each run exit 75, "
       f"nothing left sending/unknown, {sent_before} sent before the last run; then everyone "
       f"exactly once; {time.monotonic() - started:.1f} s")


# --------------------------------------------------------------------------
# overlap: two sends at once


def add_post(project: Project, n: int, date: str) -> None:
    (project.dir / "content" / f"overlap-{n}.md").write_text(
        f"---\ntitle: Overlap round {n}\ndate: {date}\ntags: [ai]\n---\n\n"
        f"Round {n} of the overlap check: a new post, so a new issue.\n")


def check_overlap(gazette: Path, base: Path, rounds: int = 6) -> None:
    readers = [f"reader{i:02d}@example.com" for i in range(20)]
    project = Project(gazette, base, "overlap", readers, concurrency=2)
    with Peer(delay=0.05, keep_on_reply=True) as peer:
        for n in range(rounds):
            # Each round is a new issue a day later (a new post), with the
            # lock file of the round before in place, as cron leaves it.
            day = 1 + n
            now = f"2026-06-{day:02d}T12:00:00Z"
            if n:
                add_post(project, n, f"2026-06-{day:02d}T09:00:00Z")
            before = len(peer.snapshot())
            a = project.start_send(peer.port, now)
            b = project.start_send(peer.port, now)
            outs = {}
            for proc in (a, b):
                try:
                    out, err = proc.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    raise Failed("overlap: a send did not end within 60 s")
                outs[proc.pid] = Result(proc.returncode, out, err, proc.pid)
            codes = sorted(r.code for r in outs.values())
            check(codes == [0, 75], f"overlap round {n + 1}: expected exits 0 and 75, got "
                                    + " / ".join(r.show() for r in outs.values()))
            loser = next(r for r in outs.values() if r.code == 75)
            winner = next(r for r in outs.values() if r.code == 0)
            match = HELD.search(loser.stderr)
            check(match is not None,
                  f"overlap round {n + 1}: the second send's stderr lacks 'another send is in "
                  f"progress (pid N)': {loser.stderr!r}")
            check(int(match.group(1)) == winner.pid,
                  f"overlap round {n + 1}: the refused send names pid {match.group(1)}, but the "
                  f"send that proceeds is pid {winner.pid} (pid {loser.pid} was refused)")
            new = peer.snapshot()[before:]
            check(sorted(g.rcpt for g in new) == sorted(readers),
                  f"overlap round {n + 1}: expected one message per reader, the peer got "
                  f"{len(new)} for {len({g.rcpt for g in new})} readers")
    ok(f"overlap: {rounds} rounds of two sends at once: one sent to every reader once, the "
       f"other exited 75 naming the first one's pid")


# --------------------------------------------------------------------------
# maildev end to end


def check_state(gazette: Path, base: Path) -> None:
    """A lost `.gazette/`, then a damaged ledger, against smtp-sink."""
    readers = [f"reader{i:03d}@example.com" for i in range(200)]
    gone = readers[:10]
    project = Project(gazette, base, "state", readers)
    ledger = project.dir / ".gazette" / "state.db"
    with Sink(base, "state") as sink:
        expect_exit(project.send(sink.port), 0, "state: first issue")
        for address in gone:
            expect_exit(project.run("unsubscribe", address), 0, f"state: unsubscribe {address}")
        shutil.rmtree(project.dir / ".gazette")
        before = sink.transactions()
        res = project.send(sink.port)
        expect_exit(res, 1, "state: send after .gazette/ was deleted")
        check("--first-issue" in res.stderr and "suppressed.csv names issue" in res.stderr,
              f"state: the refusal does not say why: {res.show()}")
        check(sink.transactions() == before, "state: the refused send made SMTP transactions")
        res = project.run("send", "--smtp", f"smtp://127.0.0.1:{sink.port}", "--first-issue")
        expect_exit(res, 0, "state: send --first-issue")
        time.sleep(0.2)
        got = sink.messages()
        twice = [a for a in readers[10:] if len(got.get(a, [])) != 2]
        again = [a for a in gone if len(got.get(a, [])) != 1]
        check(not twice, f"state: readers not mailed by the new first issue: {twice[:5]}")
        check(not again, f"state: unsubscribed readers mailed again: {again[:5]}")
        ok("state: a lost .gazette/ stops the send (exit 1, --first-issue named, no transaction); "
           "with --first-issue the 190 others are mailed and none of the 10 unsubscribed")
        expect_exit(project.run("state", "backup", "backup.db"), 0, "state: backup")
        whole = ledger.read_bytes()
        damages = {"0-byte": b"", "truncated": whole[: len(whole) // 2],
                   "garbage": bytes((i * 7) % 251 for i in range(len(whole)))}
        for what, damaged in damages.items():
            ledger.write_bytes(damaged)
            for log in ("state.db-wal", "state.db-shm"):
                (ledger.parent / log).unlink(missing_ok=True)
            before = sink.transactions()
            res = project.send(sink.port)
            expect_exit(res, 1, f"state: a {what} state.db")
            check(".gazette/state.db" in res.stderr and "state restore" in res.stderr,
                  f"state: a {what} state.db: {res.show()}")
            check(sink.transactions() == before, f"state: a {what} state.db made transactions")
        ledger.unlink()
        (ledger.parent / "state.db-wal").write_bytes(b"\x00" * 4096)
        res = project.send(sink.port)
        expect_exit(res, 1, "state: a state.db-wal without its state.db")
        check("write-ahead log" in res.stderr, f"state: orphaned log: {res.show()}")
        (ledger.parent / "state.db-wal").unlink()
        ledger.write_bytes(damages["truncated"])
        res = project.run("state", "restore", "backup.db")
        expect_exit(res, 0, "state: restore")
        before = sink.transactions()
        res = project.send(sink.port)
        expect_exit(res, 0, "state: send after the restore")
        check("nothing new to send" in res.stdout and sink.transactions() == before,
              f"state: the run after the restore sent again: {res.show()}")
        ok("state: 0-byte, truncated and garbage ledgers and an orphaned log each exit 1 "
           "naming the file, no transaction; restored from a backup, nothing is sent twice")


def http_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def check_maildev(gazette: Path, base: Path) -> None:
    node = shutil.which("node")
    check(node is not None, "node is missing")
    cli = ROOT / "scripts" / "node_modules" / "maildev" / "bin" / "maildev"
    check(cli.exists(), f"maildev is missing ({cli}); npm ci --prefix scripts")
    version = json.loads((cli.parent.parent / "package.json").read_text())["version"]
    check(version == "2.2.1", f"maildev {version}, expected 2.2.1")
    project = Project(gazette, base, "maildev")
    smtp, web = free_port(), free_port()
    mails = base / "maildev-mails"
    mails.mkdir()
    log = open(base / "maildev.log", "w")
    proc = PROCS.start([node, str(cli), "--smtp", str(smtp), "--web", str(web),
                        "--ip", "127.0.0.1", "--web-ip", "127.0.0.1",
                        "--mail-directory", str(mails)],
                       stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(smtp, proc, "maildev (SMTP)")
        wait_for_port(web, proc, "maildev (web)")
        res = project.send(smtp)
        expect_exit(res, 0, "maildev send")
        rows = project.rows()
        check(statuses(rows) == {"sent": len(rows)}, f"maildev: {statuses(rows)}")
        mailable = mailable_readers(project.dir / "subscribers.csv")
        check(set(rows) == mailable, f"maildev: the ledger's readers {sorted(rows)} are not "
                                     f"the mailable ones {sorted(mailable)}")
        emails = []
        for _ in range(50):
            emails = http_json(f"http://127.0.0.1:{web}/email")
            if len(emails) >= len(mailable):
                break
            time.sleep(0.1)
        check(len(emails) == len(mailable),
              f"maildev: {len(emails)} messages for {len(mailable)} mailable readers")
        seen = set()
        mids = {}
        for item in emails:
            rcpts = [t["address"].lower() for t in item.get("envelope", {}).get("to", [])]
            check(len(rcpts) == 1, f"maildev: message {item['id']} has envelope recipients {rcpts}")
            rcpt = rcpts[0]
            check(rcpt not in seen, f"maildev: {rcpt} got two messages")
            seen.add(rcpt)
            to = [t["address"].lower() for t in item.get("to", [])]
            check(to == [rcpt], f"maildev: {rcpt}: To: {to}")
            raw = urllib.request.urlopen(
                f"http://127.0.0.1:{web}/email/{item['id']}/source", timeout=10).read()
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            unsub = msg.get_all("List-Unsubscribe") or []
            check(len(unsub) == 1, f"maildev: {rcpt}: {len(unsub)} List-Unsubscribe headers")
            check(unsub[0].strip().startswith("<https://"),
                  f"maildev: {rcpt}: List-Unsubscribe {unsub[0]!r}")
            post = msg.get_all("List-Unsubscribe-Post") or []
            check(post == ["List-Unsubscribe=One-Click"],
                  f"maildev: {rcpt}: List-Unsubscribe-Post {post}")
            check(msg.get_all("Bcc") is None and not item.get("bcc"),
                  f"maildev: {rcpt}: has a Bcc")
            check(msg.get_content_type() == "multipart/alternative",
                  f"maildev: {rcpt}: {msg.get_content_type()}")
            parts = [p.get_content_type() for p in msg.iter_parts()]
            check(parts == ["text/plain", "text/html"], f"maildev: {rcpt}: parts {parts}")
            check(item.get("text", "").strip() and item.get("html", "").strip(),
                  f"maildev: {rcpt}: maildev parsed no text or no html part")
            mids[rcpt] = msg["Message-ID"].strip()
        check(seen == mailable, f"maildev: recipients {sorted(seen)} != {sorted(mailable)}")
        check(len(set(mids.values())) == len(mids), "maildev: Message-IDs are not distinct")
        for address, row in rows.items():
            check(mids[address] == row["message_id"],
                  f"maildev: {address}: Message-ID {mids[address]} != ledger {row['message_id']}")
        ok(f"maildev: {len(emails)} messages, one per mailable reader, one List-Unsubscribe, "
           f"one-click List-Unsubscribe-Post, no Bcc, text+html, Message-IDs as in the ledger")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        log.close()


def mailable_readers(path: Path) -> set[str]:
    import csv
    with open(path, newline="") as f:
        return {row["email"].lower() for row in csv.DictReader(f)
                if (row.get("status") or "active") == "active"}


# --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gazette", type=Path)
    parser.add_argument("checks", nargs="*", metavar="CHECK", help=" ".join(CHECKS))
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--signals", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    unknown = [c for c in args.checks if c not in CHECKS]
    if unknown:
        parser.error(f"unknown check {unknown[0]!r}; choose from {', '.join(CHECKS)}")
    gazette = args.gazette.resolve()
    if not os.access(gazette, os.X_OK):
        parser.error(f"{gazette} is not an executable")
    # SIGTERM (a CI timeout) unwinds like an error, so every server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="gazette-delivery-"))
    base.chmod(0o755)
    started = time.monotonic()
    failures: list[str] = []
    try:
        for name in args.checks or CHECKS:
            t = time.monotonic()
            if name == "faults":
                failures += check_faults(gazette, base)
            elif name == "relay":
                failures += check_relay(gazette, base)
            elif name == "sink":
                failures += check_sink(gazette, base)
            elif name == "crash":
                print(f"crash: seed {seed} (--seed {seed} repeats the kill times)", flush=True)
                failures += run_parts([lambda: check_crash(gazette, base, args.kills, rng)])
            elif name == "sigterm":
                print(f"sigterm: seed {seed} (--seed {seed} repeats the signal times)", flush=True)
                failures += run_parts([lambda: check_sigterm(gazette, base, args.signals, rng)])
            elif name == "overlap":
                failures += run_parts([lambda: check_overlap(gazette, base)])
            elif name == "handover":
                failures += run_parts([lambda: check_handover(gazette, base)])
            elif name == "throttle":
                failures += run_parts([lambda: check_throttle(gazette, base)])
            elif name == "state":
                failures += run_parts([lambda: check_state(gazette, base)])
            elif name == "maildev":
                failures += run_parts([lambda: check_maildev(gazette, base)])
            print(f"   ({name}: {time.monotonic() - t:.1f} s)", flush=True)
    finally:
        PROCS.stop_all()
        if args.keep:
            print(f"(projects kept in {base})", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    took = time.monotonic() - started
    if failures:
        print(f"\n{len(failures)} delivery check(s) FAILED ({took:.1f} s):", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure.splitlines()[0][:300]}", file=sys.stderr)
        return 1
    print(f"all delivery checks passed in {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
