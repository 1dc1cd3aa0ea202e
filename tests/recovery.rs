//! Crash recovery (guarantee 3) and clear failure (guarantee 8): after `kill -9` the next
//! launch is the primary at once; a socket is removed only by the lock's holder, once the
//! lock proved it stale, so a live primary's socket is never removed; a lock held with no
//! one answering fails the launch with `NoReply` within its timeout; `SIGTERM` and
//! `solo status` leave and report the files as they should.
//!
//! | what | tests |
//! |---|---|
//! | stale socket cleared after the lock proves it stale | `kill_9_then_the_next_launch_is_primary_at_once`, `a_live_primarys_socket_is_never_removed`, `a_symlinked_lock_file_is_refused_and_its_target_untouched` |
//! | clear failure | `lock_held_without_socket_fails_clearly`, `lock_held_by_a_server_that_never_replies_fails_clearly` |
//! | cleanup | `status_and_sigterm_cleanup` |
//!
//! Every test has a Watchdog; readiness is a line read or a channel, never a sleep.
#![cfg(unix)]

mod util;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use solo_instance::{LocalServer, LocalSocketError, SocketOptions};
use util::solo::{forwarded, hold_lock, json_line, lock_is_free, output, signal, text, Fixture};
use util::{file_id, Proc, Watchdog};

const NO_REPLY_1S: &str = "a primary instance holds the lock but did not answer within 1.0s";

fn assert_no_reply(out: &Output, took: Duration) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout {:?} stderr {stderr:?}", text(&out.stdout));
    assert!(stderr.contains(NO_REPLY_1S), "{stderr}");
    assert!(out.stdout.is_empty(), "{:?}", text(&out.stdout));
    assert!(took >= Duration::from_millis(900), "gave up after {took:?}, before its timeout");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// Guarantee 3: after `kill -9` of the primary (its socket file left behind), the next
/// launch is the primary at once (well within its 60 s timeout), and the lock file
/// records its pid.
#[test]
fn kill_9_then_the_next_launch_is_primary_at_once() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("kill9");
    let old = f.primary(&[]);
    let old_pid = old.id();
    assert_eq!(f.lock_pid(), old_pid);
    f.send_ok(&old, "before-crash");

    signal(old_pid, libc::SIGKILL);
    let (status, _) = old.finish();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(f.sock().exists(), "kill -9 leaves the socket file behind (the stale case under test)");

    let started = Instant::now();
    let new = Proc::spawn(&mut f.cmd("run", ["--count", "0", "--timeout", "60"]));
    assert_eq!(new.line(), format!("PRIMARY {}", f.sock().display()), "stderr: {}", new.stderr());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "becoming primary after a crash took {took:?}");
    let new_pid = new.id();
    let (status, rest) = new.finish();
    assert!(status.success(), "{status}");
    assert!(rest.is_empty(), "{rest:?}");
    assert_ne!(new_pid, old_pid);
    assert_eq!(f.lock_pid(), new_pid, "the lock file does not record the new primary");
    assert!(!f.sock().exists(), "the new primary's clean exit removes the socket");
}

/// Guarantee 3: a live primary's socket is never removed or replaced. A second `solo run`
/// cannot become primary (it forwards); `LocalServer::listen` on the same path, with and
/// without `USER_ACCESS`, fails with AddressInUse; the socket file keeps its (dev, ino),
/// no temporary file is left, and the primary still answers.
#[test]
fn a_live_primarys_socket_is_never_removed() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("live");
    let p = f.primary(&[]);
    let id = file_id(f.sock());

    let out = output(&mut f.cmd("run", ["--count", "0", "--", "second"]));
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    assert_eq!(forwarded(&text(&out.stdout))["ok"], true);
    assert_eq!(json_line(&p.line())["argv"][1], "second");
    assert_eq!(file_id(f.sock()), id, "a second launch replaced the live socket");

    for options in [SocketOptions::empty(), SocketOptions::USER_ACCESS] {
        let mut server = LocalServer::new();
        server.set_socket_options(options);
        let e = server.listen(&f.sock_name()).expect_err("listen on a live primary's socket");
        assert_eq!(e.socket_error(), Some(LocalSocketError::AddressInUse), "{options:?}: {e}");
        assert!(!server.is_listening());
        drop(server);
        assert_eq!(file_id(f.sock()), id, "{options:?}: the live socket was replaced");
    }
    let status = output(&mut f.cmd("status", None::<&str>));
    assert!(status.status.success(), "{}", text(&status.stdout));
    assert_eq!(file_id(f.sock()), id, "status touched the socket");
    let mut names = f.dir.entries();
    names.sort();
    assert_eq!(names, [format!("{}.lock", f.app), format!("{}.sock", f.app)], "stray files");
    f.send_ok(&p, "still-served");
}

