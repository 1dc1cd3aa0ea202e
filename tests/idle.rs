//! An idle LocalServer and an idle primary sleep: no thread of theirs wakes up while
//! nothing happens (no timers, no polling loops). Counts context switches, not time.
#![cfg(target_os = "linux")]

mod util;

use std::process::Command;
use std::time::Duration;

use util::{example, idle_switches, unique_name, Proc, TempDir, Watchdog};

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

const SYSTEM_HELPER_VAR: &str = "SOLO_IDLE_SYSTEM_PRIMARY";

/// Run by [`idle_system_primary_never_wakes`] as a process of its own: a System-scope
/// primary of the app id in [`SYSTEM_HELPER_VAR`], serving until killed.
#[test]
fn idle_helper_system_primary() {
    let Ok(app) = std::env::var(SYSTEM_HELPER_VAR) else { return };
    let start = solo_instance::SingleInstance::new(&app).unwrap().scope(solo_instance::Scope::System).start();
    let Ok(solo_instance::Start::Primary(p)) = start else { panic!("not the primary: {start:?}") };
    println!("PRIMARY {:?}", p.health());
    for r in p.requests() {
        let _ = r.reply(solo_instance::Reply::ok());
    }
}

/// The System scope's primary watches its lock file in `/tmp` (inotify on the file
/// itself, not on `/tmp`): it sleeps too, whatever else comes and goes in `/tmp`.
#[test]
fn idle_system_primary_never_wakes() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let app = unique_name("idlesys");
    let primary = Proc::spawn(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "idle_helper_system_primary", "--nocapture", "--test-threads", "1"])
            .env(SYSTEM_HELPER_VAR, &app),
    );
    let line = loop {
        let line = primary.line();
        if let Some(i) = line.find("PRIMARY") {
            break line[i..].to_owned();
        }
    };
    // Files made and removed in `/tmp` meanwhile wake nobody.
    let tag = format!("/tmp/{app}.churn");
    let churn = std::thread::spawn(move || {
        for i in 0..50 {
            let f = format!("{tag}{i}");
            std::fs::write(&f, b"x").unwrap();
            std::fs::remove_file(&f).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let woke = idle_switches(primary.id());
    churn.join().unwrap();
    let lock = format!("/tmp/solo-instance-system@{app}.lock");
    drop(primary);
    let _ = std::fs::remove_file(&lock);
    assert_eq!(line, "PRIMARY Watched");
    assert_eq!(woke, 0, "an idle System-scope primary woke up");
}
