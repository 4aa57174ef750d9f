//! Deliver stage, SMTP: pipelining (RFC 2920) on an [`SmtpSession`] —
//! whether the server offers it, a message's envelope (MAIL, RCPT, DATA)
//! in one write, and trains: each message's data in one write with the
//! next message's envelope, then their replies. May import lettre, tokio
//! and the other files of [`super`].
//!
//! Round trips are what a session waits for: with PIPELINING, MAIL, RCPT
//! and DATA go in one write, and each message, dot-stuffed, in another.

use std::time::Duration;

use anyhow::{Context, Result};
use lettre::Address;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;

use super::payload::Payload;
use super::reply::{self, Outcome, Stage, Timed};
use super::session::SmtpSession;
use super::settings::SmtpSettings;

/// Whether the server offers PIPELINING (RFC 2920). lettre keeps only the
/// extensions it uses from its EHLO, so the question is asked again (an
/// EHLO resets nothing else; before any login).
pub(super) async fn offers_pipelining(
    conn: &mut AsyncSmtpConnection,
    hello: &ClientId,
    settings: &SmtpSettings,
) -> Result<bool> {
    let reply = tokio::time::timeout(settings.timeout, conn.command(Ehlo::new(hello.clone())))
        .await
        .with_context(|| format!("{} did not answer EHLO in time", settings.shown()))?;
    Ok(reply.is_ok_and(|reply| {
        reply.message().any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case("PIPELINING"))
        })
    }))
}

/// A message's MAIL, RCPT and DATA, written ahead of its data.
pub struct Envelope(String);

/// A message's data, then the next message's envelope: one write.
struct Train<'a>(Payload<'a>, &'a str);

impl std::fmt::Display for Train<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.0, self.1)
    }
}

impl SmtpSession {
    /// Whether messages can go in a train: the server offers PIPELINING.
    pub fn pipelines(&self) -> bool {
        self.pipelining
    }

    /// The envelope of a message to `to`, to go ahead of its data; the
    /// message's outcome instead when this server cannot take it.
    pub fn envelope_of(
        &self,
        from: &Address,
        to: &Address,
        message: &[u8],
    ) -> Result<Envelope, Outcome> {
        let (mail, rcpt) = self.mail(from, to, message)?;
        Ok(Envelope(format!("{mail}{rcpt}{Data}")))
    }

    /// A train's step, in one write (RFC 2920 lets a message's data start
    /// a group): the data of the message whose envelope the server took
    /// (it waits for it), if any, then the envelope of the next one, if
    /// any; then their replies. Returns the message's outcome and, for the
    /// next one, `Ok` when the server waits for its data or its outcome.
    /// The caller has the next one's `sending` mark on its way, and awaits
    /// the message's before calling this.
    pub async fn exchange(
        &mut self,
        data: Option<&[u8]>,
        next: Option<&Envelope>,
        timeout: Duration,
    ) -> (Option<Outcome>, Option<Result<(), Outcome>>) {
        let mut written = false;
        let outcome = match data {
            None => None,
            Some(message) => {
                let reply = match (std::str::from_utf8(message), next) {
                    (Ok(text), Some(next)) => {
                        written = true;
                        let group = Train(Payload(text), &next.0);
                        tokio::time::timeout(timeout, self.conn.command(group)).await
                    }
                    (Ok(text), None) => {
                        tokio::time::timeout(timeout, self.conn.command(Payload(text))).await
                    }
                    (Err(_), _) => tokio::time::timeout(timeout, self.conn.message(message)).await,
                };
                Some(self.handed_over(reply, !written).await)
            }
        };
        let Some(next) = next else {
            return (outcome, None);
        };
        if self.is_broken() {
            let lost = "the connection was closed after the message before it";
            return (outcome, Some(Err(Outcome::NotSent(lost.into()))));
        }
        let first = if written {
            tokio::time::timeout(timeout, self.conn.read_response()).await
        } else {
            tokio::time::timeout(timeout, self.conn.command(&next.0)).await
        };
        let next = match self.envelope_replies(first, timeout).await {
            (None, true) => Ok(()),
            (Some(refused), _) => Err(refused),
            // Accepted without the server waiting: not an SMTP server
            // this can talk to.
            (None, false) => {
                self.abort().await;
                Err(Outcome::NotSent("no 354 reply to DATA".into()))
            }
        };
        (outcome, Some(next))
    }

