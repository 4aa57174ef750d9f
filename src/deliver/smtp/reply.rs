//! Deliver stage, SMTP: what a reply means — the [`Outcome`] of a message
//! from the reply to its envelope or to its data, and whether the
//! connection goes on after it. The meaning of a refusal is a pure
//! function of the stage it answered, its reply code, its RFC 3463
//! enhanced status code and its text ([`meaning`]); docs/src/reference/
//! sending.md has the table. May import lettre's reply types, tokio's
//! `Elapsed` and std; no I/O.

use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::response::Response;
use tokio::time::error::Elapsed;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 250 to the end of DATA: the server took it.
    Sent(String),
    /// A 4xx: try again later.
    Deferred(String),
    /// A mailbox-level 5xx (RFC 3463 X.1.x, X.2.1): the address bounced;
    /// never try again, and suppress it.
    Failed(String),
    /// A 5xx about this reader that says nothing lasting about the address
    /// (a full mailbox, X.2.2; a destination that cannot be routed, X.4.x):
    /// not tried again for this issue, not suppressed.
    Refused(String),
    /// The relay refuses to carry the mail, whoever the reader (the sender,
    /// policy, authentication, relaying, content, a sending quota): not a
    /// verdict on this reader, who is not suppressed; the run stops.
    RelayProblem(RelayProblem),
    /// The connection broke before the message was handed over: try it
    /// again on another connection.
    NotSent(String),
    /// The pool stopped before offering the message to the relay (a
    /// signal, a relay problem, connection failures): it goes next run,
    /// as if never tried — no attempt, no reply kept, so an issue's age
    /// never gives it up (see `Ledger::expire_tried`).
    NotOffered(String),
    /// The connection broke after the message was handed over, before the
    /// reply: it may have been delivered (RFC 5321 §4.5.3.2).
    Unknown(String),
    /// The caller withheld it (the reader was suppressed meanwhile, or the
    /// ledger could not record it): nothing was handed over.
    Withheld,
}

/// A refusal that is the relay's, not a reader's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayProblem {
    /// The reply as the relay gave it (`554 5.7.1 Relay access denied`),
    /// or why gazette could not offer the message.
    pub reply: String,
    /// Where in the session: `MAIL FROM`, `RCPT TO`, `DATA`, `the end of
    /// the message`, `EHLO` (an extension the relay lacks).
    pub at: &'static str,
    /// A 5xx (exit 1); else a 4xx (exit 75, try again later).
    pub permanent: bool,
}

impl std::fmt::Display for RelayProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at {})", self.reply, self.at)
    }
}

/// Which command a reply answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// MAIL FROM: the sender or the relay.
    Mail,
    /// RCPT TO: this reader.
    Rcpt,
    /// DATA, before the message (354 expected).
    Data,
    /// The end of the message (the final `.`).
    EndOfData,
}

impl Stage {
    /// The command, as the operator reads it.
    fn shown(self) -> &'static str {
        match self {
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::EndOfData => "the end of the message",
        }
    }
}

/// Whether the connection can carry another message after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Connection {
    Usable,
    /// Closing (421), broken, or out of step with the server: drop it.
    Drop,
}

/// A reply read within the time allowed, or not.
pub(super) type Timed = Result<Result<Response, SmtpError>, Elapsed>;

/// Whether `err` is a 4xx or 5xx refusal after which the connection goes
/// on (not a 421, not a broken connection).
pub(super) fn refusal(err: &SmtpError) -> bool {
    !closing(err) && (err.is_transient() || err.is_permanent())
}

/// A 421: the server is closing the connection, whatever the command.
fn closing(err: &SmtpError) -> bool {
    err.status().is_some_and(|code| code.to_string() == "421")
}