/// Guarantee 8: the lock is held but nothing listens. `send` and `run` with `--timeout 1`
/// both fail within ~1 s saying the primary did not answer (neither hangs, neither
/// becomes primary, neither exits silently).
#[test]
fn lock_held_without_socket_fails_clearly() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("nosock");
    let _lock = hold_lock(&f.lock());
    for sub in ["send", "run"] {
        let started = Instant::now();
        let out = output(&mut f.cmd(sub, ["--timeout", "1", "--", "x"]));
        assert_no_reply(&out, started.elapsed());
    }
    assert!(!f.sock().exists());
}

/// Guarantee 8: the lock is held by a server that accepts and reads the request but never
/// replies: the launch fails within ~1 s saying so.
#[test]
fn lock_held_by_a_server_that_never_replies_fails_clearly() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("mute");
    let _lock = hold_lock(&f.lock());
    let mut server = LocalServer::new();
    server.set_socket_options(SocketOptions::USER_ACCESS);
    server.listen(&f.sock_name()).unwrap();

    let mut cmd = f.cmd("send", ["--timeout", "1", "--", "unanswered"]);
    let started = Instant::now();
    let launch = thread::spawn(move || {
        let out = output(&mut cmd);
        (out, started.elapsed())
    });
    assert!(server.wait_for_new_connection(Some(Duration::from_secs(20))).unwrap());
    let conn = server.next_pending_connection().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).unwrap();
    assert_eq!(json_line(&line)["argv"][1], "unanswered");
    let (out, took) = launch.join().unwrap();
    assert_no_reply(&out, took);
    drop(conn);
}

/// `solo status` before, during and after a primary (the lock file's path on stderr);
/// SIGTERM (and SIGINT) end the primary cleanly: exit 0, socket file removed, lock free, status STOPPED; `send` then says no
/// primary runs (exit 3).
#[test]
fn status_and_sigterm_cleanup() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("status");
    let stopped = format!("STOPPED {}", f.sock().display());
    let out = output(&mut f.cmd("status", None::<&str>));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout).trim_end(), stopped);
    // The lock file's path, for a person, on stderr: stdout's line stays as scripts read it.
    assert_eq!(text(&out.stderr), format!("solo: lock file {}\n", f.lock().display()));

    for sig in [libc::SIGTERM, libc::SIGINT] {
        let p = f.primary(&[]);
        let out = output(&mut f.cmd("status", None::<&str>));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim_end(), format!("RUNNING {} {}", p.id(), f.sock().display()));
        f.send_ok(&p, "status-did-not-disturb");

        signal(p.id(), sig);
        let (status, rest) = p.finish();
        assert!(status.success(), "signal {sig}: {status}");
        assert!(rest.is_empty(), "{rest:?}");
        assert!(!f.sock().exists(), "signal {sig}: the socket file is left behind");
        assert!(lock_is_free(&f.lock()), "signal {sig}: the lock is still held");

        let out = output(&mut f.cmd("status", None::<&str>));
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(text(&out.stdout).trim_end(), stopped);
        let out = output(&mut f.cmd("send", ["--", "nobody-home"]));
        assert_eq!(out.status.code(), Some(3));
        assert!(text(&out.stderr).contains("no primary instance"), "{}", text(&out.stderr));
    }
}

/// A lock path that is a symlink (a shared directory's owner aiming at a victim file) is
/// refused, and the file it points to is left alone.
#[test]
fn a_symlinked_lock_file_is_refused_and_its_target_untouched() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("lnlock");
    let victim = f.dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious data").unwrap();
    std::os::unix::fs::symlink(&victim, f.lock()).unwrap();
    let out = output(&mut f.cmd("run", ["--count", "0"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious data");
    assert!(!f.sock().exists());
}

/// The pid a primary records covers a longer one left by a primary before it (the lock
/// file is written over in place, not truncated first), and a file longer than any pid
/// record is cut to the new one.
#[test]
fn recovery_the_recorded_pid_covers_a_longer_stale_one() {
    let _w = Watchdog::new(Duration::from_secs(60));
    for stale in ["4294967295\n", "4294967295 and more than a pid\n"] {
        let f = Fixture::new("stalepid");
        std::fs::write(f.lock(), stale).unwrap();
        let new = Proc::spawn(&mut f.cmd("run", ["--count", "0", "--timeout", "60"]));
        assert_eq!(new.line(), format!("PRIMARY {}", f.sock().display()), "stderr: {}", new.stderr());
        let pid = new.id();
        let (status, _) = new.finish();
        assert!(status.success(), "{status}");
        assert_eq!(f.lock_pid(), pid, "the lock file does not record the new primary over {stale:?}");
    }
}
