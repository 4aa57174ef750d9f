//! Deliver stage, SMTP: one session with the relay ([`SmtpSession`]) —
//! connecting, TLS, login, and one message's transaction on its own (MAIL,
//! RCPT, DATA, each waited for), with the resets and hang-ups that keep
//! the connection in step with the server. May import lettre, tokio and
//! the other files of [`super`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lettre::Address;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use super::idn;
use super::payload::Payload;
use super::pipelining::offers_pipelining;
use super::reply::{self, Connection, Outcome, Stage, Timed};
use super::settings::{Security, SmtpSettings};
use super::socket::{self, Refusal, Watched};

/// How long a dropped connection's QUIT may wait for its reply.
const QUIT_GRACE: Duration = Duration::from_secs(1);

/// The relay refused the login: a configuration error, not an outage.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoginRefused(pub String);

/// One open SMTP connection to the relay, through which messages go one
/// transaction at a time.
pub struct SmtpSession {
    pub(super) conn: AsyncSmtpConnection,
    /// Whether the server takes MAIL, RCPT and DATA in one go (RFC 2920).
    pub(super) pipelining: bool,
    /// Set when the connection must not be used again.
    pub(super) broken: bool,
    /// Whether the relay refused bytes written on the socket under it.
    pub(super) refusal: Arc<Refusal>,
}

