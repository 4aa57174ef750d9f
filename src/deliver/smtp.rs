//! Deliver stage: SMTP through lettre's async connection, one recipient
//! per transaction, each outcome classified for the ledger.
//!
//! Plain and STARTTLS connections are opened by us with `TCP_NODELAY` and
//! handed to lettre: lettre 0.11.23 writes a message and its final `.` in
//! two writes, and without it Nagle's algorithm holds the second for the
//! peer's delayed ACK (40 ms a message). Implicit TLS (`smtps://`) uses
//! lettre's own connection.
//!
//! Round trips are what a session waits for: with a server that offers
//! PIPELINING (RFC 2920), MAIL, RCPT and DATA go in one write, and each
//! message, dot-stuffed, in another.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use lettre::Address;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use url::Url;

/// How long a dropped connection's QUIT may wait for its reply.
const QUIT_GRACE: Duration = Duration::from_secs(1);

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
    /// Whether the server takes MAIL, RCPT and DATA in one go (RFC 2920).
    pipelining: bool,
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
        let pipelining = offers_pipelining(&mut conn, &hello, settings).await?;
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
            pipelining,
            broken: false,
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
            Ok(mail) if self.pipelining => {
                let (refused, waiting) = self.envelope_pipelined(mail, to, timeout).await;
                in_data = waiting;
                refused
            }
            Ok(mail) => self.envelope(mail, to, timeout).await,
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
        if !in_data && let Some(outcome) = self.step(Data, timeout, Stage::Reader).await {
            return outcome;
        }
        let handed_over = async {
            match std::str::from_utf8(message) {
                Ok(text) => self.conn.command(Payload(text)).await,
                Err(_) => self.conn.message(message).await,
            }
        };
        let reply = tokio::time::timeout(timeout, handed_over).await;
        self.handed_over(reply).await
    }

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
        let mail = self.mail(from, to, message)?;
        Ok(Envelope(format!(
            "{mail}{}{Data}",
            Rcpt::new(to.clone(), vec![])
        )))
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
                Some(self.handed_over(reply).await)
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

    /// The outcome of a message from the reply to its data.
    async fn handed_over(
        &mut self,
        reply: Result<Result<Response, SmtpError>, tokio::time::error::Elapsed>,
    ) -> Outcome {
        match reply {
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

    /// MAIL FROM for `message` to `to`, with the parameters it needs; the
    /// outcome instead when the server cannot take it.
    fn mail(&self, from: &Address, to: &Address, message: &[u8]) -> Result<Mail, Outcome> {
        let mut options = Vec::new();
        let ascii = |address: &Address| AsRef::<str>::as_ref(address).is_ascii();
        if !ascii(from) || !ascii(to) {
            if !self
                .conn
                .server_info()
                .supports_feature(Extension::SmtpUtfEight)
            {
                return Err(Outcome::Failed(
                    "the address is not ASCII and the server does not offer SMTPUTF8".into(),
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        Ok(Mail::new(Some(from.clone()), options))
    }

    /// MAIL, then RCPT; `None` when both were accepted.
    async fn envelope(&mut self, mail: Mail, to: &Address, timeout: Duration) -> Option<Outcome> {
        // MAIL: a refusal here is about the sender or the relay, not this reader.
        if let Some(outcome) = self.step(mail, timeout, Stage::Mail).await {
            return Some(outcome);
        }
        self.step(Rcpt::new(to.clone(), vec![]), timeout, Stage::Reader)
            .await
    }

    /// MAIL, RCPT and DATA in one write, then their three replies (RFC
    /// 2920): one round trip instead of three. `(None, true)` when all
    /// were accepted and the server waits for the message.
    async fn envelope_pipelined(
        &mut self,
        mail: Mail,
        to: &Address,
        timeout: Duration,
    ) -> (Option<Outcome>, bool) {
        let group = format!("{mail}{}{Data}", Rcpt::new(to.clone(), vec![]));
        let first = tokio::time::timeout(timeout, self.conn.command(group)).await;
        self.envelope_replies(first, timeout).await
    }

    /// The replies to MAIL, RCPT and DATA written in one go, the first
    /// already read. `(None, true)` when all were accepted and the server
    /// waits for the message.
    async fn envelope_replies(
        &mut self,
        first: Result<Result<Response, SmtpError>, tokio::time::error::Elapsed>,
        timeout: Duration,
    ) -> (Option<Outcome>, bool) {
        let mut replies = Vec::with_capacity(3);
        let mut next = first;
        loop {
            // After no reply, or one that is not SMTP, the rest cannot be read.
            let goes_on = match &next {
                Ok(Ok(_)) => true,
                Ok(Err(err)) => refusal(err),
                Err(_) => false,
            };
            replies.push(next);
            if !goes_on || replies.len() == 3 {
                break;
            }
            next = tokio::time::timeout(timeout, self.conn.read_response()).await;
        }
        let waiting = replies.len() == 3 && matches!(replies[2], Ok(Ok(_)));
        let stages = [Stage::Mail, Stage::Reader, Stage::Reader];
        for (reply, stage) in replies.into_iter().zip(stages) {
            let err = match reply {
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
            if !refusal(&err) {
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
        if !refusal(&err) {
            self.abort().await;
            return Some(Outcome::NotSent(err.to_string()));
        }
        Some(self.refused(&err, stage, timeout).await)
    }

    /// What a 4xx or 5xx reply at `stage` means, after the transaction is
    /// reset (RSET), so the connection stays usable for the next reader.
    async fn refused(&mut self, err: &SmtpError, stage: Stage, timeout: Duration) -> Outcome {
        let text = err.to_string();
        if !self.broken {
            self.reset(timeout).await;
        }
        match stage {
            Stage::Mail => {
                if !self.broken {
                    self.abort().await;
                }
                Outcome::NotSent(format!("the relay refused the sender: {text}"))
            }
            Stage::Reader if err.is_transient() => Outcome::Deferred(text),
            Stage::Reader => Outcome::Failed(text),
        }
    }

    /// Drops the connection: it is not used again. lettre says QUIT first
    /// and waits for the reply, which a server in trouble may never send:
    /// that wait is bounded.
    async fn abort(&mut self) {
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

/// A message as DATA sends it, in one write: every `.` that starts a line
/// doubled (RFC 5321 §4.5.2), then the line with a lone `.` that ends it —
/// the bytes lettre's `message` writes, without its byte-at-a-time copy and
/// its second write for the end.
struct Payload<'a>(&'a str);

impl std::fmt::Display for Payload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0;
        if text.starts_with('.') {
            f.write_str(".")?;
        }
        // Lines that start with a dot, found by one substring search over
        // the message (a search per line end cost ~2% of a send's CPU).
        let mut from = 0;
        for at in memchr::memmem::find_iter(text.as_bytes(), b"\r\n.") {
            f.write_str(&text[from..at + 2])?;
            f.write_str(".")?;
            from = at + 2;
        }
        f.write_str(&text[from..])?;
        f.write_str("\r\n.\r\n")
    }
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

/// Which command a refusal answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// MAIL FROM: the sender or the relay.
    Mail,
    /// RCPT TO or DATA: this reader.
    Reader,
}

/// Whether `err` is a 4xx or 5xx refusal after which the connection goes
/// on (not a 421, not a broken connection).
fn refusal(err: &SmtpError) -> bool {
    !closing(err) && (err.is_transient() || err.is_permanent())
}

/// Whether the server offers PIPELINING (RFC 2920). lettre keeps only the
/// extensions it uses from its EHLO, so the question is asked again (an
/// EHLO resets nothing else; before any login).
async fn offers_pipelining(
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

/// A 421: the server is closing the connection, whatever the command.
fn closing(err: &SmtpError) -> bool {
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

    /// A scripted SMTP server on 127.0.0.1 that accepts everyone but bo@
    /// (550 at RCPT) and keeps each chunk it reads; offers PIPELINING when
    /// asked to.
    async fn server(pipelining: bool) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let chunks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = chunks.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let _ = stream.write_all(b"220 fake\r\n").await;
                    let mut buffer = vec![0; 65536];
                    let mut in_data = false;
                    let mut recipient = false;
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 {
                            kept.lock().unwrap().push("(closed)".to_string());
                            break;
                        }
                        let chunk = String::from_utf8_lossy(&buffer[..n]).into_owned();
                        kept.lock().unwrap().push(chunk.clone());
                        let mut replies = String::new();
                        for line in chunk.split_inclusive("\r\n") {
                            let reply = match line.get(..4).unwrap_or("") {
                                _ if in_data => {
                                    in_data = line != ".\r\n";
                                    if in_data { continue } else { "250 queued" }
                                }
                                "EHLO" if pipelining => "250-fake\r\n250 PIPELINING",
                                "MAIL" | "RSET" => {
                                    recipient = false;
                                    "250 ok"
                                }
                                "RCPT" if line.contains("<bo@") => "550 5.1.1 no such user",
                                "RCPT" => {
                                    recipient = true;
                                    "250 ok"
                                }
                                "DATA" if !recipient => "503 5.5.1 no valid recipients",
                                "DATA" => {
                                    in_data = true;
                                    "354 go on"
                                }
                                "QUIT" => "221 bye",
                                _ => "250 ok",
                            };
                            replies.push_str(reply);
                            replies.push_str("\r\n");
                        }
                        let _ = stream.write_all(replies.as_bytes()).await;
                    }
                });
            }
        });
        (port, chunks)
    }

    async fn session(port: u16) -> Session {
        let url = format!("smtp://127.0.0.1:{port}?tls=none");
        Session::open(&parse(&url).unwrap()).await.unwrap()
    }

    /// A message from news@ to ana@, sent if `granted`.
    async fn offer(session: &mut Session, granted: bool) -> Outcome {
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
        let (port, chunks) = server(true).await;
        let mut session = session(port).await;
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
        let (port, chunks) = server(false).await;
        let mut session = session(port).await;
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

    #[tokio::test]
    async fn a_train_sends_each_message_with_the_next_envelope_in_one_write() {
        let (port, chunks) = server(true).await;
        let mut session = session(port).await;
        assert!(session.pipelines());
        let from: Address = "news@example.com".parse().unwrap();
        let envelope = |session: &Session, to: &str| {
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

    #[test]
    fn a_payload_doubles_each_dot_that_starts_a_line_and_ends_with_one() {
        let shown = |text: &str| Payload(text).to_string();
        assert_eq!(shown("Hi\r\n"), "Hi\r\n\r\n.\r\n");
        assert_eq!(
            shown(".a\r\n..b\r\nc.\r\n.\r\nd\n.e"),
            "..a\r\n...b\r\nc.\r\n..\r\nd\n.e\r\n.\r\n"
        );
        assert_eq!(shown(""), "\r\n.\r\n");
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
