//! Deliver stage, SMTP, tests only: the table of what a session makes of
//! each reply — stage × reply code × enhanced status code → [`Outcome`] and
//! whether the connection is kept — each row run against a scripted server
//! on 127.0.0.1, once a message at a time (no PIPELINING: `send`) and once
//! in a train (PIPELINING: `envelope_of` and `exchange`). The rows are
//! the table of docs/src/reference/sending.md ("What a reply means"): to
//! change a classification, edit its row and the docs. May import
//! the other files of [`super`] and the test servers.

use std::time::Duration;

use lettre::Address;

use super::Outcome;
use super::session::SmtpSession;
use super::test_servers::{Script, scripted};

/// Where the scripted reply is given.
#[derive(Debug, Clone, Copy)]
enum At {
    Greeting,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    /// The reply to the end of the message.
    AfterData,
}

/// What became of the message, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// No session: the pool settles the message `NotSent` and counts a
    /// connection failure.
    NoSession,
    Sent,
    Deferred,
    /// Failed, and the address suppressed as bounced.
    Bounced,
    /// Failed for this issue, the address not suppressed.
    Refused,
    /// A relay problem with a 5xx: the run stops, exit 1.
    RelayFor5xx,
    /// A relay problem with a 4xx: the run stops, exit 75.
    RelayFor4xx,
    NotSent,
    Unknown,
}

/// Whether the session can carry the next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Kept,
    Dropped,
}

/// One row: at `at` the server answers `reply` (every other stage goes
/// well); the message's verdict and the connection afterwards.
struct Row(At, &'static str, Verdict, After);

use After::{Dropped, Kept};
use At::{AfterData, Data, Ehlo, Greeting, Mail, Rcpt};
use Verdict::{
    Bounced, Deferred, NoSession, NotSent, Refused, RelayFor4xx, RelayFor5xx, Sent, Unknown,
};

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // at         reply                                           verdict      connection
    Row(Greeting, "554 5.3.2 not accepting mail",                 NoSession,   Dropped),
    Row(Greeting, "450 4.3.2 busy",                               NoSession,   Dropped),
    Row(Greeting, "421 4.3.2 closing",                            NoSession,   Dropped),
    Row(Ehlo,     "550 5.5.1 no",                                 NoSession,   Dropped),
    Row(Ehlo,     "451 4.3.0 local error",                        NoSession,   Dropped),
    Row(Ehlo,     "421 4.3.2 closing",                            NoSession,   Dropped),
    // A refused sender is the relay's trouble, whatever the code; the
    // reply code says for how long.
    Row(Mail,     "451 4.3.0 try later",                          RelayFor4xx, Dropped),
    Row(Mail,     "550 5.7.1 sender refused",                     RelayFor5xx, Dropped),
    Row(Mail,     "554 5.7.1 not authorized to send",             RelayFor5xx, Dropped),
    Row(Mail,     "553 sender address not allowed",               RelayFor5xx, Dropped),
    Row(Mail,     "421 4.7.0 closing",                            NotSent,     Dropped),
    // … but a relay asking to slow down at MAIL: the message waits.
    Row(Mail,     "451 4.7.1 too many messages, slow down",       Deferred,    Dropped),
    // A 4xx to the reader: later.
    Row(Rcpt,     "450 4.2.1 mailbox busy",                       Deferred,    Kept),
    Row(Rcpt,     "452 4.5.3 too many recipients",                Deferred,    Kept),
    Row(Rcpt,     "450 4.7.1 try again later",                    Deferred,    Kept),
    // Mailbox-level: the address bounced.
    Row(Rcpt,     "550 5.1.1 no such user",                       Bounced,     Kept),
    Row(Rcpt,     "550 5.1.10 null MX: no mail accepted",         Bounced,     Kept),
    Row(Rcpt,     "550 5.2.1 mailbox disabled",                   Bounced,     Kept),
    Row(Rcpt,     "550 user unknown",                             Bounced,     Kept),
    Row(Rcpt,     "553 mailbox name not allowed",                 Bounced,     Kept),
    Row(Rcpt,     "550 5.0.0 user unknown",                       Bounced,     Kept),
    // About this reader, but nothing lasting: failed, not suppressed.
    Row(Rcpt,     "552 5.2.2 mailbox full",                       Refused,     Kept),
    Row(Rcpt,     "550 mailbox full",                             Refused,     Kept),
    Row(Rcpt,     "550 5.4.4 unable to route",                    Refused,     Kept),
    // The relay's: policy, relaying, authentication, quota, the sender.
    Row(Rcpt,     "554 5.7.1 Relay access denied",                RelayFor5xx, Kept),
    Row(Rcpt,     "550 5.7.1 message refused by policy",          RelayFor5xx, Kept),
    Row(Rcpt,     "550 5.7.1 you may not send to this address",   RelayFor5xx, Kept),
    Row(Rcpt,     "530 5.7.0 authentication required",            RelayFor5xx, Kept),
    Row(Rcpt,     "550 5.4.5 daily user sending quota exceeded",  RelayFor5xx, Kept),
    Row(Rcpt,     "550 5.1.7 bad sender address syntax",          RelayFor5xx, Kept),
    Row(Rcpt,     "554 transaction failed",                       RelayFor5xx, Kept),
    Row(Rcpt,     "550 relay not permitted",                      RelayFor5xx, Kept),
    Row(Rcpt,     "421 4.4.2 closing",                            NotSent,     Dropped),
    // The reply code says whether it lasts, the enhanced code what it is.
    Row(Rcpt,     "450 5.1.1 no such user, says the detail",      Deferred,    Kept),
    Row(Rcpt,     "550 4.2.2 mailbox full, says the detail",      Refused,     Kept),
    Row(Data,     "451 4.3.0 try later",                          Deferred,    Kept),
    Row(Data,     "554 5.5.1 no valid recipients",                RelayFor5xx, Kept),
    Row(Data,     "554 no mail today",                            RelayFor5xx, Kept),
    Row(Data,     "550 5.1.1 no such user",                       Bounced,     Kept),
    Row(Data,     "421 4.3.0 closing",                            NotSent,     Dropped),
    Row(AfterData, "250 2.0.0 queued",                            Sent,        Kept),
    Row(AfterData, "451 4.3.0 try later",                         Deferred,    Kept),
    Row(AfterData, "452 4.3.1 out of storage",                    Deferred,    Kept),
    Row(AfterData, "450 5.7.1 rejected, says the detail",         Deferred,    Kept),
    Row(AfterData, "554 5.7.1 rejected as spam",                  RelayFor5xx, Kept),
    Row(AfterData, "554 content rejected",                        RelayFor5xx, Kept),
    Row(AfterData, "552 5.3.4 message too big",                   RelayFor5xx, Kept),
    Row(AfterData, "550 4.7.1 refused, says the detail",          RelayFor5xx, Kept),
    Row(AfterData, "550 5.1.1 no such user, found after the data", Bounced,    Kept),
    Row(AfterData, "552 5.2.2 mailbox full",                      Refused,     Kept),
    // A 421 in answer to the message: the relay says it did not take it
    // (RFC 5321 §3.8), so it is tried again, not filed as "may have gone".
    Row(AfterData, "421 4.3.2 closing",                           Deferred,    Dropped),
];

