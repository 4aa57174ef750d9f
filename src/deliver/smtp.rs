//! Deliver stage: SMTP through lettre's async connection, one recipient
//! per transaction, each outcome classified for the ledger.
//!
//! Plain and STARTTLS connections are opened by us with `TCP_NODELAY` and
//! handed to lettre: lettre 0.11.23 writes a message and its final `.` in
//! two writes, and without it Nagle's algorithm holds the second for the
//! peer's delayed ACK (40 ms a message). Implicit TLS (`smtps://`) uses
//! lettre's own connection.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use url::Url;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain text (`smtp://`, `?tls=none`): catchers such as MailHog.
    Plain,
    /// STARTTLS when the server offers it, plain otherwise (`smtp://` default).
    Opportunistic,
    /// STARTTLS or fail (`?tls=required`).
    Required,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// Where and how to send, from `smtp://user@host:port?tls=…`.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: Option<String>,
    password: Option<String>,
    pub timeout: Duration,
}

impl SmtpSettings {
    /// Reads an SMTP URL; the password comes from `password`
    /// (`GAZETTE_SMTP_PASSWORD`), never from the URL.
    pub fn parse(text: &str, password: Option<String>, timeout: Duration) -> Result<SmtpSettings> {
        let url =
            Url::parse(text.trim()).with_context(|| format!("'{text}' is not an SMTP URL"))?;
        if url.password().is_some() {
            bail!("put the SMTP password in GAZETTE_SMTP_PASSWORD, not in the URL");
        }
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => bail!("SMTP URL must start with smtp:// or smtps://, not {other}://"),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .with_context(|| format!("SMTP URL '{text}' has no host"))?
            .trim_matches(['[', ']'])
            .to_string();
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let security = match (implicit, tls.as_deref()) {
            (true, None) => Security::Implicit,
            (false, None | Some("opportunistic")) => Security::Opportunistic,
            (false, Some("required")) => Security::Required,
            (false, Some("none")) => Security::Plain,
            (_, Some(other)) => bail!(
                "SMTP URL: tls={other} is not known; use tls=required, tls=opportunistic or tls=none (smtps:// is always TLS)"
            ),
        };
        let port = url.port().unwrap_or(if implicit { 465 } else { 25 });
        let user = (!url.username().is_empty()).then(|| percent_decode(url.username()));
        Ok(SmtpSettings {
            host,
            port,
            security,
            user,
            password,
            timeout,
        })
    }

    /// `smtp://host:port` as shown in messages (no user, no password).
    pub fn shown(&self) -> String {
        let scheme = if self.security == Security::Implicit {
            "smtps"
        } else {
            "smtp"
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("u={text}").as_bytes())
        .next()
        .map_or_else(|| text.to_string(), |(_, v)| v.into_owned())
}

/// The relay refused the login: a configuration error, not an outage.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoginRefused(pub String);

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

/// One open SMTP connection.
pub struct Session {
    conn: AsyncSmtpConnection,
    /// Set when the connection must not be used again.
    broken: bool,
}

impl Session {
    /// Connects, greets, upgrades to TLS as configured and logs in.
    pub async fn open(settings: &SmtpSettings) -> Result<Session> {
        let hello = ClientId::default();
        let tls = || {
            TlsParameters::new(settings.host.clone())
                .with_context(|| format!("cannot set up TLS for {}", settings.host))
        };
        let mut conn = match settings.security {
            Security::Implicit => AsyncSmtpConnection::connect_tokio1(
                (settings.host.as_str(), settings.port),
                Some(settings.timeout),
                &hello,
                Some(tls()?),
                None,
            )
            .await
            .with_context(|| format!("cannot connect to {}", settings.shown()))?,
            _ => {
                let stream = tokio::time::timeout(
                    settings.timeout,
                    tokio::net::TcpStream::connect((settings.host.as_str(), settings.port)),
                )
                .await
                .with_context(|| format!("connecting to {} timed out", settings.shown()))?
                .with_context(|| format!("cannot connect to {}", settings.shown()))?;
                stream.set_nodelay(true)?;
                let mut conn = tokio::time::timeout(
                    settings.timeout,
                    AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello),
                )
                .await
                .with_context(|| format!("{} did not greet in time", settings.shown()))?
                .with_context(|| format!("{} refused the session", settings.shown()))?;
                let wants_tls = settings.security != Security::Plain;
                if wants_tls && conn.can_starttls() {
                    conn.starttls(tls()?, &hello)
                        .await
                        .with_context(|| format!("STARTTLS with {} failed", settings.shown()))?;
                } else if settings.security == Security::Required {
                    bail!(
                        "{} does not offer STARTTLS, and tls=required",
                        settings.shown()
                    );
                }
                conn
            }
        };
        if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
            if !conn.is_encrypted() && settings.security != Security::Plain {
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
        Ok(Session {
            conn,
            broken: false,
        })
    }

    /// Whether the connection is still usable.
    pub fn is_broken(&self) -> bool {
        self.broken || self.conn.has_broken()
    }

