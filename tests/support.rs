//! Test support: throwaway projects and a runner for the real binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The time every test run is pinned to.
pub const NOW: &str = "2026-06-01T12:00:00Z";

/// A gazette project in a temporary folder.
pub struct Project {
    dir: tempfile::TempDir,
}

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Project {
    /// An empty folder.
    pub fn empty() -> Project {
        Project {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A folder with a minimal `gazette.yaml` and an empty `content/`.
    pub fn new() -> Project {
        Project::empty()
            .file(
                "gazette.yaml",
                "site:\n  title: Test site\n  base_url: https://example.com\n",
            )
            .dir("content")
    }

    /// A copy of `tests/fixtures/<name>`.
    pub fn fixture(name: &str) -> Project {
        let project = Project::empty();
        copy_dir(&fixtures().join(name), project.path());
        project
    }

    /// A copy of the repository's own sample project (config, subscribers
    /// and content).
    pub fn sample() -> Project {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let project = Project::empty();
        fs::copy(
            root.join("gazette.yaml"),
            project.path().join("gazette.yaml"),
        )
        .expect("copy config");
        fs::copy(
            root.join("subscribers.csv"),
            project.path().join("subscribers.csv"),
        )
        .expect("copy subscribers");
        copy_dir(&root.join("content"), &project.path().join("content"));
        // The one seed post without a date falls back to its modification time.
        project.touch(
            "content/rise-of-ai-in-digital-marketing.md",
            "2025-01-10T08:00:00Z",
        )
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(self, name: &str, contents: impl AsRef<[u8]>) -> Project {
        let path = self.path().join(name);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, contents).expect("write fixture file");
        self
    }

    pub fn dir(self, name: &str) -> Project {
        fs::create_dir_all(self.path().join(name)).expect("mkdir");
        self
    }

    /// Sets a file's modification time (RFC 3339).
    pub fn touch(self, name: &str, when: &str) -> Project {
        let when = chrono::DateTime::parse_from_rfc3339(when).expect("RFC 3339");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(when.timestamp() as u64);
        let file = fs::File::options()
            .write(true)
            .open(self.path().join(name))
            .expect("open");
        file.set_modified(time).expect("set mtime");
        self
    }

    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path().join(name).exists()
    }

    /// Runs `gazette ARGS` in the project with a clean environment.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gazette"));
        command
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GAZETTE_NOW", NOW);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().expect("run gazette");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    }

    /// `feed.json` of a `feeds` run, parsed.
    pub fn json_feed(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.read(name)).expect("feed.json is JSON")
    }
}

impl Run {
    /// Asserts the exit code, showing the output when it is wrong.
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
