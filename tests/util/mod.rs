//! The one helper module of the integration tests; each test file includes it with
//! `mod util;` and uses part of it.
//!
//! - Here, on every platform (`tests/tokio.rs` and `tests/windows.rs` run under Wine too):
//!   unique names, temporary directories, a watchdog that turns a hang into a fast failure.
//! - `unix` (its items are re-exported here): file modes and ids, the example binaries,
//!   the Qt peers (Qt 5 and Qt 6), child processes whose stdout lines arrive on a channel,
//!   signal masks and context switches.
//! - `solo`: the `SingleInstance` tests' helpers: the `solo` example in a private runtime
//!   directory, primaries started in process, raw replies, locks and signals.
#![allow(dead_code)]

#[cfg(unix)]
pub mod solo;
#[cfg(unix)]
mod unix;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

#[cfg(unix)]
pub use unix::*;

/// Bytes that look random (xorshift), the same for a seed.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// The next request, taken by polling `try_recv` as a frame loop does (the caller's
/// watchdog ends a test that never gets one).
pub fn poll_request(primary: &solo_instance::Primary) -> solo_instance::Request {
    loop {
        if let Ok(request) = primary.try_recv() {
            return request;
        }
        thread::yield_now();
    }
}

/// How long a child process gets to print a line before the test fails.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(20);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (in this process or another) uses: `si<pid>-<n>-<tag>`, short
/// enough to fit `sun_path` below `/tmp` with room to spare.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("si{}-{n}-{tag}", std::process::id())
}

/// A fresh directory below `/tmp` (Unix: short enough for `sun_path`; elsewhere the temp
/// directory), removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        #[cfg(unix)]
        let root = PathBuf::from("/tmp");
        #[cfg(not(unix))]
        let root = std::env::temp_dir();
        let path = root.join(unique_name(tag));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `dir/name` as a string, for `listen` and `connect`.
    pub fn join(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("utf-8 temp path").to_owned()
    }

    /// The names in the directory, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Ends the whole test process (exit code 101) if it is not dropped within the limit,
/// naming the test: a hang fails fast instead of stalling the run.
#[derive(Debug)]
pub struct Watchdog {
    _done: mpsc::Sender<()>,
}

impl Watchdog {
    pub fn new(limit: Duration) -> Self {
        let test = thread::current().name().unwrap_or("<unnamed test>").to_owned();
        let (done, rx) = mpsc::channel::<()>();
        thread::Builder::new()
            .name(format!("watchdog {test}"))
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                    // Straight to fd 2: the test harness would swallow eprintln! output.
                    let _ = std::io::stderr().write_all(
                        format!(
                            "\nwatchdog: test `{test}` still running after {limit:?}; exiting with 101\n"
                        )
                        .as_bytes(),
                    );
                    std::process::exit(101);
                }
            })
            .expect("spawn watchdog");
        Watchdog { _done: done }
    }
}
