//! Sending over SMTP to a real server process (mailin-embedded, in this
//! test process): the ledger, idempotent re-runs, faults and the lock.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use mailin_embedded::response::{self, Response};
use mailin_embedded::{Handler, Server};

use crate::support::Project;

pub(crate) const SECRET: (&str, &str) = ("GAZETTE_SECRET", "the test suite's unsubscribe key");

/// One message as the server got it.
#[derive(Debug, Clone, Default)]
struct Received {
    to: Vec<String>,
    data: Vec<u8>,
}

/// An SMTP server that keeps what it gets; RCPT to an address containing
/// `defer` gets 451, one containing `bounce` gets 550, one containing
/// `denied` gets 554 5.7.1, one containing `greylist` gets 451 the first
/// time only.
#[derive(Clone, Default)]
pub(crate) struct Catcher {
    received: Arc<Mutex<Vec<Received>>>,
    pub(crate) transactions: Arc<Mutex<u32>>,
    /// Recipients refused once already (for `greylist` addresses).
    greylisted: Arc<Mutex<std::collections::HashSet<String>>>,
    /// How long the reply to each message waits, if it does.
    slow: Arc<Mutex<Option<std::time::Duration>>>,
    current: Received,
}

impl Catcher {
    /// The recipients of the messages received, in order.
    pub(crate) fn recipients(&self) -> Vec<String> {
        let received = self.received.lock().unwrap();
        received.iter().flat_map(|r| r.to.clone()).collect()
    }
}

impl Handler for Catcher {
    fn mail(&mut self, _ip: std::net::IpAddr, _domain: &str, _from: &str) -> Response {
        *self.transactions.lock().unwrap() += 1;
        self.current = Received::default();
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if to.contains("greylist") && self.greylisted.lock().unwrap().insert(to.to_string()) {
            return Response::custom(451, "greylisted, try again in a moment".into());
        }
        if to.contains("defer") {
            return Response::custom(451, "try again later".into());
        }
        if to.contains("bounce") {
            return response::NO_MAILBOX;
        }
        if to.contains("denied") {
            return Response::custom(554, "5.7.1 Relay access denied".into());
        }
        self.current.to.push(to.to_string());
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let slow = *self.slow.lock().unwrap();
        if let Some(wait) = slow {
            std::thread::sleep(wait);
        }
        self.received.lock().unwrap().push(self.current.clone());
        response::OK
    }
}

/// A running catcher and its port.
pub(crate) fn catcher() -> (Catcher, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let catcher = Catcher::default();
    let mut server = Server::new(catcher.clone());
    server.with_tcp_listener(listener).with_num_threads(8);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (catcher, port)
}

/// The sample project with `delivery:` settings added.
fn sample_with(delivery: &str) -> Project {
    let project = Project::sample();
    let config = project.read("gazette.yaml");
    project.file("gazette.yaml", format!("{config}\ndelivery:\n{delivery}"))
}

