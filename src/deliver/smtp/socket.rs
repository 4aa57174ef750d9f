//! Deliver stage, SMTP: the TCP socket under every session, opened by
//! gazette with `TCP_NODELAY` whatever the security, watched for the
//! relay refusing the bytes written to it ([`Watched`]), and the TLS of
//! `smtps://` begun on it. May import tokio, lettre, futures-io and
//! [`super::settings`].
//!
//! Why the watch: lettre writes a message and reads its reply in one call,
//! and says only that the connection broke. Whether the relay could have
//! taken the message depends on where: a write that failed, or a reset
//! (the relay closed with our bytes unread), means the end of what was
//! written never reached it. The watch sits under any TLS and costs a
//! branch per read or write; it is set only on the failing path.
//!
//! Why `TCP_NODELAY`: lettre writes a command and what follows it in
//! separate writes (a message and its final `.` when it sends one itself),
//! and without it Nagle's algorithm holds the second write for the peer's
//! delayed ACK — 40 ms a message. lettre's own `connect_tokio1` does not
//! set it, so it is not used even for implicit TLS: the socket is opened
//! here and lettre's TLS handshake (the same roots and checks) runs on it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result};
#[allow(deprecated)] // The only way to run lettre's TLS over a socket of ours.
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{AsyncTokioStream, TlsParameters};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::settings::SmtpSettings;

/// Whether the relay refused bytes written to a [`Watched`] socket: a
/// write failed, or a read found the connection reset.
#[derive(Debug, Default)]
pub(super) struct Refusal(AtomicBool);

impl Refusal {
    /// Whether the relay refused bytes written so far.
    pub(super) fn seen(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn note<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(_)) = &result {
            self.0.store(true, Ordering::Relaxed);
        }
        result
    }
}

/// The relay's socket, noting in a [`Refusal`] shared with the session
/// when bytes written to it were refused.
#[derive(Debug)]
pub(super) struct Watched {
    stream: TcpStream,
    refusal: Arc<Refusal>,
}

impl Watched {
    /// `stream`, watched; and the refusal the session reads.
    pub(super) fn new(stream: TcpStream) -> (Watched, Arc<Refusal>) {
        let refusal = Arc::new(Refusal::default());
        let watched = Watched {
            stream,
            refusal: refusal.clone(),
        };
        (watched, refusal)
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        // A reset: the relay closed with bytes of ours unread (an orderly
        // close after reading everything is an end of file instead).
        if let Poll::Ready(Err(err)) = &read
            && err.kind() == io::ErrorKind::ConnectionReset
        {
            self.refusal.0.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.refusal.note(written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        self.refusal.note(flushed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Watched {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.peer_addr()
    }
}

/// A TCP connection to the relay, with `TCP_NODELAY` set.
pub(super) async fn connect(settings: &SmtpSettings) -> Result<TcpStream> {
    let stream = tokio::time::timeout(
        settings.timeout,
        TcpStream::connect((settings.host.as_str(), settings.port)),
    )
    .await
    .with_context(|| format!("connecting to {} timed out", settings.shown()))?
    .with_context(|| format!("cannot connect to {}", settings.shown()))?;
    stream.set_nodelay(true)?;
    #[cfg(test)]
    opened::record(&stream);
    Ok(stream)
}

/// `stream` with TLS begun on it from the first byte (`smtps://`), by
/// lettre's handshake, as a stream lettre's connection takes.
#[allow(deprecated)]
pub(super) async fn implicit_tls(
    stream: Watched,
    tls: TlsParameters,
) -> Result<Box<dyn AsyncTokioStream>, lettre::transport::smtp::Error> {
    let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(stream));
    stream.upgrade_tls(tls).await?;
    Ok(Box::new(LettreTlsStream(stream)))
}

/// lettre's TLS stream, seen through tokio's I/O traits (lettre's stream
/// speaks futures-io; its connection takes tokio streams).
#[allow(deprecated)]
#[derive(Debug)]
struct LettreTlsStream(AsyncNetworkStream);

impl AsyncRead for LettreTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match futures_io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for LettreTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        futures_io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        futures_io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        futures_io::AsyncWrite::poll_close(Pin::new(&mut self.0), cx)
    }
}

impl AsyncTokioStream for LettreTlsStream {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.0.peer_addr()
    }
}

/// Every socket [`connect`] opened in this process, with whether the
/// kernel had `TCP_NODELAY` set on it: the tests match them against the
/// connections their servers accepted.
#[cfg(test)]
pub(super) mod opened {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    static OPENED: Mutex<Vec<(SocketAddr, bool)>> = Mutex::new(Vec::new());

    pub(in super::super) fn record(stream: &tokio::net::TcpStream) {
        if let (Ok(local), Ok(nodelay)) = (stream.local_addr(), stream.nodelay()) {
            OPENED.lock().unwrap().push((local, nodelay));
        }
    }

    /// Whether the socket bound to `local` had `TCP_NODELAY`; `None` when
    /// gazette did not open it.
    pub(in super::super) fn nodelay(local: SocketAddr) -> Option<bool> {
        let opened = OPENED.lock().unwrap();
        opened
            .iter()
            .rev()
            .find(|(at, _)| *at == local)
            .map(|&(_, nodelay)| nodelay)
    }
}

#[cfg(test)]
mod tests {
    use super::super::session::SmtpSession;
    use super::super::test_servers::{Script, Tls, scripted, settings};
    use super::opened;

    /// Opens a session to a server protected by `tls`, logs in and sends
    /// one message; every connection the server accepted must have come
    /// from a socket gazette opened with `TCP_NODELAY`.
    async fn every_socket_has_nodelay(tls: Tls, url: &str) {
        let script = Script {
            tls,
            ..Script::default()
        };
        let (port, seen) = scripted(script).await;
        let url = url.replace("PORT", &port.to_string());
        let mut session = SmtpSession::open(&settings(&url, Some("secret")))
            .await
            .unwrap();
        let from = "news@example.com".parse().unwrap();
        let to = "ana@example.com".parse().unwrap();
        let timeout = std::time::Duration::from_secs(5);
        let sent = session.send(&from, &to, b"Hi.\r\n", timeout, async { true });
        assert!(matches!(sent.await, super::super::Outcome::Sent(_)));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.peers.len(), 1, "{tls:?}");
        for peer in &seen.peers {
            assert_eq!(opened::nodelay(*peer), Some(true), "{tls:?} {peer}");
        }
        // Logged in (so the connection counted as encrypted) as the URL's
        // user, a `+` kept: AUTH PLAIN of "\0apikey+news\0secret".
        assert_eq!(
            seen.auth,
            ["AUTH PLAIN AGFwaWtleStuZXdzAHNlY3JldA=="],
            "{tls:?}"
        );
    }

    #[tokio::test]
    async fn a_plain_socket_has_nodelay() {
        every_socket_has_nodelay(Tls::None, "smtp://apikey+news@127.0.0.1:PORT?tls=none").await;
    }

    #[tokio::test]
    async fn a_starttls_socket_has_nodelay() {
        every_socket_has_nodelay(
            Tls::Starttls,
            "smtp://apikey+news@127.0.0.1:PORT?tls=required",
        )
        .await;
    }

    #[tokio::test]
    async fn an_implicit_tls_socket_has_nodelay() {
        every_socket_has_nodelay(Tls::Implicit, "smtps://apikey+news@127.0.0.1:PORT").await;
    }
}