impl SmtpSession {
    /// Connects, greets, upgrades to TLS as configured and logs in.
    pub async fn open(settings: &SmtpSettings) -> Result<SmtpSession> {
        let hello = ClientId::default();
        let (mut conn, encrypted, refusal) = greeted(settings, &hello).await?;
        let pipelining = offers_pipelining(&mut conn, &hello, settings).await?;
        if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
            if !encrypted && settings.security != Security::Plain {
                bail!(
                    "{} offers no TLS; gazette will not send the password in clear text (use tls=none to allow it)",
                    settings.shown()
                );
            }
            let credentials = Credentials::new(user.clone(), password.clone());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
                .map_err(|err| {
                    LoginRefused(format!(
                        "{} refused the login of '{user}': {err}",
                        settings.shown()
                    ))
                })?;
        }
        Ok(SmtpSession {
            conn,
            pipelining,
            broken: false,
            refusal,
        })
    }

    /// Whether the connection is still usable.
    pub fn is_broken(&self) -> bool {
        self.broken || self.conn.has_broken()
    }

    /// Sends one message to one recipient. `permit` was asked for as the
    /// transaction starts (the caller records it durably meanwhile) and is
    /// awaited before the message goes, whatever MAIL, RCPT and DATA
    /// answered: `false` means the message must not go — then nothing is
    /// handed over, the transaction is reset (or, if the server already
    /// waits for the message, the connection dropped), and the outcome is
    /// [`Outcome::Withheld`].
    pub async fn send(
        &mut self,
        from: &Address,
        to: &Address,
        message: &[u8],
        timeout: Duration,
        permit: impl std::future::Future<Output = bool>,
    ) -> Outcome {
        let mut in_data = false;
        let refused = match self.mail(from, to, message) {
            Err(outcome) => Some(outcome),
            Ok((mail, rcpt)) if self.pipelining => {
                let (refused, waiting) = self.envelope_pipelined(mail, rcpt, timeout).await;
                in_data = waiting;
                refused
            }
            Ok((mail, rcpt)) => self.envelope(mail, rcpt, timeout).await,
        };
        if !permit.await {
            if in_data {
                self.hang_up();
            } else if refused.is_none() {
                self.reset(timeout).await;
            }
            return Outcome::Withheld;
        }
        if let Some(outcome) = refused {
            return outcome;
        }
        if !in_data && let Some(outcome) = self.step(Data, timeout, Stage::Data).await {
            return outcome;
        }
        let handed_over = async {
            match std::str::from_utf8(message) {
                Ok(text) => self.conn.command(Payload(text)).await,
                Err(_) => self.conn.message(message).await,
            }
        };
        let reply = tokio::time::timeout(timeout, handed_over).await;
        self.handed_over(reply, true).await
    }

    /// The outcome of a message from the reply to its data; the connection
    /// is dropped when it cannot go on. `last`: the message's final `.`
    /// ended what was written (nothing of the next message followed it).
    pub(super) async fn handed_over(&mut self, reply: Timed, last: bool) -> Outcome {
        let (outcome, connection) = reply::after_data(reply);
        // Refused bytes are the end of what was written: the final `.`
        // never reached the relay. Not so with the next envelope after it.
        let outcome = if last && self.refusal.seen() {
            reply::not_taken(outcome)
        } else {
            outcome
        };
        if connection == Connection::Drop {
            self.abort().await;
        }
        outcome
    }

    /// MAIL FROM and RCPT TO for `message` to `to`, with the parameters
    /// they need — in ASCII (see [`idn`]) for a server without SMTPUTF8;
    /// the outcome instead when the server cannot take them.
    pub(super) fn mail(
        &self,
        from: &Address,
        to: &Address,
        message: &[u8],
    ) -> Result<(Mail, Rcpt), Outcome> {
        let mut options = Vec::new();
        let ascii = |address: &Address| AsRef::<str>::as_ref(address).is_ascii();
        let (from, to) = if ascii(from) && ascii(to) {
            (from.clone(), to.clone())
        } else if self
            .conn
            .server_info()
            .supports_feature(Extension::SmtpUtfEight)
        {
            options.push(MailParameter::SmtpUtfEight);
            (from.clone(), to.clone())
        } else {
            idn::ascii_envelope(from, to)?
        };
        if !message.is_ascii() {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        Ok((Mail::new(Some(from), options), Rcpt::new(to, vec![])))
    }

    /// MAIL, then RCPT; `None` when both were accepted.
    async fn envelope(&mut self, mail: Mail, rcpt: Rcpt, timeout: Duration) -> Option<Outcome> {
        // MAIL: a refusal here is about the sender or the relay, not this reader.
        if let Some(outcome) = self.step(mail, timeout, Stage::Mail).await {
            return Some(outcome);
        }
        self.step(rcpt, timeout, Stage::Rcpt).await
    }

    /// Resets the transaction (RSET); drops the connection if that fails.
    async fn reset(&mut self, timeout: Duration) {
        let reset = tokio::time::timeout(timeout, self.conn.command(Rset)).await;
        if !matches!(reset, Ok(Ok(_))) {
            self.abort().await;
        }
    }

    /// One command before the message; `None` when it was accepted. After a
    /// refusal the transaction is reset (RSET), so the connection stays
    /// usable; after anything else the connection is dropped.
    async fn step<C: std::fmt::Display>(
        &mut self,
        command: C,
        timeout: Duration,
        stage: Stage,
    ) -> Option<Outcome> {
        let err = match tokio::time::timeout(timeout, self.conn.command(command)).await {
            Ok(Ok(_)) => return None,
            Err(_) => {
                self.abort().await;
                return Some(Outcome::NotSent("the server did not answer in time".into()));
            }
            Ok(Err(err)) => err,
        };
        if !reply::refusal(&err) {
            self.abort().await;
            return Some(Outcome::NotSent(err.to_string()));
        }
        Some(self.refused(&err, stage, timeout).await)
    }

    /// What a 4xx or 5xx reply at `stage` means, after the transaction is
    /// reset (RSET), so the connection stays usable for the next reader —
    /// unless the relay refused the sender: then it is dropped.
    pub(super) async fn refused(
        &mut self,
        err: &SmtpError,
        stage: Stage,
        timeout: Duration,
    ) -> Outcome {
        if !self.broken {
            self.reset(timeout).await;
        }
        if stage == Stage::Mail && !self.broken {
            self.abort().await;
        }
        reply::refused_at(stage, err)
    }

    /// Drops the connection: it is not used again. lettre says QUIT first
    /// and waits for the reply, which a server in trouble may never send:
    /// that wait is bounded.
    pub(super) async fn abort(&mut self) {
        self.broken = true;
        let _ = tokio::time::timeout(QUIT_GRACE, self.conn.abort()).await;
    }

    /// Drops the connection without a word, when the server waits for a
    /// message: anything written now would be read as part of it. The
    /// pool closes a broken session at once, and a message the server never
    /// saw the end of is not delivered (RFC 5321 §4.1.1.4).
    pub fn hang_up(&mut self) {
        self.broken = true;
    }

    /// Says goodbye (best effort).
    pub async fn quit(mut self) {
        let _ = self.conn.quit().await;
    }
}