/// What a refusal (see [`refusal`]) at `stage` means for the message (see
/// [`meaning`]), with the reply as the relay gave it.
pub(super) fn refused_at(stage: Stage, err: &SmtpError) -> Outcome {
    let code = err
        .status()
        .map(|code| code.to_string())
        .unwrap_or_default();
    // lettre keeps the reply's text as the error's source.
    let text = std::error::Error::source(err)
        .map(|source| source.to_string())
        .unwrap_or_default();
    let reply = format!("{code} {text}").trim().to_string();
    let number = code.parse().unwrap_or(0);
    match meaning(stage, number, Enhanced::of(&text), &text) {
        Meaning::Deferred => Outcome::Deferred(reply),
        Meaning::Bounced => Outcome::Failed(reply),
        Meaning::Refused => Outcome::Refused(reply),
        Meaning::Relay => Outcome::RelayProblem(RelayProblem {
            reply,
            at: stage.shown(),
            permanent: err.is_permanent(),
        }),
    }
}

/// What makes two refusals the same: the reply code and the enhanced code
/// a reply (as an [`Outcome`] gives it) starts with — `550 5.1.1` of
/// `550 5.1.1 <ana@example.com>: no such user`.
pub fn refusal_code(reply: &str) -> String {
    let mut words = reply.split_whitespace();
    let code = words.next().unwrap_or_default();
    match words.next() {
        Some(word) if Enhanced::of(word).is_some() => format!("{code} {word}"),
        _ => code.to_string(),
    }
}

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Enhanced {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl Enhanced {
    /// The code a reply's text starts with (`5.1.1 no such user`), if any.
    pub(super) fn of(text: &str) -> Option<Enhanced> {
        let word = text.split_whitespace().next()?;
        let mut parts = word.splitn(3, '.');
        let mut part = || -> Option<u16> {
            let digits = parts.next()?;
            let short = (1..=3).contains(&digits.len());
            if short && digits.bytes().all(|b| b.is_ascii_digit()) {
                digits.parse().ok()
            } else {
                None
            }
        };
        let class = u8::try_from(part()?).ok()?;
        let (subject, detail) = (part()?, part()?);
        matches!(class, 2 | 4 | 5).then_some(Enhanced {
            class,
            subject,
            detail,
        })
    }
}

/// What a refusal means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Meaning {
    /// Try again later.
    Deferred,
    /// The address bounced: failed, and suppressed.
    Bounced,
    /// Failed for this issue; the address is not suppressed.
    Refused,
    /// The relay's problem: the run stops and nobody is suppressed for it.
    Relay,
}

/// What a 4xx or 5xx reply (not 421) at `stage` means. Any refusal of MAIL
/// FROM is the relay's (the sender is the same for every reader) — but a
/// 4xx asking to slow down, which is deferred; a 4xx to
/// anything else is temporary. A 5xx goes by its enhanced code's subject
/// and detail when it has one that says something ([`by_enhanced`]; the
/// class is the reply code's to say), else by the stage, the code and the
/// text ([`by_code`]). In doubt, a relay problem: it suppresses nobody.
pub(super) fn meaning(stage: Stage, code: u16, enhanced: Option<Enhanced>, text: &str) -> Meaning {
    if stage == Stage::Mail {
        // A relay that limits its pace may say so to MAIL FROM: the pool
        // slows down and the message is tried again.
        if code < 500 && asks_to_slow_down(&format!("{code} {text}")) {
            return Meaning::Deferred;
        }
        return Meaning::Relay;
    }
    if code < 500 {
        return Meaning::Deferred;
    }
    enhanced
        .and_then(by_enhanced)
        .unwrap_or_else(|| by_code(stage, code, text))
}

/// A permanent refusal by its RFC 3463 subject and detail; `None` when
/// they say nothing specific (X.0.x, a subject RFC 3463 does not define).
fn by_enhanced(code: Enhanced) -> Option<Meaning> {
    Some(match (code.subject, code.detail) {
        // The sender's address (X.1.7 syntax, X.1.8 its domain).
        (1, 7 | 8) => Meaning::Relay,
        // The recipient's address: no such mailbox (X.1.1), no such
        // domain (X.1.2), bad syntax, moved, no mail accepted (X.1.10).
        (1, _) => Meaning::Bounced,
        // Mailbox disabled, not accepting messages.
        (2, 1) => Meaning::Bounced,
        // The message is longer than a limit: so is everyone's.
        (2, 3) => Meaning::Relay,
        // Mailbox full (X.2.2) lasts until the reader makes room; other
        // mailbox states and list expansion say nothing for good.
        (2, _) => Meaning::Refused,
        // The mail system (X.3), protocol (X.5), content (X.6), policy
        // and security (X.7: relaying, authentication, spam), and the
        // sending quota big relays give as X.4.5.
        (3 | 5 | 6 | 7, _) | (4, 5) => Meaning::Relay,
        // Routing to this reader's domain (X.4.4 unable to route, …).
        (4, _) => Meaning::Refused,
        _ => return None,
    })
}