    /// MAIL, RCPT and DATA in one write, then their three replies (RFC
    /// 2920): one round trip instead of three. `(None, true)` when all
    /// were accepted and the server waits for the message.
    pub(super) async fn envelope_pipelined(
        &mut self,
        mail: Mail,
        rcpt: Rcpt,
        timeout: Duration,
    ) -> (Option<Outcome>, bool) {
        let group = format!("{mail}{rcpt}{Data}");
        let first = tokio::time::timeout(timeout, self.conn.command(group)).await;
        self.envelope_replies(first, timeout).await
    }

    /// The replies to MAIL, RCPT and DATA written in one go, the first
    /// already read. `(None, true)` when all were accepted and the server
    /// waits for the message.
    async fn envelope_replies(
        &mut self,
        first: Timed,
        timeout: Duration,
    ) -> (Option<Outcome>, bool) {
        let mut replies = Vec::with_capacity(3);
        let mut next = first;
        loop {
            // After no reply, or one that is not SMTP, the rest cannot be read.
            let goes_on = match &next {
                Ok(Ok(_)) => true,
                Ok(Err(err)) => reply::refusal(err),
                Err(_) => false,
            };
            replies.push(next);
            if !goes_on || replies.len() == 3 {
                break;
            }
            next = tokio::time::timeout(timeout, self.conn.read_response()).await;
        }
        let waiting = replies.len() == 3 && matches!(replies[2], Ok(Ok(_)));
        let stages = [Stage::Mail, Stage::Rcpt, Stage::Data];
        for (answer, stage) in replies.into_iter().zip(stages) {
            let err = match answer {
                Ok(Ok(_)) => continue,
                Err(_) => {
                    self.abort().await;
                    return (
                        Some(Outcome::NotSent("the server did not answer in time".into())),
                        false,
                    );
                }
                Ok(Err(err)) => err,
            };
            if !reply::refusal(&err) {
                self.abort().await;
                return (Some(Outcome::NotSent(err.to_string())), false);
            }
            // The server waits for a message it must not get: only
            // dropping the connection ends that.
            if waiting {
                self.hang_up();
            }
            return (Some(self.refused(&err, stage, timeout).await), false);
        }
        (None, waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::smtp::test_servers::{chunk_keeper, open_plain};

    #[tokio::test]
    async fn a_train_sends_each_message_with_the_next_envelope_in_one_write() {
        let (port, chunks) = chunk_keeper(true).await;
        let mut session = open_plain(port).await;
        assert!(session.pipelines());
        let from: Address = "news@example.com".parse().unwrap();
        let envelope = |session: &SmtpSession, to: &str| {
            let to: Address = to.parse().unwrap();
            session.envelope_of(&from, &to, b"Hi.\r\n").unwrap()
        };
        let timeout = Duration::from_secs(5);
        let ana = envelope(&session, "ana@example.com");
        let started = session.exchange(None, Some(&ana), timeout).await;
        assert_eq!(started, (None, Some(Ok(()))));
        // Ana's message and Bo's envelope in one write: Bo is refused at
        // RCPT, after the reply to Ana's message.
        let bo = envelope(&session, "bo@example.com");
        let (sent, refused) = session
            .exchange(Some(b"Hello Ana.\r\n"), Some(&bo), timeout)
            .await;
        assert_eq!(sent, Some(Outcome::Sent("250 queued".into())));
        assert!(
            matches!(&refused, Some(Err(Outcome::Failed(reply))) if reply.contains("550")),
            "{refused:?}"
        );
        // The transaction was reset: the connection carries on.
        assert!(!session.is_broken());
        let cy = envelope(&session, "cy@example.com");
        assert_eq!(
            session.exchange(None, Some(&cy), timeout).await,
            (None, Some(Ok(())))
        );
        let (sent, none) = session
            .exchange(Some(b".Hello Cy.\r\n"), None, timeout)
            .await;
        assert_eq!(
            (sent, none),
            (Some(Outcome::Sent("250 queued".into())), None)
        );
        let seen = chunks.lock().unwrap().clone();
        assert!(
            seen.iter().any(|chunk| chunk
                == "Hello Ana.\r\n\r\n.\r\nMAIL FROM:<news@example.com>\r\nRCPT TO:<bo@example.com>\r\nDATA\r\n"),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|chunk| chunk == "..Hello Cy.\r\n\r\n.\r\n"),
            "{seen:?}"
        );
        assert_eq!(seen.concat().matches("RSET").count(), 1, "{seen:?}");
    }
}
