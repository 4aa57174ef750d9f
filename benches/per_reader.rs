//! Benchmarks of the per-reader hot paths, on the sample project
//! (gazette.yaml and content/ at the repository root): one reader's email
//! from a compiled digest ([`Renderer::email`]), the MIME splice of its
//! body ([`Email::body`]), and the payload writer that dot-stuffs it for
//! DATA ([`Payload`]), and the suppression list read again before each
//! message goes ([`Ledger::is_suppressed`]). Uses only the library's
//! public API.
//!
//! `cargo bench --bench per_reader`; `cargo bench --bench per_reader --
//! --test` runs each once. `scripts/bench` measures whole runs against
//! real peers; these measure the pieces.

use std::path::Path;

use gazette::address::AddressKey;
use gazette::audience::segments::segment_of;
use gazette::audience::subscribers::{self, Subscriber};
use gazette::clock::Clock;
use gazette::config::{Config, Segment};
use gazette::content::{self, Want};
use gazette::deliver::smtp::Payload;
use gazette::ledger::{Ledger, SuppressionReason};
use gazette::render::{Email, Renderer};
use gazette::select::{self, History, Index, Pick, Reader, Window};
use gazette::unsubscribe::Secret;

/// The time the sample is rendered at (the integration tests' too).
const NOW: &str = "2026-06-01T12:00:00Z";

/// The sample reader: non-ASCII name, custom columns, a segment with A/B
/// variants.
const READER: &str = "maria@example.com";

fn main() {
    divan::main();
}

/// Runs `bench` with the sample's renderer, the reader, their segment and
/// their picks, the digest already compiled (as for every reader but the
/// first of a digest).
fn with_sample(bench: impl FnOnce(&Renderer, &Segment, &Subscriber, &[Pick])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shown = Path::new("gazette.yaml");
    let (config, problems) = Config::load(&root.join(shown), shown);
    let config = config.unwrap_or_else(|| panic!("the sample's config: {problems:?}"));
    let clock = Clock::pinned(NOW).expect("a valid time");
    let loaded = content::load(&config, root, &clock, Want::Everything);
    let mut readers = Vec::new();
    let path = root.join(&config.audience.file);
    let mut attrs = Vec::new();
    subscribers::read(&path, &path, &mut |subscriber| {
        subscribers::add_columns(&mut attrs, &subscriber.attrs);
        readers.push(subscriber);
    });
    let reader = readers
        .iter()
        .find(|s| s.email == READER)
        .expect("the sample reader");
    let window = Window::new(&config, clock.now(), None);
    let issue = select::plan(&loaded.library, &History::default(), window);
    let index = Index::new(&issue.posts, clock.now(), &config.digest);
    let secret = Secret::from_bytes(b"gazette bench: not a real key");
    let (renderer, problems) = Renderer::new(&config, root, shown, &issue, secret, attrs);
    let renderer = renderer.unwrap_or_else(|| panic!("the sample's templates: {problems:?}"));
    let segment = segment_of(reader, &config.segments);
    let interests = Reader {
        interests: &reader.interests,
        personalize: reader.personalize,
    };
    let (_, picks) = select::digest(&index, segment, interests, &config.digest);
    renderer
        .email(segment, reader, &picks)
        .expect("the sample renders");
    bench(&renderer, segment, reader, &picks);
}

/// One reader's email: the compiled digest found, their fields filled in.
#[divan::bench]
fn email(bencher: divan::Bencher) {
    with_sample(|renderer, segment, reader, picks| {
        bencher.bench(|| renderer.email(segment, reader, picks).expect("renders"));
    });
}

/// The MIME body of one reader's email: encoded pieces copied, their
/// fields escaped, encoded and spliced in.
#[divan::bench]
fn mime_splice(bencher: divan::Bencher) {
    with_sample(|renderer, segment, reader, picks| {
        let email: Email = renderer.email(segment, reader, picks).expect("renders");
        let mut out = Vec::with_capacity(email.body_len() + 4096);
        bencher.bench_local(|| {
            out.clear();
            email.body(&mut out);
            out.len()
        });
    });
}

/// The message as DATA sends it: every line-leading dot doubled and the
/// final dot line added, written into a reused buffer.
#[divan::bench]
fn payload(bencher: divan::Bencher) {
    with_sample(|renderer, segment, reader, picks| {
        let email: Email = renderer.email(segment, reader, picks).expect("renders");
        let mut message = Vec::with_capacity(email.body_len() + 4096);
        email.body(&mut message);
        let message = String::from_utf8(message).expect("a MIME body is ASCII");
        let mut out = String::with_capacity(message.len() + 64);
        bencher.bench_local(|| {
            use std::fmt::Write;
            out.clear();
            write!(out, "{}", Payload(&message)).expect("writing to a String");
            out.len()
        });
    });
}

/// The question a send asks before each message's MAIL FROM: is the
/// reader on the suppression list now? Asked of a real ledger file with
/// 10,000 suppressions, for a reader who is not on it.
#[divan::bench]
fn suppression_check(bencher: divan::Bencher) {
    let root = tempfile::tempdir().expect("a temporary folder");
    let ledger = Ledger::open(root.path()).expect("a new ledger");
    let at = Clock::pinned(NOW).expect("a valid time").now();
    for i in 0..10_000 {
        let address = format!("gone{i}@example.com");
        ledger
            .suppress(
                AddressKey::of(&address),
                Some(&address),
                SuppressionReason::Unsubscribed,
                at,
            )
            .expect("suppressed");
    }
    let reader = AddressKey::of(READER);
    bencher.bench_local(|| ledger.is_suppressed(reader).expect("read"));
}