/// A permanent refusal without an enhanced code that says something: at
/// RCPT, 550/551/553/556 are about the mailbox unless the text speaks of
/// relaying, policy or limits, 552 is a full mailbox, anything else is the
/// relay's; at DATA or to the message, the relay's (the recipient was
/// accepted, so it is the message or the sender that is refused).
fn by_code(stage: Stage, code: u16, text: &str) -> Meaning {
    if stage != Stage::Rcpt {
        return Meaning::Relay;
    }
    let text = text.to_lowercase();
    let says = |words: &[&str]| words.iter().any(|word| text.contains(word));
    match code {
        _ if says(RELAY_WORDS) => Meaning::Relay,
        550 | 551 | 553 | 556 if says(FULL_WORDS) => Meaning::Refused,
        550 | 551 | 553 | 556 => Meaning::Bounced,
        552 => Meaning::Refused,
        _ => Meaning::Relay,
    }
}

/// Words of a refusal without an enhanced code that make it the relay's.
const RELAY_WORDS: &[&str] = &[
    "relay",
    "authenticat",
    "spam",
    "block",
    "blacklist",
    "policy",
    "rate limit",
    "sending limit",
    "sending quota",
];

/// Words of a refusal without an enhanced code that say the mailbox is
/// full, for now.
const FULL_WORDS: &[&str] = &["full", "quota", "storage"];

/// Words with which relays say a temporary refusal is about the pace:
/// Gmail's "unusual rate", Yahoo's "unexpected volume", Postfix and
/// Microsoft's "too many", "throttled", "rate limit".
const SLOW_DOWN_WORDS: &[&str] = &[
    "rate limit",
    "ratelimit",
    "rate-limit",
    "unusual rate",
    "too many",
    "throttl",
    "volume",
    "slow down",
];

/// Whether a temporary refusal's `reply` (as an outcome gives it) asks to
/// slow down: a 4xx with an RFC 3463 policy code (4.7.x), or one whose
/// text says so. A 421 that only closes the connection (4.4.2, 4.3.2) or
/// a full mailbox does not.
pub(crate) fn asks_to_slow_down(reply: &str) -> bool {
    let temporary = reply.contains("transient error (4")
        || reply.trim_start().starts_with('4')
        || reply.contains(": 4");
    if !temporary {
        return false;
    }
    let lower = reply.to_ascii_lowercase();
    lower
        .split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')')
        .any(|word| word.starts_with("4.7.") && word[4..].bytes().all(|b| b.is_ascii_digit()))
        || SLOW_DOWN_WORDS.iter().any(|words| lower.contains(words))
}

/// The outcome of a message from the reply to its data.
pub(super) fn after_data(reply: Timed) -> (Outcome, Connection) {
    match reply {
        // A late reply would answer the next command: never reuse.
        Err(_) => (
            Outcome::Unknown("no reply to the message in time".into()),
            Connection::Drop,
        ),
        Ok(Ok(response)) if response.code().to_string().starts_with('2') => (
            Outcome::Sent(reply_text(&response.code().to_string(), response.message())),
            Connection::Usable,
        ),
        Ok(Ok(response)) => (
            Outcome::Unknown(format!(
                "unexpected reply to the message: {}",
                reply_text(&response.code().to_string(), response.message())
            )),
            Connection::Drop,
        ),
        // The relay answered the message and said it is closing: it did
        // not take it (RFC 5321 §3.8), so it goes again later.
        Ok(Err(err)) if closing(&err) => (Outcome::Deferred(err.to_string()), Connection::Drop),
        Ok(Err(err)) if err.is_transient() || err.is_permanent() => {
            (refused_at(Stage::EndOfData, &err), Connection::Usable)
        }
        Ok(Err(err)) => (Outcome::Unknown(err.to_string()), Connection::Drop),
    }
}

