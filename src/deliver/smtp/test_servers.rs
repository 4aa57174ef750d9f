//! Deliver stage, SMTP, tests only: in-process SMTP servers on 127.0.0.1
//! for the unit tests — one that keeps every chunk it reads, and one that
//! answers each stage of a transaction as a [`Script`] says, in plain
//! text, after STARTTLS or with TLS from the first byte (a self-signed
//! certificate from `tests/fixtures/tls`). May import tokio, tokio-rustls
//! and the other files of [`super`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::settings::SmtpSettings;

/// The certificate the TLS servers present, for the client to trust.
pub(super) const CERT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tls/cert.pem"
));
const KEY: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tls/key.pem"
));

/// Settings for `url`, trusting [`CERT`].
pub(super) fn settings(url: &str, password: Option<&str>) -> SmtpSettings {
    let mut settings =
        SmtpSettings::parse(url, password.map(str::to_string), Duration::from_secs(5)).unwrap();
    settings.extra_root = Some(CERT.to_vec());
    settings
}

/// A server that accepts everyone but bo@ (550 at RCPT) and keeps each
/// chunk it reads; offers PIPELINING when asked to.
pub(super) async fn chunk_keeper(pipelining: bool) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let chunks = Arc::new(Mutex::new(Vec::new()));
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

/// How a scripted server protects its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tls {
    None,
    /// Offers STARTTLS.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// What a scripted server answers at each stage; any reply that starts
/// with 421 closes the connection after it, as servers do.
#[derive(Debug, Clone)]
pub(super) struct Script {
    pub pipelining: bool,
    pub tls: Tls,
    pub greeting: &'static str,
    /// The reply to EHLO when it is refused (else the extensions).
    pub ehlo_refused: Option<&'static str>,
    pub mail: &'static str,
    pub rcpt: &'static str,
    pub data: &'static str,
    /// The reply to the end of the message.
    pub end: &'static str,
    /// Where the server drops the connection during a message, if it does.
    pub drop: Option<DataDrop>,
}

/// Where a scripted server drops the connection during a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DataDrop {
    /// After the first byte of the message, the rest unread: the final
    /// `.` never reaches it.
    BeforeDot,
    /// After the final `.`, without a reply.
    AfterDot,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            pipelining: false,
            tls: Tls::None,
            greeting: "220 fake ESMTP",
            ehlo_refused: None,
            mail: "250 2.1.0 ok",
            rcpt: "250 2.1.5 ok",
            data: "354 go on",
            end: "250 2.0.0 queued",
            drop: None,
        }
    }
}

/// What a scripted server saw: the client end of each connection it
/// accepted, and each AUTH line.
#[derive(Debug, Default)]
pub(super) struct ServerLog {
    pub peers: Vec<SocketAddr>,
    pub auth: Vec<String>,
}

/// Starts a server that follows `script`; its port, and what it sees.
pub(super) async fn scripted(script: Script) -> (u16, Arc<Mutex<ServerLog>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(ServerLog::default()));
    let shared = seen.clone();
    let acceptor = acceptor();
    tokio::spawn(async move {
        while let Ok((mut stream, peer)) = listener.accept().await {
            shared.lock().unwrap().peers.push(peer);
            let (script, seen, acceptor) = (script.clone(), shared.clone(), acceptor.clone());
            tokio::spawn(async move {
                if script.tls == Tls::Implicit {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    converse(&mut tls, &script, &seen, true).await;
                    return;
                }
                if converse(&mut stream, &script, &seen, false).await == ConversationEnd::Starttls
                    && let Ok(mut tls) = acceptor.accept(stream).await
                {
                    converse(&mut tls, &script, &seen, true).await;
                }
            });
        }
    });
    (port, seen)
}

#[derive(Debug, PartialEq, Eq)]
enum ConversationEnd {
    Closed,
    Starttls,
}