#[tokio::test]
async fn each_reply_is_classified_as_its_row_says() {
    let mut wrong = Vec::new();
    for Row(at, reply, verdict, after) in ROWS {
        for pipelining in [false, true] {
            let got = run(*at, reply, pipelining).await;
            let code = &reply[..3];
            let shown_code = got.2.contains(code);
            if (got.0, got.1) != (*verdict, *after) || !shown_code {
                let way = if pipelining { "train" } else { "one by one" };
                wrong.push(format!(
                    "{at:?} {reply:?} ({way}): expected {verdict:?}/{after:?}, got {:?}/{:?} ({:?})",
                    got.0, got.1, got.2
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "rows not met:\n{}", wrong.join("\n"));
}

/// A connection dropped during a message: before its final `.` (the relay
/// closed with it unread) the message was not sent and goes again; after
/// it, the reply lost, it may have arrived. One by one and in a train,
/// and — for a drop before the `.` — a message larger than the socket's
/// buffers, whose write itself fails.
#[tokio::test]
async fn a_drop_before_the_final_dot_is_not_sent_and_after_it_unknown() {
    use super::test_servers::DataDrop;
    let large = {
        let mut message = b"Subject: hi\r\n\r\n".to_vec();
        message.extend(b"0123456789abcdefghijklmnopqrstuvwxyz.\r\n".repeat(200_000));
        message
    };
    let cases: [(DataDrop, &[u8], Verdict); 3] = [
        (DataDrop::BeforeDot, MESSAGE, NotSent),
        (DataDrop::BeforeDot, &large, NotSent),
        (DataDrop::AfterDot, MESSAGE, Unknown),
    ];
    for (drop, message, verdict) in cases {
        for pipelining in [false, true] {
            let script = Script {
                pipelining,
                drop: Some(drop),
                ..Script::default()
            };
            let (port, _) = scripted(script).await;
            let url = format!("smtp://127.0.0.1:{port}?tls=none");
            let settings = super::test_servers::settings(&url, None);
            let mut session = SmtpSession::open(&settings).await.unwrap();
            let (from, to) = addresses();
            let outcome = if pipelining {
                let envelope = session.envelope_of(&from, &to, message).unwrap();
                let started = session.exchange(None, Some(&envelope), TIMEOUT).await;
                assert_eq!(started, (None, Some(Ok(()))));
                session
                    .exchange(Some(message), None, TIMEOUT)
                    .await
                    .0
                    .unwrap()
            } else {
                session
                    .send(&from, &to, message, TIMEOUT, async { true })
                    .await
            };
            let got = match &outcome {
                Outcome::NotSent(_) => NotSent,
                Outcome::Unknown(_) => Unknown,
                other => panic!("{drop:?}: {other:?}"),
            };
            let size = message.len();
            assert_eq!(
                got, verdict,
                "{drop:?}, {size} bytes, pipelining {pipelining}: {outcome:?}"
            );
            assert!(session.is_broken());
        }
    }
}

/// A message offered to a server that answers `reply` at `at`: its
/// verdict, the connection afterwards, and the outcome's text (the error
/// when no session opened).
async fn run(at: At, reply: &'static str, pipelining: bool) -> (Verdict, After, String) {
    let mut script = Script {
        pipelining,
        ..Script::default()
    };
    match at {
        Greeting => script.greeting = reply,
        Ehlo => script.ehlo_refused = Some(reply),
        Mail => script.mail = reply,
        Rcpt => script.rcpt = reply,
        Data => script.data = reply,
        AfterData => script.end = reply,
    }
    let (port, _) = scripted(script).await;
    let url = format!("smtp://127.0.0.1:{port}?tls=none");
    let settings = super::test_servers::settings(&url, None);
    let mut session = match SmtpSession::open(&settings).await {
        Ok(session) => session,
        Err(err) => return (NoSession, Dropped, format!("{err:#}")),
    };
    assert_eq!(session.pipelines(), pipelining);
    let outcome = if pipelining {
        in_a_train(&mut session).await
    } else {
        one(&mut session).await
    };
    let after = if session.is_broken() { Dropped } else { Kept };
    let (verdict, text) = match outcome {
        Outcome::Sent(text) => (Sent, text),
        Outcome::Deferred(text) => (Deferred, text),
        Outcome::Failed(text) => (Bounced, text),
        Outcome::Refused(text) => (Refused, text),
        Outcome::RelayProblem(problem) if problem.permanent => (RelayFor5xx, problem.to_string()),
        Outcome::RelayProblem(problem) => (RelayFor4xx, problem.to_string()),
        Outcome::NotSent(text) => (NotSent, text),
        Outcome::Unknown(text) => (Unknown, text),
        Outcome::Withheld | Outcome::NotOffered(_) => panic!("a session offers what it is given"),
    };
    (verdict, after, text)
}

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nHello.\r\n";
const TIMEOUT: Duration = Duration::from_secs(5);

fn addresses() -> (Address, Address) {
    let from = "news@example.com".parse().unwrap();
    let to = "ana@example.com".parse().unwrap();
    (from, to)
}

/// The message on its own, as for a server without PIPELINING.
async fn one(session: &mut SmtpSession) -> Outcome {
    let (from, to) = addresses();
    session
        .send(&from, &to, MESSAGE, TIMEOUT, async { true })
        .await
}

/// The message as a train's first and last: its envelope, then its data.
async fn in_a_train(session: &mut SmtpSession) -> Outcome {
    let (from, to) = addresses();
    let envelope = session.envelope_of(&from, &to, MESSAGE).unwrap();
    match session.exchange(None, Some(&envelope), TIMEOUT).await {
        (None, Some(Ok(()))) => {}
        (None, Some(Err(outcome))) => return outcome,
        other => panic!("a train's start answered {other:?}"),
    }
    match session.exchange(Some(MESSAGE), None, TIMEOUT).await {
        (Some(outcome), None) => outcome,
        other => panic!("a train's last step answered {other:?}"),
    }
}