/// `outcome` of a message whose final `.` never reached the relay (the
/// connection broke with it unread): an [`Outcome::Unknown`] is
/// [`Outcome::NotSent`] — nothing was delivered, it goes again.
pub(super) fn not_taken(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Unknown(why) => Outcome::NotSent(format!(
            "the connection broke before the relay took the end of the message: {why}"
        )),
        outcome => outcome,
    }
}

fn reply_text<'a>(code: &str, lines: impl Iterator<Item = &'a str>) -> String {
    let text: Vec<&str> = lines.collect();
    format!("{code} {}", text.join(" ")).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_replies_are_told_from_other_temporary_refusals() {
        for slow in [
            "transient error (421): 4.7.0 too many messages, closing",
            "transient error (421): 4.7.28 Our system has detected an unusual rate of mail",
            "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume",
            "transient error (451): 4.7.500 Server busy. Please try again later",
            "the relay refused the sender: transient error (452): too many messages this hour",
            "transient error (451): throttled",
        ] {
            assert!(asks_to_slow_down(slow), "{slow}");
        }
        for other in [
            "transient error (421): 4.4.2 closing the connection",
            "transient error (452): 4.2.2 mailbox full",
            // One reader's mailbox is busy (Gmail): not the run's pace.
            "transient error (450): 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages",
            "transient error (451): 4.3.0 try again later",
            "permanent error (550): 5.7.1 too many recipients, says a 5xx",
            "250 2.0.0 OK generate separate",
            "the connection was lost",
            "transient error (451): 4.7.x is not a code",
        ] {
            assert!(!asks_to_slow_down(other), "{other}");
        }
    }

    #[test]
    fn an_enhanced_code_is_read_from_the_start_of_the_text() {
        let code = |class, subject, detail| {
            Some(Enhanced {
                class,
                subject,
                detail,
            })
        };
        assert_eq!(Enhanced::of("5.1.1 no such user"), code(5, 1, 1));
        assert_eq!(Enhanced::of("5.1.10 null MX"), code(5, 1, 10));
        assert_eq!(Enhanced::of("4.7.0 slow down"), code(4, 7, 0));
        assert_eq!(Enhanced::of("no such user 5.1.1"), None);
        assert_eq!(Enhanced::of("5.1 short"), None);
        assert_eq!(Enhanced::of("5.1.1000 long"), None);
        assert_eq!(Enhanced::of("3.1.1 no class 3"), None);
        assert_eq!(Enhanced::of(""), None);
    }

    #[test]
    fn without_an_enhanced_code_the_text_can_make_a_refusal_the_relays() {
        let at_rcpt = |code, text| meaning(Stage::Rcpt, code, Enhanced::of(text), text);
        assert_eq!(at_rcpt(550, "no such user"), Meaning::Bounced);
        assert_eq!(at_rcpt(553, "mailbox name not allowed"), Meaning::Bounced);
        assert_eq!(at_rcpt(550, "relay not permitted"), Meaning::Relay);
        assert_eq!(at_rcpt(550, "Daily sending quota exceeded"), Meaning::Relay);
        assert_eq!(at_rcpt(550, "mailbox full"), Meaning::Refused);
        assert_eq!(at_rcpt(552, "requested action aborted"), Meaning::Refused);
        assert_eq!(at_rcpt(554, "transaction failed"), Meaning::Relay);
        assert_eq!(at_rcpt(530, "authentication required"), Meaning::Relay);
        // An enhanced code that says nothing specific: the code decides.
        assert_eq!(at_rcpt(550, "5.0.0 user unknown"), Meaning::Bounced);
        // An enhanced code that says something outweighs the words.
        assert_eq!(
            at_rcpt(550, "5.1.1 blocked: no such user"),
            Meaning::Bounced
        );
        let at_end = |code, text| meaning(Stage::EndOfData, code, Enhanced::of(text), text);
        assert_eq!(at_end(550, "no such user"), Meaning::Relay);
        assert_eq!(at_end(550, "5.1.1 no such user"), Meaning::Bounced);
    }
}
