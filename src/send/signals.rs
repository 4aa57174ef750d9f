//! Send stage: the signals that stop a real send — SIGTERM, SIGINT and
//! SIGHUP. Once the send is armed (it holds the lock), the first signal
//! stops it gracefully: no new message is taken, the transactions under
//! way finish, the rest stays `pending`, everything is recorded and the run
//! exits 75. Before that (loading, a dry run) nothing is under way and the
//! first signal ends the process at once, as does a second signal at any
//! time: a message not handed over is then left `sending`, sent again by
//! the next run, never taken for sent. May import tokio and std.
//!
//! Signals are the process's: the state is a static, listened to by a
//! thread of its own from the start of `send`, so a signal is never
//! missed whichever runtime runs at that moment.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

/// Signals received so far.
static RECEIVED: AtomicU32 = AtomicU32::new(0);
/// The name of the first one.
static FIRST: OnceLock<&'static str> = OnceLock::new();
/// Whether a first signal stops the send gracefully (see [`arm`]).
static ARMED: AtomicBool = AtomicBool::new(false);
/// Woken by the first signal.
static STOP: Notify = Notify::const_new();

/// The exit code of a run stopped by a signal: try again later.
const STOPPED: i32 = 75;

/// Starts listening for SIGTERM, SIGINT and SIGHUP; returns once their
/// handlers are installed.
pub fn listen() -> Result<()> {
    let (ready, installed) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build();
            let listened = runtime.map(|runtime| runtime.block_on(wait_for_signals(ready.clone())));
            if let Err(err) = listened {
                let _ = ready.send(Err(err));
            }
        })
        .context("cannot start listening for signals")?;
    installed
        .recv()
        .context("cannot listen for signals")?
        .context("cannot listen for signals")
}

/// From now on the first signal stops the send gracefully.
pub fn arm() {
    ARMED.store(true, Ordering::SeqCst);
}

/// The first signal received, if any.
pub fn received() -> Option<&'static str> {
    FIRST.get().copied()
}

/// Returns once a signal was received.
pub async fn stopped() {
    loop {
        let notified = STOP.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if RECEIVED.load(Ordering::SeqCst) > 0 {
            return;
        }
        notified.await;
    }
}

/// Installs the handlers, says so on `ready`, then handles each signal.
async fn wait_for_signals(
    ready: std::sync::mpsc::Sender<std::io::Result<()>>,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let _ = ready.send(Ok(()));
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        };
        on_signal(name);
    }
}

/// What a signal does: see the module's header.
fn on_signal(name: &'static str) {
    let count = RECEIVED.fetch_add(1, Ordering::SeqCst) + 1;
    if count > 1 {
        eprintln!(
            "gazette: {name} again: stopped at once; messages on their way are sent again by the next run"
        );
        std::process::exit(STOPPED);
    }
    let _ = FIRST.set(name);
    if !ARMED.load(Ordering::SeqCst) {
        eprintln!("gazette: {name} before sending began: stopped, nothing sent");
        std::process::exit(STOPPED);
    }
    eprintln!(
        "gazette: {name}: stopping — no new messages; those under way finish, the rest stay pending for the next run (a second signal stops at once)"
    );
    STOP.notify_waiters();
}
