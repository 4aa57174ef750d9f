//! Deliver stage, SMTP: what a reply means — the [`Outcome`] of a message
//! from the reply to its envelope or to its data, and whether the
//! connection goes on after it. Pure: may import lettre's reply types,
//! tokio's `Elapsed` and std; no I/O.

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
    /// A 5xx: never try again (the address bounced).
    Failed(String),
    /// The connection broke before the message was handed over: try it
    /// again on another connection.
    NotSent(String),
    /// The connection broke after the message was handed over, before the
    /// reply: it may have been delivered (RFC 5321 §4.5.3.2).
    Unknown(String),
    /// The caller withheld it (the reader was suppressed meanwhile, or the
    /// ledger could not record it): nothing was handed over.
    Withheld,
}

/// Which command a refusal answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// MAIL FROM: the sender or the relay.
    Mail,
    /// RCPT TO or DATA: this reader.
    Reader,
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

/// What a refusal (see [`refusal`]) at `stage` means. A refused sender is
/// the relay's trouble, not this reader's: the message was not sent.
pub(super) fn refused_at(stage: Stage, err: &SmtpError) -> Outcome {
    let text = err.to_string();
    match stage {
        Stage::Mail => Outcome::NotSent(format!("the relay refused the sender: {text}")),
        Stage::Reader if err.is_transient() => Outcome::Deferred(text),
        Stage::Reader => Outcome::Failed(text),
    }
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
        Ok(Err(err)) if err.is_transient() => {
            (Outcome::Deferred(err.to_string()), Connection::Usable)
        }
        Ok(Err(err)) if err.is_permanent() => {
            (Outcome::Failed(err.to_string()), Connection::Usable)
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
