//! A primary's life among other processes and cleaners: children forked without exec,
//! a runtime directory removed and made again, a user out of inotify instances. Real
//! processes, readiness by lines and channels, and a Watchdog on each test.
//!
//! | what | tests |
//! |---|---|
//! | fork() without exec, then release | `lifecycle_release_gives_up_primacy_that_a_forked_child_shares` (child: `lifecycle_helper_forking_primary`) |
// Linux: fork(2) with a parent-death signal, abstract names, inotify.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use solo_instance::{Scope, SingleInstance, Start};
use util::solo::{set_mode, signal};
use util::{Proc, TempDir, Watchdog};

/// What follows `prefix` on the next line of `p` that has it (the test harness of a
/// helper prints lines of its own, and starts the first one with the test's name).
fn line_starting(p: &Proc, prefix: &str) -> String {
    loop {
        let line = p.line();
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].trim().to_owned();
        }
    }
}

/// This test binary, run as the helper test `name` with `var=value`.
fn helper(name: &str, var: &str, value: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads", "1"]).env(var, value).current_dir("/");
    cmd
}

// ---------------------------------------------------------------------------------------
// fork() without exec
// ---------------------------------------------------------------------------------------

const FORK_VAR: &str = "SOLO_LIFECYCLE_FORK";

/// `user <dir> <app>` or `system <app>`.
fn instance_of(spec: &str) -> SingleInstance {
    let parts: Vec<&str> = spec.split(' ').collect();
    match parts[..] {
        ["user", dir, app] => SingleInstance::new(app).unwrap().directory(dir),
        ["system", app] => SingleInstance::new(app).unwrap().scope(Scope::System),
        _ => panic!("bad spec {spec:?}"),
    }
}

/// Not a test of its own (it returns at once): the helper process of
/// `lifecycle_release_gives_up_primacy_that_a_forked_child_shares`, with
/// `SOLO_LIFECYCLE_FORK=<spec>` (see [`instance_of`]). It becomes the primary, forks a
/// child that sleeps holding every descriptor (a prefork worker, a crash reporter) and
/// dies with it, prints `CHILD <pid>`, releases the primary, prints `RELEASED`, and sleeps.
#[test]
fn lifecycle_helper_forking_primary() {
    let Ok(spec) = std::env::var(FORK_VAR) else { return };
    let Ok(Start::Primary(primary)) = instance_of(&spec).argv(["helper"]).start() else {
        println!("ERROR not the primary");
        return;
    };
    // SAFETY: the child makes only async-signal-safe calls (prctl, getppid, pause, _exit)
    // before it ends; it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; these calls take no pointers.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() == 1 {
                libc::_exit(0);
            }
            loop {
                libc::pause();
            }
        }
    }
    assert!(pid > 0, "fork failed");
    println!("CHILD {pid}");
    primary.release();
    println!("RELEASED");
    loop {
        std::thread::park();
    }
}

/// Runs the forking helper for `spec` and checks that, once it released, a new launch is
/// the primary (the child, which still holds every descriptor the primary had, must hold
/// neither the lock nor the socket nor the abstract name); then that launches reach the
/// new primary, not the child.
fn release_beats_a_forked_child(spec: &str) {
    let p = Proc::spawn(&mut helper("lifecycle_helper_forking_primary", FORK_VAR, spec));
    let child: u32 = line_starting(&p, "CHILD").parse().unwrap();
    line_starting(&p, "RELEASED");
    let started = instance_of(spec).timeout(Duration::from_secs(3)).argv(["next"]).start();
    let primary = match started {
        Ok(Start::Primary(primary)) => primary,
        other => panic!("{spec}: after release the next launch is not the primary: {other:?}"),
    };
    let forwarder = std::thread::spawn({
        let spec = spec.to_owned();
        move || instance_of(&spec).timeout(Duration::from_secs(3)).argv(["x", "to-the-new-one"]).send()
    });
    let request = primary.recv_timeout(Duration::from_secs(5)).expect("the launch reached the new primary");
    assert_eq!(request.args(), ["to-the-new-one"]);
    drop(request);
    let _ = forwarder.join().unwrap();
    signal(child, libc::SIGKILL);
}

/// Issue 20, item 10: a primary forks a child that sleeps holding the lock file's open
/// file description and the listening socket, then calls `release()`: the next launch is
/// the primary at once, in the User scope (a lock file and a socket file) and in the
/// System scope (an abstract name), and a launch after it reaches it.
#[test]
fn lifecycle_release_gives_up_primacy_that_a_forked_child_shares() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("fork");
    set_mode(dir.path(), 0o700);
    let pid = std::process::id();
    release_beats_a_forked_child(&format!("user {} org.life.fork{pid}", dir.path().display()));
    release_beats_a_forked_child(&format!("system org.life.forksys{pid}"));
    assert!(Path::new(dir.path()).exists());
}