    /// Sends one message to one recipient. `permit` was asked for as the
    /// transaction starts (the caller records it durably meanwhile) and is
    /// awaited before DATA, whatever MAIL and RCPT answered: `false` means
    /// the message must not go — then nothing is handed over, the
    /// transaction is reset, and the outcome is [`Outcome::Withheld`].
    pub async fn send(
        &mut self,
        from: &Address,
        to: &Address,
        message: &[u8],
        timeout: Duration,
        permit: impl std::future::Future<Output = bool>,
    ) -> Outcome {
        let refused = self.envelope(from, to, message, timeout).await;
        if !permit.await {
            if refused.is_none() {
                self.reset(timeout).await;
            }
            return Outcome::Withheld;
        }
        if let Some(outcome) = refused {
            return outcome;
        }
        if let Some(outcome) = self.step(Data, timeout, Stage::Reader).await {
            return outcome;
        }
        match tokio::time::timeout(timeout, self.conn.message(message)).await {
            Err(_) => {
                // A late reply would answer the next command: never reuse.
                self.abort().await;
                Outcome::Unknown("no reply to the message in time".into())
            }
            Ok(Ok(response)) if response.code().to_string().starts_with('2') => {
                Outcome::Sent(reply_text(&response.code().to_string(), response.message()))
            }
            Ok(Ok(response)) => {
                self.abort().await;
                Outcome::Unknown(format!(
                    "unexpected reply to the message: {}",
                    reply_text(&response.code().to_string(), response.message())
                ))
            }
            Ok(Err(err)) if closing(&err) => {
                self.abort().await;
                Outcome::Unknown(err.to_string())
            }
            Ok(Err(err)) if err.is_transient() => Outcome::Deferred(err.to_string()),
            Ok(Err(err)) if err.is_permanent() => Outcome::Failed(err.to_string()),
            Ok(Err(err)) => {
                self.abort().await;
                Outcome::Unknown(err.to_string())
            }
        }
    }

    /// MAIL and RCPT for `message`; `None` when both were accepted.
    async fn envelope(
        &mut self,
        from: &Address,
        to: &Address,
        message: &[u8],
        timeout: Duration,
    ) -> Option<Outcome> {
        let mut options = Vec::new();
        let ascii = |address: &Address| AsRef::<str>::as_ref(address).is_ascii();
        if !ascii(from) || !ascii(to) {
            if !self
                .conn
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                return Some(Outcome::Failed(
                    "the address is not ASCII and the server does not offer SMTPUTF8".into(),
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        // MAIL: a refusal here is about the sender or the relay, not this reader.
        let mail = Mail::new(Some(from.clone()), options);
        if let Some(outcome) = self.step(mail, timeout, Stage::Mail).await {
            return Some(outcome);
        }
        self.step(Rcpt::new(to.clone(), vec![]), timeout, Stage::Reader)
            .await
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
        let text = err.to_string();
        if closing(&err) || !(err.is_transient() || err.is_permanent()) {
            self.abort().await;
            return Some(Outcome::NotSent(text));
        }
        self.reset(timeout).await;
        Some(match stage {
            Stage::Mail => {
                self.abort().await;
                Outcome::NotSent(format!("the relay refused the sender: {text}"))
            }
            Stage::Reader if err.is_transient() => Outcome::Deferred(text),
            Stage::Reader => Outcome::Failed(text),
        })
    }

    /// Drops the connection: it is not used again.
    async fn abort(&mut self) {
        self.broken = true;
        self.conn.abort().await;
    }

    /// Says goodbye (best effort).
    pub async fn quit(mut self) {
        let _ = self.conn.quit().await;
    }
}

/// Which command a refusal answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// MAIL FROM: the sender or the relay.
    Mail,
    /// RCPT TO or DATA: this reader.
    Reader,
}

/// A 421: the server is closing the connection, whatever the command.
fn closing(err: &lettre::transport::smtp::Error) -> bool {
    err.status().is_some_and(|code| code.to_string() == "421")
}

fn reply_text<'a>(code: &str, lines: impl Iterator<Item = &'a str>) -> String {
    let text: Vec<&str> = lines.collect();
    format!("{code} {}", text.join(" ")).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SmtpSettings> {
        SmtpSettings::parse(text, None, Duration::from_secs(30))
    }

    #[test]
    fn urls_say_host_port_security_and_user() {
        let s = parse("smtp://localhost:1025").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("localhost", 1025, Security::Opportunistic)
        );
        let s = parse("smtp://mail.example.com:587?tls=required").unwrap();
        assert_eq!(s.security, Security::Required);
        let s = parse("smtps://bob%40x@mail.example.com").unwrap();
        assert_eq!(
            (s.port, s.security, s.user.as_deref()),
            (465, Security::Implicit, Some("bob@x"))
        );
        assert_eq!(
            parse("smtp://h?tls=none").unwrap().security,
            Security::Plain
        );
        assert!(
            parse("smtp://u:secret@h")
                .unwrap_err()
                .to_string()
                .contains("GAZETTE_SMTP_PASSWORD")
        );
        assert!(parse("http://h").is_err());
        assert!(parse("smtp://h?tls=maybe").is_err());
        assert_eq!(parse("smtp://[::1]:2525").unwrap().host, "::1");
    }
}