/// `gazette send --smtp URL` started in the project, its output dropped.
fn spawn_send(project: &Project, url: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_gazette"))
        .args(["send", "--smtp", url])
        .current_dir(project.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GAZETTE_NOW", crate::support::NOW)
        .env(SECRET.0, SECRET.1)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn send(project: &Project, port: u16) -> crate::support::Run {
    let url = format!("smtp://127.0.0.1:{port}");
    project.run_env(&["send", "--smtp", &url], &[SECRET])
}

#[test]
fn every_reader_gets_one_message_and_a_second_run_sends_nothing() {
    let (catcher, port) = catcher();
    let project = Project::sample();
    let run = send(&project, port).expect(0);
    insta::assert_snapshot!(run.stdout, @"
    issue 2026-06-01: 5 posts
    segment                  sent deferred   failed suppressed  skipped
    data-ai                     4        0        0          1        0
    default                     3        0        0          0        0
    leaders                     1        0        0          0        0
    marketing                   3        0        0          1        0
    ");
    let received = catcher.received.lock().unwrap().clone();
    assert_eq!(received.len(), 11, "{}", run.stdout);
    let mut recipients: Vec<String> = received.iter().flat_map(|r| r.to.clone()).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 11);
    assert!(
        !recipients
            .iter()
            .any(|r| r.contains("former") || r.contains("old-address"))
    );
    for message in &received {
        let mail = mailparse::parse_mail(&message.data).unwrap();
        use mailparse::MailHeaderMap;
        assert_eq!(mail.headers.get_all_values("List-Unsubscribe").len(), 1);
        assert_eq!(mail.subparts.len(), 2);
    }
    // Cron fires again: nothing new, no SMTP transaction.
    let before = *catcher.transactions.lock().unwrap();
    let again = send(&project, port).expect(0);
    assert!(
        again.stdout.contains("nothing new to send"),
        "{}",
        again.stdout
    );
    assert_eq!(*catcher.transactions.lock().unwrap(), before);
    // A dry run now shows what a real run would do: nothing.
    let dry = project.run_env(&["send", "--dry-run"], &[SECRET]).expect(0);
    assert!(dry.stdout.contains("nothing new to send"), "{}", dry.stdout);
    let status = project.run(&["status", "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status[0]["issue"], "2026-06-01");
    assert_eq!(status[0]["deliveries"]["sent"], 11);
    assert!(status[0]["completed"].is_string());
}

#[test]
fn a_4xx_is_deferred_and_a_5xx_bounces_into_the_suppression_list() {
    let (catcher, port) = catcher();
    let project = sample_with("  retries_in_run: 0\n").file(
        "subscribers.csv",
        "email,name\nok@example.com,Ok\ndefer@example.com,Later\nbounce@example.com,Gone\n",
    );
    let run = send(&project, port).expect(1);
    assert!(run.stdout.contains("default"), "{}", run.stdout);
    assert_eq!(catcher.received.lock().unwrap().len(), 1);
    // Each reader not delivered is named in the cron log, with the reply.
    for named in [
        ".gazette/state.db: warning: defer@example.com: deferred, tried again from \
         2026-06-01T12:15:00+00:00: 451 try again later",
        ".gazette/state.db: warning: bounce@example.com: failed: 550 Mailbox unavailable",
    ] {
        assert!(run.stderr.contains(named), "{named}: {}", run.stderr);
    }
    assert!(!run.stderr.contains("ok@example.com"), "{}", run.stderr);
    // And by `status --issue`, with state, attempts, next try and reply.
    let listed = project
        .run(&["status", "--issue", "2026-06-01", "--format", "json"])
        .expect(0);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["address"], "defer@example.com");
    assert_eq!(
        (listed[0]["status"].as_str(), listed[0]["attempts"].as_u64()),
        (Some("deferred"), Some(1))
    );
    assert!(listed[0]["next_attempt"].is_string(), "{listed:?}");
    assert_eq!(listed[1]["status"], "failed");
    assert!(
        listed[1]["last_reply"].as_str().unwrap().starts_with("550"),
        "{listed:?}"
    );
    let text = project.run(&["status", "--issue", "2026-06-01"]).expect(0);
    assert!(
        text.stdout.contains("bounce@example.com"),
        "{}",
        text.stdout
    );
    project.run(&["status", "--issue", "2026-01-01"]).expect(1);
    let status = project.run(&["status", "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let counts = &status[0]["deliveries"];
    assert_eq!(
        (
            counts["sent"].as_u64(),
            counts["deferred"].as_u64(),
            counts["failed"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert!(
        status[0]["completed"].is_null(),
        "a deferred message keeps the issue open"
    );
    // The bounce is suppressed from now on.
    let explain = project
        .run(&["-q", "explain", "bounce@example.com"])
        .expect(0);
    assert!(
        explain.stdout.contains("status: bounced"),
        "{}",
        explain.stdout
    );
    // Run again at once: the deferred one is not due yet, nothing is sent.
    let before = *catcher.transactions.lock().unwrap();
    send(&project, port).expect(0);
    assert_eq!(*catcher.transactions.lock().unwrap(), before);
}

/// The deliveries of the one issue in `project`, by status.
fn deliveries(project: &Project) -> serde_json::Value {
    let status = project.run(&["status", "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    status[0]["deliveries"].clone()
}

#[test]
fn a_relay_refusal_stops_the_run_suppresses_nobody_and_is_printed() {
    let (catcher, port) = catcher();
    let project = sample_with("  concurrency: 1\n").file(
        "subscribers.csv",
        "email,name\nok@example.com,Ok\ndenied@example.com,Denied\nlater@example.com,Later\n",
    );
    let run = send(&project, port).expect(1);
    assert!(
        run.stderr.contains(
            "the relay refused the message to denied@example.com: 554 5.7.1 Relay access denied"
        ) && run.stderr.contains("nobody was suppressed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("stopped: the relay refused"),
        "{}",
        run.stdout
    );
    assert_eq!(catcher.recipients(), ["ok@example.com"]);
    let counts = deliveries(&project);
    assert_eq!(
        (&counts["sent"], &counts["pending"], &counts["failed"]),
        (&1.into(), &2.into(), &0.into())
    );
    let explain = project
        .run(&["-q", "explain", "denied@example.com"])
        .expect(0);
    assert!(
        !explain.stdout.contains("status: bounced"),
        "{}",
        explain.stdout
    );
}

#[test]
fn a_streak_of_refusals_alike_is_a_relay_problem_and_bounces_nobody() {
    let (server, port) = catcher();
    let project = sample_with("  concurrency: 1\n  refusal_streak: 3\n").file(
        "subscribers.csv",
        "email,name\nbounce1@example.com,A\nbounce2@example.com,B\nbounce3@example.com,C\nok@example.com,Ok\n",
    );
    let run = send(&project, port).expect(1);
    assert!(
        run.stderr
            .contains("3 readers in a row refused alike (550)"),
        "{}",
        run.stderr
    );
    assert!(server.recipients().is_empty());
    let counts = deliveries(&project);
    assert_eq!(
        (&counts["pending"], &counts["failed"]),
        (&4.into(), &0.into())
    );
    for reader in ["bounce1@example.com", "bounce3@example.com"] {
        let explain = project.run(&["-q", "explain", reader]).expect(0);
        assert!(
            !explain.stdout.contains("status: bounced"),
            "{}",
            explain.stdout
        );
    }
    // Two alike, then a message taken: the two stand.
    let (_, port) = catcher();
    let project = sample_with("  concurrency: 1\n  refusal_streak: 3\n").file(
        "subscribers.csv",
        "email,name\nbounce1@example.com,A\nbounce2@example.com,B\nok@example.com,Ok\n",
    );
    send(&project, port).expect(1);
    let counts = deliveries(&project);
    assert_eq!((&counts["sent"], &counts["failed"]), (&1.into(), &2.into()));
    let explain = project
        .run(&["-q", "explain", "bounce2@example.com"])
        .expect(0);
    assert!(
        explain.stdout.contains("status: bounced"),
        "{}",
        explain.stdout
    );
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_relay_leaves_everything_pending_and_exits_75() {
    let project = Project::sample();
    send(&project, closed_port()).expect(75);
    let status = project.run(&["status", "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status[0]["deliveries"]["sent"], 0);
    assert_eq!(status[0]["deliveries"]["pending"], 11);
    // The relay comes back: the same issue is finished.
    let (catcher, port) = catcher();
    send(&project, port).expect(0);
    assert_eq!(catcher.received.lock().unwrap().len(), 11);
}

#[test]
fn an_issue_frozen_before_the_ledger_kept_its_custom_columns_is_finished() {
    let project = Project::sample();
    send(&project, closed_port()).expect(75);
    // As a ledger of an earlier gazette has it: no custom columns recorded.
    let ledger = rusqlite::Connection::open(project.path().join(".gazette/state.db")).unwrap();
    ledger
        .execute("UPDATE issues SET custom_columns = NULL", [])
        .unwrap();
    drop(ledger);
    let (catcher, port) = catcher();
    send(&project, port).expect(0);
    assert_eq!(catcher.received.lock().unwrap().len(), 11);
}

#[test]
fn a_run_stopped_while_freezing_readers_is_carried_on_by_the_next() {
    let project = Project::sample();
    let (catcher, port) = catcher();
    send(&project, port).expect(0);
    let first: Vec<String> = catcher.recipients();
    assert_eq!(first.len(), 11);
    // As a run killed while freezing leaves it: some readers frozen (and
    // sent), the others not yet, the issue neither frozen nor completed.
    let ledger = rusqlite::Connection::open(project.path().join(".gazette/state.db")).unwrap();
    let deleted = ledger
        .execute(
            "DELETE FROM deliveries WHERE rowid > (SELECT min(rowid) + 3 FROM deliveries)",
            [],
        )
        .unwrap();
    assert_eq!(deleted, 7);
    let kept: std::collections::BTreeSet<String> = ledger
        .prepare("SELECT address FROM deliveries")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ledger
        .execute("UPDATE issues SET frozen = NULL, completed = NULL", [])
        .unwrap();
    drop(ledger);
    catcher.received.lock().unwrap().clear();
    send(&project, port).expect(0);
    // The seven not frozen get their message; the four sent, none again.
    let again: std::collections::BTreeSet<String> = catcher.recipients().into_iter().collect();
    let rest: std::collections::BTreeSet<String> =
        first.into_iter().filter(|to| !kept.contains(to)).collect();
    assert_eq!((again.len(), again), (7, rest));
    let status = project.run(&["status", "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let issue = status.as_array().unwrap().first().unwrap();
    assert_eq!(issue["deliveries"]["sent"], 11);
    assert!(issue["completed"].is_string(), "{issue}");
    // Nothing new now.
    catcher.received.lock().unwrap().clear();
    send(&project, port).expect(0);
    assert!(catcher.recipients().is_empty());
}

#[test]
fn a_second_send_while_one_runs_exits_75() {
    let project = Project::sample();
    std::fs::create_dir_all(project.path().join(".gazette")).unwrap();
    let lock = std::fs::File::create(project.path().join(".gazette/lock")).unwrap();
    lock.try_lock().unwrap();
    let (_catcher, port) = catcher();
    let run = send(&project, port).expect(75);
    assert!(
        run.stderr.contains("another send is in progress"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_message_deferred_past_its_age_fails_so_the_next_issue_can_go_out() {
    let (_catcher, port) = catcher();
    let project = sample_with("  retries_in_run: 0\n").file(
        "subscribers.csv",
        "email,name\nok@example.com,Ok\ndefer@example.com,Later\n",
    );
    send(&project, port).expect(0);
    let url = format!("smtp://127.0.0.1:{port}");
    let later = project
        .run_env(
            &["send", "--smtp", &url],
            &[SECRET, ("GAZETTE_NOW", "2026-06-05T12:00:00Z")],
        )
        .expect(1);
    assert!(
        later.stderr.contains(
            "1 undelivered message(s) of issue 2026-06-01 (deferred, or not taken by the relay) are older than delivery.max_age_hours"
        ),
        "{}",
        later.stderr
    );
    let status = project.run(&["status", "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let first = status.as_array().unwrap().last().unwrap();
    assert_eq!(first["deliveries"]["failed"], 1);
    assert!(first["completed"].is_string());
}

#[test]
fn a_greylisted_reader_is_tried_again_within_the_run() {
    let (catcher, port) = catcher();
    let project = sample_with("  retry_in_run_seconds: 1\n").file(
        "subscribers.csv",
        "email,name\nok@example.com,Ok\ngreylist@example.com,Grey\n",
    );
    let run = send(&project, port).expect(0);
    assert!(
        run.stdout
            .contains("default                     2        0"),
        "{}",
        run.stdout
    );
    let received = catcher.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    let status = project.run(&["status", "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status[0]["deliveries"]["sent"], 2);
    assert!(status[0]["completed"].is_string());
}

/// A server that asks for a login and refuses every one.
#[derive(Clone, Default)]
struct Gatekeeper;

impl Handler for Gatekeeper {
    fn auth_plain(
        &mut self,
        _authorization_id: &str,
        _authentication_id: &str,
        _password: &str,
    ) -> Response {
        response::INVALID_CREDENTIALS
    }
}

#[test]
fn a_refused_login_is_a_configuration_error_not_an_outage() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = Server::new(Gatekeeper);
    server
        .with_tcp_listener(listener)
        .with_auth(mailin_embedded::AuthMechanism::Plain);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    let project = Project::sample();
    let url = format!("smtp://bob@127.0.0.1:{port}?tls=none");
    let run = project
        .run_env(
            &["send", "--smtp", &url],
            &[SECRET, ("GAZETTE_SMTP_PASSWORD", "wrong-password")],
        )
        .expect(1);
    assert!(!run.stderr.contains("wrong-password"), "{}", run.stderr);
    assert!(
        run.stderr.contains("the relay refused the login"),
        "{}",
        run.stderr
    );
    let status = project.run(&["status", "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status[0]["deliveries"]["pending"], 11);
}

#[test]
fn three_shards_on_three_hosts_mail_everyone_once_with_the_same_digests() {
    let (sharded_catcher, port) = catcher();
    let url = format!("smtp://127.0.0.1:{port}");
    let mut per_shard = Vec::new();
    for k in 1..=3 {
        // Each host has its own copy of the project and its own state.
        let host = Project::sample();
        let shard = format!("{k}/3");
        let before = sharded_catcher.received.lock().unwrap().len();
        let run = host
            .run_env(&["send", "--smtp", &url, "--shard", &shard], &[SECRET])
            .expect(0);
        assert!(
            run.stdout
                .starts_with(&format!("issue 2026-06-01: 5 posts, shard {k}/3\n")),
            "{}",
            run.stdout
        );
        per_shard.push(sharded_catcher.received.lock().unwrap().len() - before);
        // The host's state belongs to its shard now.
        let other = host
            .run_env(&["send", "--smtp", &url, "--shard", "1/2"], &[SECRET])
            .expect(2);
        assert!(
            other.stderr.contains(&format!("sends shard {k}/3")),
            "{}",
            other.stderr
        );
        host.run_env(&["send", "--smtp", &url], &[SECRET]).expect(2);
    }
    assert!(per_shard.iter().all(|n| *n < 11), "{per_shard:?}");
    let received = sharded_catcher.received.lock().unwrap().clone();
    let mut recipients: Vec<String> = received.iter().flat_map(|r| r.to.clone()).collect();
    recipients.sort();
    let all = recipients.len();
    recipients.dedup();
    assert_eq!((all, recipients.len()), (11, 11), "{recipients:?}");
    // The same message as an unsharded host would send (Message-ID included).
    let (whole, port) = catcher();
    send(&Project::sample(), port).expect(0);
    let id = |data: &[u8]| {
        let mail = mailparse::parse_mail(data).unwrap();
        use mailparse::MailHeaderMap;
        let to = mail.headers.get_first_value("To").unwrap();
        (
            to,
            mail.headers.get_first_value("Message-ID").unwrap(),
            mail.subparts[0].get_body().unwrap(),
        )
    };
    let mut sharded: Vec<_> = received.iter().map(|r| id(&r.data)).collect();
    let mut unsharded: Vec<_> = whole
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|r| id(&r.data))
        .collect();
    sharded.sort();
    unsharded.sort();
    assert_eq!(sharded, unsharded);
}

#[test]
fn an_issue_begun_for_everyone_is_finished_before_the_directory_shards() {
    let project = Project::sample();
    send(&project, closed_port()).expect(75);
    let url = format!("smtp://127.0.0.1:{}", closed_port());
    let run = project
        .run_env(&["send", "--smtp", &url, "--shard", "1/2"], &[SECRET])
        .expect(2);
    assert!(
        run.stderr
            .contains("was started without --shard and is not finished"),
        "{}",
        run.stderr
    );
    assert!(!project.exists(".gazette/shard"));
}

/// A resumed, half-frozen issue with more than a page (1,000) of readers
/// still due: the walk of those due stops where the freeze beside it
/// starts, so nobody is read, and mailed, twice.
#[test]
fn a_resumed_half_frozen_issue_mails_nobody_twice() {
    let mut csv = String::from("email,name,segment,interests,status\n");
    for i in 0..1500 {
        csv.push_str(&format!("reader{i:04}@example.com,R {i},,ai,active\n"));
    }
    let project = sample_with("  concurrency: 4\n").file("subscribers.csv", csv);
    let (catcher, port) = catcher();
    send(&project, port).expect(0);
    assert_eq!(catcher.recipients().len(), 1500);
    let ledger = rusqlite::Connection::open(project.path().join(".gazette/state.db")).unwrap();
    ledger
        .execute(
            "DELETE FROM deliveries WHERE rowid > (SELECT min(rowid) + 1099 FROM deliveries)",
            [],
        )
        .unwrap();
    ledger
        .execute(
            "UPDATE deliveries SET status = 'pending', attempts = 0, last_reply = NULL",
            [],
        )
        .unwrap();
    ledger
        .execute("UPDATE issues SET frozen = NULL, completed = NULL", [])
        .unwrap();
    drop(ledger);
    catcher.received.lock().unwrap().clear();
    let run = send(&project, port);
    let mut got = catcher.recipients();
    let n = got.len();
    got.sort();
    got.dedup();
    assert_eq!((run.code, n, got.len()), (0, 1500, 1500));
}

/// The ledger's writer fails while the freezer waits for a chunk to be
/// written: the run ends (with the error), it does not hang.
#[test]
fn a_writer_failing_while_readers_are_frozen_ends_the_run() {
    let project = Project::sample();
    let (_catcher, port) = catcher();
    // Creates the ledger with its schema.
    project
        .run_env(&["unsubscribe", "nobody@example.org"], &[SECRET])
        .expect(0);
    let ledger = rusqlite::Connection::open(project.path().join(".gazette/state.db")).unwrap();
    ledger
        .execute_batch(
            "CREATE TRIGGER disk_full BEFORE INSERT ON deliveries
             WHEN NEW.address = 'noah@example.com'
             BEGIN SELECT RAISE(ABORT, 'simulated disk full'); END;",
        )
        .unwrap();
    drop(ledger);
    let url = format!("smtp://127.0.0.1:{port}");
    let mut child = spawn_send(&project, &url);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let status = status.expect("gazette send still running after 20 s (hung)");
    assert!(!status.success(), "{status:?}");
}

/// `gazette status --format json`, parsed.
fn status(project: &Project) -> serde_json::Value {
    let status = project.run(&["status", "--format", "json"]).expect(0);
    serde_json::from_str(&status.stdout).unwrap()
}

#[test]
fn a_missing_or_empty_subscribers_file_makes_no_issue_and_the_fixed_file_mails_everyone() {
    let (catcher, port) = catcher();
    let project = Project::sample();
    let sample = project.read("subscribers.csv");
    std::fs::remove_file(project.path().join("subscribers.csv")).unwrap();
    let missing = send(&project, port).expect(1);
    assert!(
        missing.stderr.contains("no reader to mail") && missing.stderr.contains("cannot read"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stdout.contains("no issue made"),
        "{}",
        missing.stdout
    );
    let header_only = project.file("subscribers.csv", "email,name\n");
    let empty = send(&header_only, port).expect(1);
    assert!(
        empty.stderr.contains("no reader to mail"),
        "{}",
        empty.stderr
    );
    assert_eq!(
        status(&header_only),
        serde_json::json!([]),
        "no issue recorded"
    );
    // Not even --allow-shrink makes an issue for nobody: its posts would
    // count as sent.
    let url = format!("smtp://127.0.0.1:{port}");
    let forced = header_only
        .run_env(&["send", "--smtp", &url, "--allow-shrink"], &[SECRET])
        .expect(1);
    assert!(
        forced.stderr.contains("no reader to mail") && !forced.stderr.contains("--allow-shrink"),
        "{}",
        forced.stderr
    );
    assert_eq!(status(&header_only), serde_json::json!([]));
    assert!(catcher.received.lock().unwrap().is_empty());
    // The file is fixed before the next cron run: the issue goes to everyone.
    let fixed = header_only.file("subscribers.csv", sample);
    send(&fixed, port).expect(0);
    assert_eq!(catcher.received.lock().unwrap().len(), 11);
}

#[test]
fn a_list_that_lost_more_than_max_shrink_needs_allow_shrink() {
    let (catcher, port) = catcher();
    let project = Project::sample();
    send(&project, port).expect(0);
    assert_eq!(catcher.received.lock().unwrap().len(), 11);
    // A week later there is a new post, and the file lost 8 of 11 readers.
    let later = ("GAZETTE_NOW", "2026-06-08T12:00:00Z");
    let url = format!("smtp://127.0.0.1:{port}");
    let project = project
        .file(
            "content/a-new-week.md",
            "---\ntitle: A new week\ndate: 2026-06-05\ntags: [ai]\n---\nNew things.\n",
        )
        .file(
            "subscribers.csv",
            "email,name\nada@example.com,Ada\neva@example.com,Eva\nsam@example.com,Sam\n",
        );
    let shrunk = project
        .run_env(&["send", "--smtp", &url], &[SECRET, later])
        .expect(1);
    assert!(
        shrunk
            .stderr
            .contains("3 mailable reader(s), 11 in issue 2026-06-01: 8 fewer"),
        "{}",
        shrunk.stderr
    );
    assert_eq!(
        status(&project).as_array().unwrap().len(),
        1,
        "no new issue"
    );
    assert_eq!(catcher.received.lock().unwrap().len(), 11);
    // The operator confirms: the three left get the issue.
    project
        .run_env(
            &["send", "--smtp", &url, "--allow-shrink"],
            &[SECRET, later],
        )
        .expect(0);
    assert_eq!(catcher.received.lock().unwrap().len(), 14);
    assert_eq!(status(&project).as_array().unwrap().len(), 2);
}

#[test]
fn a_resumed_issue_waits_for_a_missing_file_instead_of_skipping_its_readers() {
    let (_catcher, port) = catcher();
    let project = sample_with("  retries_in_run: 0\n").file(
        "subscribers.csv",
        "email,name\nok@example.com,Ok\ndefer@example.com,Later\n",
    );
    send(&project, port).expect(0);
    let deferred = |project: &Project| status(project)[0]["deliveries"].clone();
    assert_eq!(deferred(&project)["deferred"], 1);
    std::fs::remove_file(project.path().join("subscribers.csv")).unwrap();
    let run = send(&project, port).expect(1);
    assert!(
        run.stderr
            .contains("was not resumed; its readers stay pending"),
        "{}",
        run.stderr
    );
    let counts = deferred(&project);
    assert_eq!(
        (counts["deferred"].as_u64(), counts["suppressed"].as_u64()),
        (Some(1), Some(0)),
        "{counts}"
    );
    assert!(status(&project)[0]["completed"].is_null());
}

#[test]
fn an_emptied_ledger_stops_the_send_instead_of_mailing_the_issue_again() {
    let (catcher, port) = catcher();
    let project = Project::sample();
    send(&project, port).expect(0);
    assert_eq!(catcher.received.lock().unwrap().len(), 11);
    // A disk-full or a careless `> state.db` leaves the file empty.
    std::fs::write(project.path().join(".gazette/state.db"), "").unwrap();
    let run = send(&project, port).expect(1);
    assert!(
        run.stderr.contains("the ledger is empty (0 bytes)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        catcher.received.lock().unwrap().len(),
        11,
        "nobody mailed twice"
    );
    assert!(project.run(&["status"]).code != 0, "status says it too");
}

/// The message to `address` left in `status` (`sending`: as a crash
/// leaves it; `unknown`: its reply lost), tried `attempts` times, the
/// issue open.
fn interrupted(project: &Project, address: &str, status: &str, attempts: u32) {
    let ledger = rusqlite::Connection::open(project.path().join(".gazette/state.db")).unwrap();
    let changed = ledger
        .execute(
            "UPDATE deliveries SET status = ?3, attempts = ?2 WHERE address = ?1",
            rusqlite::params![address, attempts, status],
        )
        .unwrap();
    assert_eq!(changed, 1);
    ledger
        .execute("UPDATE issues SET completed = NULL", [])
        .unwrap();
}

#[test]
fn an_unknown_message_is_resent_by_default_until_max_attempts_then_given_up() {
    let (catcher, port) = catcher();
    let project = sample_with("  max_attempts: 3\n").file(
        "subscribers.csv",
        "email,name\nana@example.com,Ana\nbo@example.com,Bo\n",
    );
    send(&project, port).expect(0);
    let first = catcher.received.lock().unwrap().clone();
    let message_id = |data: &[u8]| {
        use mailparse::MailHeaderMap;
        let mail = mailparse::parse_mail(data).unwrap();
        mail.headers.get_first_value("Message-ID").unwrap()
    };
    let ana_first = first.iter().find(|r| r.to == ["ana@example.com"]).unwrap();
    // A run died with Ana's message in flight: the next plain run sends
    // it again, with its Message-ID, says so, and completes the issue.
    interrupted(&project, "ana@example.com", "sending", 1);
    catcher.received.lock().unwrap().clear();
    let again = send(&project, port).expect(0);
    assert!(!again.stdout.contains("nothing new"), "{}", again.stdout);
    assert!(
        again.stdout.contains("resent 1 message(s)"),
        "{}",
        again.stdout
    );
    let resent = catcher.received.lock().unwrap().clone();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].to, ["ana@example.com"]);
    assert_eq!(message_id(&resent[0].data), message_id(&ana_first.data));
    let state = status(&project);
    assert_eq!(state[0]["deliveries"]["sent"], 2);
    assert!(state[0]["completed"].is_string());
    // Its reply lost at its third attempt: given up (failed, not bounced),
    // and the issue completes so the next one can go.
    interrupted(&project, "ana@example.com", "unknown", 3);
    catcher.received.lock().unwrap().clear();
    let given_up = send(&project, port).expect(1);
    assert!(
        given_up
            .stderr
            .contains("1 message(s) of issue 2026-06-01 were never confirmed and are given up"),
        "{}",
        given_up.stderr
    );
    assert!(catcher.received.lock().unwrap().is_empty());
    let state = status(&project);
    assert_eq!(state[0]["deliveries"]["failed"], 1);
    assert!(state[0]["completed"].is_string());
    let ledger = rusqlite::Connection::open(project.path().join(".gazette/state.db")).unwrap();
    let suppressed: i64 = ledger
        .query_row("SELECT count(*) FROM suppression", [], |row| row.get(0))
        .unwrap();
    assert_eq!(suppressed, 0);
}

/// How many deliveries of the project's ledger are in each status (empty
/// while there is no ledger yet).
fn ledger_statuses(project: &Project) -> std::collections::BTreeMap<String, i64> {
    let path = project.path().join(".gazette/state.db");
    let read = || -> rusqlite::Result<std::collections::BTreeMap<String, i64>> {
        let ledger = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let mut statement =
            ledger.prepare("SELECT status, count(*) FROM deliveries GROUP BY status")?;
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect()
    };
    if !path.exists() {
        return Default::default();
    }
    read().unwrap_or_default()
}

#[test]
fn a_sigterm_stops_the_send_gracefully_with_nothing_in_doubt() {
    let (catcher, port) = catcher();
    *catcher.slow.lock().unwrap() = Some(std::time::Duration::from_millis(100));
    let readers: String = (0..40)
        .map(|i| format!("reader{i:02}@example.com,Reader {i}\n"))
        .collect();
    let project =
        sample_with("  concurrency: 2\n").file("subscribers.csv", format!("email,name\n{readers}"));
    let url = format!("smtp://127.0.0.1:{port}");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gazette"))
        .args(["send", "--smtp", &url])
        .current_dir(project.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GAZETTE_NOW", "2026-06-01T12:00:00Z")
        .env(SECRET.0, SECRET.1)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped once sending is under way.
    let started = std::time::Instant::now();
    while ledger_statuses(&project).get("sent").copied().unwrap_or(0) == 0 {
        assert!(started.elapsed().as_secs() < 30, "nothing was sent in 30 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("stopped by SIGTERM: this run sent"),
        "{stderr}"
    );
    let counts = ledger_statuses(&project);
    assert!(
        !counts.contains_key("sending") && !counts.contains_key("unknown"),
        "{counts:?}"
    );
    assert!(
        counts.get("pending").copied().unwrap_or(0) > 0,
        "{counts:?}"
    );
    let sent = counts["sent"];
    assert_eq!(catcher.recipients().len(), usize::try_from(sent).unwrap());
    // The next plain run mails the rest: everyone exactly once.
    *catcher.slow.lock().unwrap() = None;
    send(&project, port).expect(0);
    let mut recipients = catcher.recipients();
    recipients.sort();
    let before = recipients.len();
    recipients.dedup();
    assert_eq!((before, recipients.len()), (40, 40));
}

/// A project whose readers include one that bounces and one that will
/// unsubscribe, after its first issue and that unsubscribe.
fn sent_with_suppressions(port: u16) -> Project {
    let project = sample_with("  retries_in_run: 0\n").file(
        "subscribers.csv",
        "email,name\nok@example.com,Ok\nbye@example.com,Bye\nbounce@example.com,Gone\n",
    );
    send(&project, port).expect(1);
    project.run(&["unsubscribe", "bye@example.com"]).expect(0);
    project
}

#[test]
fn a_lost_state_folder_needs_first_issue_and_never_mails_the_suppressed_again() {
    let (catcher, port) = catcher();
    let project = sent_with_suppressions(port);
    let sorted = || {
        let mut recipients = catcher.recipients();
        recipients.sort();
        recipients
    };
    assert_eq!(sorted(), ["bye@example.com", "ok@example.com"]);
    let plain = project.read("suppressed.csv");
    assert!(plain.contains("# last issue: 2026-06-01 "), "{plain}");
    assert!(!plain.contains('@'), "keys, not addresses: {plain}");
    std::fs::remove_dir_all(project.path().join(".gazette")).unwrap();
    let refused = send(&project, port).expect(1);
    for says in [
        "the ledger holds no issue, yet this project sent before",
        "suppressed.csv names issue 2026-06-01",
        "gazette state restore BACKUP",
        "--first-issue",
    ] {
        assert!(refused.stderr.contains(says), "{says}: {}", refused.stderr);
    }
    assert_eq!(catcher.recipients().len(), 2, "nobody mailed");
    // The dry run already leaves them out.
    let dry = project.run_env(&["send", "--dry-run"], &[SECRET]).expect(0);
    assert!(dry.stdout.contains("issue 2026-06-01"), "{}", dry.stdout);
    let written: Vec<String> = std::fs::read_dir(project.path().join("outbox/2026-06-01"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".eml"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(written[0].starts_with("ok"), "{written:?}");
    let url = format!("smtp://127.0.0.1:{port}");
    let started = project
        .run_env(&["send", "--smtp", &url, "--first-issue"], &[SECRET])
        .expect(0);
    assert!(
        started
            .stderr
            .contains("2 suppression(s) the ledger lacked were imported"),
        "{}",
        started.stderr
    );
    assert_eq!(
        sorted(),
        ["bye@example.com", "ok@example.com", "ok@example.com"],
        "the unsubscribed and the bounced reader are not mailed again"
    );
    // From here on, an ordinary run.
    send(&project, port).expect(0);
    assert_eq!(catcher.recipients().len(), 3);
}

#[test]
fn a_new_project_sends_its_first_issue_without_the_flag() {
    let (catcher, port) = catcher();
    let project = Project::sample();
    // An unsubscribe recorded before any issue is no sign of a send.
    project
        .run(&["unsubscribe", "someone@example.com"])
        .expect(0);
    assert!(project.exists("suppressed.csv"));
    // Nor is the key a preview makes.
    project.run(&["preview"]).expect(0);
    assert!(project.exists(".gazette/secret"));
    send(&project, port).expect(0);
    assert_eq!(catcher.recipients().len(), 11);
}

#[test]
fn a_send_without_the_signing_key_it_used_warns_that_old_links_stop_working() {
    let (_catcher, port) = catcher();
    let project = Project::sample();
    let url = format!("smtp://127.0.0.1:{port}");
    // No GAZETTE_SECRET: the send makes .gazette/secret.
    project.run(&["send", "--smtp", &url]).expect(0);
    assert!(project.exists(".gazette/secret"));
    // The key lost with the ledger: told before the first issue is made.
    std::fs::remove_file(project.path().join(".gazette/secret")).unwrap();
    for name in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(project.path().join(".gazette").join(name));
    }
    let refused = project.run(&["send", "--smtp", &url]).expect(1);
    assert!(
        refused
            .stderr
            .contains("the unsubscribe links of the issues already sent stop working"),
        "{}",
        refused.stderr
    );
    project
        .run(&["send", "--smtp", &url, "--first-issue"])
        .expect(0);
    // Now the key lost, the ledger kept.
    std::fs::remove_file(project.path().join(".gazette/secret")).unwrap();
    let run = project.run(&["send", "--smtp", &url]).expect(0);
    assert!(
        run.stderr
            .contains("the unsubscribe links of the issues already sent stop working"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_truncated_or_garbage_ledger_stops_the_send_and_names_the_file() {
    let (catcher, port) = catcher();
    let project = Project::sample();
    send(&project, port).expect(0);
    project.run(&["state", "backup", "whole.db"]).expect(0);
    let ledger = project.path().join(".gazette/state.db");
    let whole = std::fs::read(project.path().join("whole.db")).unwrap();
    let garbage: Vec<u8> = (0..whole.len()).map(|i| (i * 7 % 251) as u8).collect();
    for damaged in [whole[..whole.len() / 2].to_vec(), garbage] {
        std::fs::write(&ledger, &damaged).unwrap();
        let _ = std::fs::remove_file(project.path().join(".gazette/state.db-wal"));
        let run = send(&project, port).expect(1);
        assert!(
            run.stderr
                .contains(".gazette/state.db: the ledger is damaged"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("gazette state restore"),
            "{}",
            run.stderr
        );
        assert_eq!(catcher.recipients().len(), 11, "nobody mailed twice");
    }
    // Restored: the next run has nothing new, and mails nobody.
    let restored = project.run(&["state", "restore", "whole.db"]).expect(0);
    assert!(
        restored.stdout.contains("last issue 2026-06-01"),
        "{}",
        restored.stdout
    );
    assert!(project.exists(".gazette/state.db.damaged"));
    let again = send(&project, port).expect(0);
    assert!(
        again.stdout.contains("nothing new to send"),
        "{}",
        again.stdout
    );
    assert_eq!(catcher.recipients().len(), 11, "nobody mailed twice");
}

#[test]
fn a_backup_during_a_send_is_whole_and_a_restore_waits_for_the_send() {
    let (catcher, port) = catcher();
    // Four messages a second: the send takes about three seconds.
    let project = sample_with("  per_second: 4\n");
    let url = format!("smtp://127.0.0.1:{port}");
    std::thread::scope(|scope| {
        let sending = scope.spawn(|| project.run_env(&["send", "--smtp", &url], &[SECRET]));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while catcher.recipients().len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the send never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        project.run(&["state", "backup", "during.db"]).expect(0);
        let refused = project.run(&["state", "restore", "during.db"]).expect(75);
        assert!(
            refused.stderr.contains("a send is in progress (pid"),
            "{}",
            refused.stderr
        );
        assert!(
            catcher.recipients().len() < 11,
            "the send was still running"
        );
        sending.join().unwrap().expect(0);
    });
    let copy = rusqlite::Connection::open(project.path().join("during.db")).unwrap();
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (issues, sent): (i64, i64) = copy
        .query_row(
            "SELECT (SELECT count(*) FROM issues),
                    (SELECT count(*) FROM deliveries WHERE status = 'sent')",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(issues, 1);
    assert!((1..11).contains(&sent), "{sent} sent when it was taken");
    assert_eq!(catcher.recipients().len(), 11);
}

#[test]
fn a_ledger_that_lost_its_last_issue_is_reported_and_a_restore_says_so_too() {
    let (catcher, port) = catcher();
    let project = Project::sample();
    send(&project, port).expect(0);
    project.run(&["state", "backup", "first.db"]).expect(0);
    let later = ("GAZETTE_NOW", "2026-06-08T12:00:00Z");
    let url = format!("smtp://127.0.0.1:{port}");
    let project = project.file(
        "content/a-new-week.md",
        "---\ntitle: A new week\ndate: 2026-06-05\ntags: [ai]\n---\nNew things.\n",
    );
    project
        .run_env(&["send", "--smtp", &url], &[SECRET, later])
        .expect(0);
    assert!(
        project
            .read("suppressed.csv")
            .contains("# last issue: 2026-06-08 ")
    );
    let mailed = catcher.recipients().len();
    // As if state.db-wal had been deleted after a crash: the ledger as it
    // was before the second issue, without its log.
    let dir = project.path().join(".gazette");
    std::fs::copy(project.path().join("first.db"), dir.join("state.db")).unwrap();
    for log in ["state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(dir.join(log));
    }
    let run = project
        .run_env(&["send", "--smtp", &url], &[SECRET, later])
        .expect(0);
    assert!(
        run.stderr.contains(
            "its last issue is 2026-06-01 but suppressed.csv names 2026-06-08 of 2026-06-08 12:00, which it does not hold"
        ),
        "{}",
        run.stderr
    );
    assert!(
        catcher.recipients().len() > mailed,
        "the lost issue went again"
    );
    // A restore of the older backup warns before anything is sent.
    let restored = project.run(&["state", "restore", "first.db"]).expect(0);
    assert!(
        restored
            .stderr
            .contains("it names issue 2026-06-08, later than any the backup holds"),
        "{}",
        restored.stderr
    );
}

#[test]
fn a_send_killed_midway_has_already_named_its_issue_in_suppressed_csv() {
    let (catcher, port) = catcher();
    let project = sample_with("  per_second: 4\n");
    let url = format!("smtp://127.0.0.1:{port}");
    let mut child = spawn_send(&project, &url);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while catcher.recipients().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the send never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: nothing of the send's end runs
    child.wait().unwrap();
    assert!(catcher.recipients().len() < 11, "killed before the end");
    let plain = project.read("suppressed.csv");
    assert!(plain.contains("# last issue: 2026-06-01 "), "{plain}");
    // So losing .gazette/ now is not taken for a new project.
    std::fs::remove_dir_all(project.path().join(".gazette")).unwrap();
    let refused = send(&project, port).expect(1);
    assert!(
        refused.stderr.contains("--first-issue"),
        "{}",
        refused.stderr
    );
}

/// docs/src/internals/ledger.md: "a `pending` one never offered (the run
/// stopped before it) is still sent, however old its issue, so a long
/// outage does not cost readers their issue". The jobs a stopped pool no
/// longer sends (queued with their `sending` mark, or not yet queued) go
/// back to `pending` without a reply, which `expire_tried` would take for
/// a relay that failed to take them.
#[test]
fn readers_never_offered_before_a_relay_problem_still_get_an_old_issue() {
    let (_catcher, port) = catcher();
    let readers: Vec<String> = (0..10).map(|i| format!("reader{i}@example.com")).collect();
    let project = sample_with("  concurrency: 1\n").file(
        "subscribers.csv",
        format!("email\ndenied@example.com\n{}\n", readers.join("\n")),
    );
    send(&project, port).expect(1);
    // The readers the stopped pool never offered to the relay.
    let never_offered: Vec<String> = {
        let path = project.path().join(".gazette/state.db");
        let ledger = rusqlite::Connection::open(&path).unwrap();
        let mut statement = ledger
            .prepare(
                "SELECT address FROM deliveries
                 WHERE status = 'pending' AND address <> 'denied@example.com'",
            )
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    assert!(!never_offered.is_empty());
    // The relay is fixed four days later (past max_age_hours, 72).
    let (catcher, port) = catcher();
    let url = format!("smtp://127.0.0.1:{port}");
    let later = project.run_env(
        &["send", "--smtp", &url],
        &[SECRET, ("GAZETTE_NOW", "2026-06-05T12:00:00Z")],
    );
    let received = catcher.recipients();
    let lost: Vec<&String> = never_offered
        .iter()
        .filter(|who| !received.iter().any(|to| to.contains(who.as_str())))
        .collect();
    assert!(
        lost.is_empty(),
        "{} never offered, {} of them given up: {lost:?}; stderr: {}",
        never_offered.len(),
        lost.len(),
        later.stderr
    );
}

#[test]
fn an_unsubscribe_while_the_ledger_is_damaged_is_kept_in_the_plain_file_and_imported() {
    let (catcher, port) = catcher();
    let project = Project::sample();
    send(&project, port).expect(0);
    let first = catcher.recipients().len();
    project.run(&["state", "backup", "whole.db"]).expect(0);
    let ledger = project.path().join(".gazette/state.db");
    std::fs::write(
        &ledger,
        b"not a database at all, but long enough to look like one",
    )
    .unwrap();
    let refused = project.run(&["unsubscribe", "maria@example.com"]).expect(1);
    assert!(
        refused
            .stderr
            .contains("the unsubscribe was kept in suppressed.csv"),
        "{}",
        refused.stderr
    );
    // Restored from a backup older than the unsubscribe: the plain file
    // brings it back, and the next issue does not mail her.
    project.run(&["state", "restore", "whole.db"]).expect(0);
    let project = project.file(
        "content/later.md",
        "---\ntitle: Later\ndate: 2026-06-01T10:00:00Z\n---\nMore.\n",
    );
    send(&project, port).expect(0);
    let second: Vec<String> = catcher.recipients()[first..].to_vec();
    assert_eq!(second.len(), first - 1, "{second:?}");
    assert!(!second.iter().any(|to| to.contains("maria")), "{second:?}");
}

#[test]
fn a_send_names_twenty_undelivered_readers_then_says_how_many_more() {
    let (_catcher, port) = catcher();
    let readers: String = (0..25).map(|i| format!("defer{i}@example.com\n")).collect();
    let project = sample_with("  retries_in_run: 0\n").file(
        "subscribers.csv",
        format!("email\nok@example.com\n{readers}"),
    );
    let run = send(&project, port).expect(0);
    let named = run
        .stderr
        .lines()
        .filter(|line| line.contains(": deferred, tried again from"))
        .count();
    assert_eq!(named, 20, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "and 5 more not delivered: `gazette status --issue 2026-06-01` lists them all"
        ),
        "{}",
        run.stderr
    );
    let listed = project.run(&["status", "--issue", "2026-06-01"]).expect(0);
    assert_eq!(listed.stdout.lines().count(), 26, "{}", listed.stdout);
}

#[test]
fn retry_only_finishes_the_open_issue_and_never_makes_a_new_one() {
    let (catcher, port) = catcher();
    let project = sample_with("  retries_in_run: 0\n").file(
        "subscribers.csv",
        "email,name\nok@example.com,Ok\ngreylist@example.com,Later\n",
    );
    send(&project, port).expect(0);
    assert_eq!(catcher.recipients(), ["ok@example.com"]);
    let project = project.file(
        "content/later.md",
        "---\ntitle: Later\ndate: 2026-06-01T11:00:00Z\n---\nMore.\n",
    );
    let url = format!("smtp://127.0.0.1:{port}");
    let retry = |now: &str| {
        project.run_env(
            &["send", "--smtp", &url, "--retry-only"],
            &[SECRET, ("GAZETTE_NOW", now)],
        )
    };
    // An hour later the greylisted reader is due: sent; no new issue for
    // the post written meanwhile.
    retry("2026-06-01T13:00:00Z").expect(0);
    assert_eq!(catcher.recipients().len(), 2);
    assert_eq!(status(&project).as_array().unwrap().len(), 1);
    let idle = retry("2026-06-01T14:00:00Z").expect(0);
    assert_eq!(
        idle.stdout,
        "no issue made: no open issue to retry, and --retry-only makes none\n"
    );
    assert_eq!(status(&project).as_array().unwrap().len(), 1);
    assert_eq!(catcher.recipients().len(), 2);
    // The plain send makes the next issue.
    let next = project.run_env(
        &["send", "--smtp", &url],
        &[SECRET, ("GAZETTE_NOW", "2026-06-01T15:00:00Z")],
    );
    next.expect(0);
    assert_eq!(status(&project).as_array().unwrap().len(), 2);
}