/// One conversation, greeting first unless it goes on after STARTTLS.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    script: &Script,
    seen: &Mutex<ServerLog>,
    encrypted: bool,
) -> ConversationEnd {
    let upgraded = encrypted && script.tls == Tls::Starttls;
    if !upgraded {
        let _ = stream
            .write_all(format!("{}\r\n", script.greeting).as_bytes())
            .await;
        if !script.greeting.starts_with("220") {
            return ConversationEnd::Closed;
        }
    }
    let mut state = Transaction::default();
    let mut pending = Vec::new();
    let mut buffer = vec![0; 65536];
    loop {
        let n = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return ConversationEnd::Closed,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..n]);
        let mut replies = String::new();
        let mut ended = None;
        while let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = pending.drain(..end + 2).collect();
            let line = String::from_utf8_lossy(&line).into_owned();
            if state.in_data && line == ".\r\n" && script.drop == Some(DataDrop::AfterDot) {
                return ConversationEnd::Closed;
            }
            let Some(reply) = state.answer(&line, script, seen, encrypted) else {
                continue;
            };
            replies.push_str(&reply);
            replies.push_str("\r\n");
            if reply.starts_with("421") || reply.starts_with("221") {
                ended = Some(ConversationEnd::Closed);
            } else if line.to_ascii_uppercase().starts_with("STARTTLS") {
                ended = Some(ConversationEnd::Starttls);
            }
            if ended.is_some() {
                break;
            }
        }
        let _ = stream.write_all(replies.as_bytes()).await;
        if state.in_data && script.drop == Some(DataDrop::BeforeDot) {
            // One byte of the message, then closed with the rest unread.
            let _ = stream.read(&mut [0; 1]).await;
            return ConversationEnd::Closed;
        }
        if let Some(ended) = ended {
            if ended == ConversationEnd::Closed {
                let _ = stream.shutdown().await;
            }
            return ended;
        }
    }
}

/// Where a conversation stands.
#[derive(Debug, Default)]
struct Transaction {
    in_data: bool,
    sender: bool,
    recipient: bool,
}

impl Transaction {
    /// The reply to `line`; `None` inside a message.
    fn answer(
        &mut self,
        line: &str,
        script: &Script,
        seen: &Mutex<ServerLog>,
        encrypted: bool,
    ) -> Option<String> {
        if self.in_data {
            if line != ".\r\n" {
                return None;
            }
            *self = Transaction::default();
            return Some(script.end.into());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => return Some(ehlo(script, encrypted)),
            "STAR" => "220 2.0.0 go ahead",
            "AUTH" => {
                seen.lock().unwrap().auth.push(line.trim_end().to_string());
                "235 2.7.0 ok"
            }
            "MAIL" => {
                self.sender = script.mail.starts_with('2');
                script.mail
            }
            "RCPT" if !self.sender => "503 5.5.1 MAIL first",
            "RCPT" => {
                self.recipient = script.rcpt.starts_with('2');
                script.rcpt
            }
            "DATA" if !self.recipient => "503 5.5.1 no valid recipients",
            "DATA" => {
                self.in_data = script.data.starts_with("354");
                script.data
            }
            "RSET" => {
                *self = Transaction::default();
                "250 2.0.0 ok"
            }
            "QUIT" => "221 2.0.0 bye",
            _ => "250 2.0.0 ok",
        };
        Some(reply.into())
    }
}

/// The reply to EHLO: the script's refusal, or the extensions.
fn ehlo(script: &Script, encrypted: bool) -> String {
    if let Some(refused) = script.ehlo_refused {
        return refused.into();
    }
    let mut lines = vec!["fake", "8BITMIME", "AUTH PLAIN LOGIN"];
    if script.pipelining {
        lines.push("PIPELINING");
    }
    if script.tls == Tls::Starttls && !encrypted {
        lines.push("STARTTLS");
    }
    let last = lines.len() - 1;
    let shown: Vec<String> = (lines.iter().enumerate())
        .map(|(i, line)| format!("250{}{line}", if i == last { ' ' } else { '-' }))
        .collect();
    shown.join("\r\n")
}

/// TLS with the fixture's certificate.
fn acceptor() -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = CertificateDer::from_pem_slice(CERT).unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// A session with the plain-text server on `port`.
pub(super) async fn open_plain(port: u16) -> super::SmtpSession {
    let url = format!("smtp://127.0.0.1:{port}?tls=none");
    super::SmtpSession::open(&settings(&url, None))
        .await
        .unwrap()
}