/// A connection that greeted and answered EHLO, over TLS as `settings`
/// ask, on a socket of ours (see [`socket`]); and whether it is encrypted.
async fn greeted(
    settings: &SmtpSettings,
    hello: &ClientId,
) -> Result<(AsyncSmtpConnection, bool, Arc<Refusal>)> {
    let (stream, refusal) = Watched::new(socket::connect(settings).await?);
    if settings.security == Security::Implicit {
        let greeting = async {
            let stream = socket::implicit_tls(stream, tls_parameters(settings)?)
                .await
                .with_context(|| format!("TLS with {} failed", settings.shown()))?;
            AsyncSmtpConnection::connect_with_transport(stream, hello)
                .await
                .with_context(|| format!("{} refused the session", settings.shown()))
        };
        let conn = tokio::time::timeout(settings.timeout, greeting)
            .await
            .with_context(|| format!("{} did not greet in time", settings.shown()))??;
        // lettre sees the stream under its connection, not the TLS in it.
        return Ok((conn, true, refusal));
    }
    let mut conn = tokio::time::timeout(
        settings.timeout,
        AsyncSmtpConnection::connect_with_transport(Box::new(stream), hello),
    )
    .await
    .with_context(|| format!("{} did not greet in time", settings.shown()))?
    .with_context(|| format!("{} refused the session", settings.shown()))?;
    let wants_tls = settings.security != Security::Plain;
    if wants_tls && conn.can_starttls() {
        conn.starttls(tls_parameters(settings)?, hello)
            .await
            .with_context(|| format!("STARTTLS with {} failed", settings.shown()))?;
    } else if settings.security == Security::Required {
        bail!(
            "{} does not offer STARTTLS, and tls=required",
            settings.shown()
        );
    }
    let encrypted = conn.is_encrypted();
    Ok((conn, encrypted, refusal))
}

/// TLS checked against the usual roots for the relay's name.
fn tls_parameters(settings: &SmtpSettings) -> Result<TlsParameters> {
    let host = settings.host.clone();
    #[cfg(test)]
    if let Some(pem) = &settings.extra_root {
        use lettre::transport::smtp::client::Certificate;
        return Ok(TlsParameters::builder(host)
            .add_root_certificate(Certificate::from_pem(pem)?)
            .build()?);
    }
    TlsParameters::new(host.clone()).with_context(|| format!("cannot set up TLS for {host}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::smtp::test_servers::{chunk_keeper, open_plain};

    /// A message from news@ to ana@, sent if `granted`.
    async fn offer(session: &mut SmtpSession, granted: bool) -> Outcome {
        let from: Address = "news@example.com".parse().unwrap();
        let to: Address = "ana@example.com".parse().unwrap();
        let message = b"Subject: hi\r\n\r\nHello.\r\n";
        let timeout = Duration::from_secs(5);
        session
            .send(&from, &to, message, timeout, async move { granted })
            .await
    }

    #[tokio::test]
    async fn with_pipelining_mail_rcpt_and_data_go_in_one_write() {
        let (port, chunks) = chunk_keeper(true).await;
        let mut session = open_plain(port).await;
        let sent = offer(&mut session, true).await;
        assert_eq!(sent, Outcome::Sent("250 queued".into()));
        let seen = chunks.lock().unwrap().clone();
        assert!(
            seen.iter().any(|chunk| chunk
                == "MAIL FROM:<news@example.com>\r\nRCPT TO:<ana@example.com>\r\nDATA\r\n"),
            "{seen:?}"
        );
        // Withheld while the server waits for the message: the connection
        // is dropped before a byte of it goes.
        let before = chunks.lock().unwrap().len();
        let withheld = offer(&mut session, false).await;
        assert_eq!(withheld, Outcome::Withheld);
        assert!(session.is_broken());
        drop(session);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = chunks.lock().unwrap()[before..].to_vec();
        assert!(
            !after.iter().any(|chunk| chunk.contains("Hello")),
            "{after:?}"
        );
    }

    #[tokio::test]
    async fn without_pipelining_a_withheld_message_is_reset_and_the_connection_kept() {
        let (port, chunks) = chunk_keeper(false).await;
        let mut session = open_plain(port).await;
        let withheld = offer(&mut session, false).await;
        assert_eq!(withheld, Outcome::Withheld);
        assert!(!session.is_broken());
        let sent = offer(&mut session, true).await;
        assert_eq!(sent, Outcome::Sent("250 queued".into()));
        let seen = chunks.lock().unwrap().concat();
        let data_at = seen.find("DATA").unwrap();
        assert!(seen[..data_at].contains("RSET"), "{seen}");
        assert_eq!(seen.matches("Hello").count(), 1, "{seen}");
    }
}
