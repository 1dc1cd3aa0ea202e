//! An idle LocalServer and an idle primary sleep: no thread of theirs wakes up while
//! nothing happens (no timers, no polling loops). Counts context switches, not time.
#![cfg(target_os = "linux")]

mod util;

use std::process::Command;
use std::time::Duration;

use util::{example, unique_name, Proc, TempDir, Watchdog};

/// Voluntary and involuntary context switches of every thread of `pid`.
fn switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// Samples after the process has settled, over a window of idle time.
fn idle_switches(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(300));
    let before = switches(pid);
    std::thread::sleep(Duration::from_millis(1500));
    switches(pid) - before
}

#[test]
fn idle_local_server_never_wakes() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("idle");
    // `echo server` registers a newConnection callback: its acceptor thread sleeps in poll.
    let server = Proc::spawn(Command::new(example("echo")).args(["server", &dir.join("s"), "1"]));
    assert!(server.line().starts_with("LISTENING "));
    assert_eq!(idle_switches(server.id()), 0, "an idle LocalServer woke up");
}

#[test]
fn idle_primary_never_wakes() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("idle");
    let app = unique_name("idle");
    let primary =
        Proc::spawn(Command::new(example("solo")).args(["run", &app]).env("XDG_RUNTIME_DIR", dir.path()));
    assert!(primary.line().starts_with("PRIMARY "));
    assert_eq!(idle_switches(primary.id()), 0, "an idle primary woke up");
    // And it still serves: an idle sleep is not a dead one.
    let send = Command::new(example("solo"))
        .args(["send", &app, "x"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert!(send.status.success(), "{}", String::from_utf8_lossy(&send.stderr));
}
