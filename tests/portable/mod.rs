//! Helpers for the tests that run on every platform (`tests/tokio.rs`,
//! `tests/windows.rs`, also under Wine): unique names, a temporary directory, and a
//! watchdog that turns a hang into a fast failure. The Unix-only suites use
//! `tests/util`, which adds processes, Qt and file modes.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A name (pipe, socket or app id) no other test, in this process or another, uses.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("si{}-{}-{tag}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A fresh directory in the temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Ends the test process (exit code 101) if not dropped within `limit`, naming the test:
/// a hang fails fast instead of stalling CI.
pub struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

impl Watchdog {
    pub fn new(limit: Duration) -> Self {
        let test = thread::current().name().unwrap_or("<unnamed>").to_owned();
        let (done, rx) = mpsc::channel::<()>();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                let _ = std::io::stderr()
                    .write_all(format!("\nwatchdog: `{test}` still running after {limit:?}\n").as_bytes());
                std::process::exit(101);
            }
        });
        Watchdog(done)
    }
}
