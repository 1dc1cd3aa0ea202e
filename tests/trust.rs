//! The trust model between users (README "Security"): in the System scope any local user
//! may be the primary, and a launch of another user prints that primary's texts and exits
//! with its code. Such texts must not drive the launch's terminal; a primary of the
//! launch's own user keeps its escape sequences.
//!
//! Real processes: a System-scope primary run as uid 4245 (no passwd entry: a throwaway
//! user) and launches run as root, each a child process of this test binary (the
//! `trust_helper_*` functions, which return at once unless their variable is set). Root
//! only; elsewhere each test prints why it skips.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod util;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use solo_instance::{Error, Reply, Scope, SingleInstance, Start};
use util::solo::skip_unless_root;
use util::{Proc, TempDir, Watchdog};

/// The throwaway user that runs the foreign primary.
const STRANGER: u32 = 4245;

/// What a hostile primary writes for the launch's terminal: clear the screen, retitle the
/// window, colours, a bare carriage return and a backspace (overwriting what was shown),
/// a C1 CSI, a right-to-left override and isolate, DEL and NUL; then a tab, a CRLF line
/// end, a right-to-left mark and ordinary text, which must stay.
const HOSTILE: &str =
    "\x1b[2J\x1b]0;pwned\x07red:\x1b[31mX\x1b[0m\rOVER\x08\u{9b}31m\u{202e}txt.exe\u{2066}\x7f\0\n\tok é\u{200f}😀\r\n";
/// The same as the launch must print it when the primary is another user.
const DEFUSED: &str = "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}red:\\u{1b}[31mX\\u{1b}[0m\\u{d}OVER\\u{8}\\u{9b}31m\\u{202e}txt.exe\\u{2066}\\u{7f}\\u{0}\n\tok é\u{200f}😀\r\n";

const PRIMARY_VAR: &str = "SOLO_TRUST_SYSTEM_PRIMARY";
const LAUNCH_VAR: &str = "SOLO_TRUST_LAUNCH";

fn system(app: &str, arg: &str) -> SingleInstance {
    SingleInstance::new(app)
        .unwrap()
        .scope(Scope::System)
        .timeout(Duration::from_secs(20))
        .argv(["launch", arg])
}

/// The answer of a primary that tries to take over the terminal: `HOSTILE` on both
/// streams and exit code 3, or for `reject`, a refusal whose message is `HOSTILE`.
fn hostile_reply(request: &solo_instance::Request) -> Reply {
    if request.args().first().is_some_and(|a| a == "reject") {
        Reply::error(HOSTILE)
    } else {
        Reply::exit(3).with_stdout(HOSTILE).with_stderr(HOSTILE)
    }
}

/// Not a test of its own (it returns at once): with `SOLO_TRUST_SYSTEM_PRIMARY=<app id>`,
/// becomes that app's System-scope primary, prints `PRIMARY`, and answers every launch
/// with [`hostile_reply`].
#[test]
fn trust_helper_system_primary() {
    let Ok(app) = std::env::var(PRIMARY_VAR) else { return };
    match system(&app, "primary").start() {
        Ok(Start::Primary(p)) => {
            println!("PRIMARY {}", p.socket_path().display());
            for r in p.requests() {
                let reply = hostile_reply(&r);
                let _ = r.reply(reply);
            }
        }
        Ok(Start::Forwarded(r)) => println!("FORWARDED {}", r.encode()),
        Err(e) => println!("ERROR {e}"),
    }
}

/// Not a test of its own: with `SOLO_TRUST_LAUNCH=<app id>`, a launch as an app does
/// it: `print_output`, then exit with the reply's code.
#[test]
fn trust_helper_launch() {
    let Ok(app) = std::env::var(LAUNCH_VAR) else { return };
    match system(&app, "print").send() {
        Ok(reply) => {
            println!("\nBEGIN");
            reply.print_output();
            println!("END");
            std::process::exit(reply.exit_code());
        }
        Err(e) => {
            println!("ERROR {e}");
            std::process::exit(101);
        }
    }
}

/// A copy of this test binary that any user may run.
fn exe_for_anyone() -> (TempDir, PathBuf) {
    util::runnable_by_anyone(&std::env::current_exe().unwrap(), "trust")
}

/// Runs `trust_helper_launch` as root against `app`'s primary: its exit code, and the
/// bytes `print_output` wrote on stdout (between BEGIN and END) and on stderr.
fn launch_prints(exe: &PathBuf, app: &str) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    launch_prints_under(&[], exe, app)
}

/// The same, with the launch run under `wrapper` (`unshare -U`, say).
fn launch_prints_under(wrapper: &[&str], exe: &PathBuf, app: &str) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let out = cmd
        .args(["--exact", "trust_helper_launch", "--nocapture", "--test-threads", "1"])
        .env(LAUNCH_VAR, app)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = out.stdout;
    let find = |what: &[u8]| stdout.windows(what.len()).position(|w| w == what);
    let (Some(begin), Some(end)) = (find(b"\nBEGIN\n"), find(b"END\n")) else {
        panic!("launch: {:?} {:?}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&out.stderr));
    };
    let printed = stdout[begin + 7..end].to_vec();
    // libtest writes its own lines to stdout; print_output's stderr text is the helper's only.
    (out.status.code(), printed, out.stderr)
}

/// Starts `trust_helper_system_primary` in `exe` as uid `STRANGER`, and waits until it
/// is the System-scope primary of `app`.
fn stranger_primary(exe: &Path, app: &str) -> Proc {
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "trust_helper_system_primary", "--nocapture", "--test-threads", "1"])
        .env(PRIMARY_VAR, app)
        .current_dir("/")
        .uid(STRANGER)
        .gid(STRANGER);
    let p = Proc::spawn(&mut cmd);
    // libtest prints "test NAME ... " before the helper's own line, on the same line.
    let line = loop {
        let line = p.line();
        if ["PRIMARY", "FORWARDED", "ERROR"].iter().any(|w| line.contains(w)) {
            break line;
        }
    };
    assert!(line.contains("PRIMARY "), "uid {STRANGER} did not become the primary: {line} {}", p.stderr());
    p
}

/// A System-scope primary of another user (uid 4245) answers root's launches with escape
/// sequences, bidi overrides and control characters. The launch knows from the OS that
/// another user serves it: `is_from_another_user`, and every text it would print shows
/// those characters as `\u{..}` instead of acting on them: `stdout`/`stderr`,
/// `print_output` (the bytes a child launch wrote), and an `Error::Rejected` message.
/// The exit code is the primary's, as the README says.
#[test]
fn a_primary_of_another_user_cannot_drive_the_launchs_terminal() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if skip_unless_root(&format!("to run a primary as uid {STRANGER}")) {
        return;
    }
    let app = format!("org.trust.foreign{}", std::process::id());
    let (_bin, exe) = exe_for_anyone();
    let p = stranger_primary(&exe, &app);

    let reply = system(&app, "text").send().unwrap_or_else(|e| panic!("root's launch: {e}"));
    assert!(reply.is_from_another_user());
    assert_eq!(reply.stdout(), DEFUSED);
    assert_eq!(reply.stderr(), DEFUSED);
    assert_eq!(reply.exit_code(), 3);
    assert!(!reply.encode().contains('\u{9b}') && !reply.encode().contains('\u{202e}'));

    match system(&app, "reject").send() {
        Err(Error::Rejected(reply)) => assert_eq!(reply.error_message(), Some(DEFUSED)),
        other => panic!("expected the refusal: {other:?}"),
    }

    let (code, stdout, stderr) = launch_prints(&exe, &app);
    assert_eq!(code, Some(3));
    assert_eq!(String::from_utf8_lossy(&stdout), DEFUSED);
    assert!(String::from_utf8_lossy(&stderr).contains(DEFUSED), "{}", String::from_utf8_lossy(&stderr));
    for bytes in [&stdout, &stderr] {
        assert!(!bytes.contains(&0x1b) && !bytes.contains(&0x08), "{}", String::from_utf8_lossy(bytes));
    }
    drop(p);
}

/// The same answer from a System-scope primary of the launch's own user (root, here in
/// this process) is kept as sent: escape sequences and all, as an app's own colours and
/// progress lines must be.
#[test]
fn a_primary_of_the_same_user_keeps_its_escape_sequences() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if skip_unless_root(&format!("to run a primary as uid {STRANGER}")) {
        return;
    }
    let app = format!("org.trust.same{}", std::process::id());
    let primary = match system(&app, "primary").start() {
        Ok(Start::Primary(p)) => p,
        other => panic!("not the primary: {other:?}"),
    };
    let (_bin, exe) = exe_for_anyone();
    let serving = std::thread::spawn(move || {
        for _ in 0..2 {
            let r = primary.recv_timeout(Duration::from_secs(20)).expect("a launch");
            let reply = hostile_reply(&r);
            r.reply(reply).unwrap();
        }
    });
    let reply = system(&app, "text").send().unwrap_or_else(|e| panic!("launch: {e}"));
    assert!(!reply.is_from_another_user());
    assert_eq!((reply.stdout(), reply.stderr(), reply.exit_code()), (HOSTILE, HOSTILE, 3));

    let (code, stdout, stderr) = launch_prints(&exe, &app);
    assert_eq!(code, Some(3));
    assert_eq!(stdout, HOSTILE.as_bytes());
    assert!(stderr.windows(HOSTILE.len()).any(|w| w == HOSTILE.as_bytes()));
    serving.join().unwrap();
}

/// A launch whose own uid reads as the overflow uid (65534: it runs in a user namespace
/// that maps no uid of its own, as `unshare -U` leaves it, or as a container's `nobody`)
/// sees the uid of every user its namespace does not map as 65534 too, a stranger's
/// System-scope primary included. "The same uid" proves nothing then: the stranger's
/// escape sequences must still be defused.
#[test]
fn a_launch_that_reads_as_the_overflow_uid_still_defuses_a_strangers_reply() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if skip_unless_root(&format!("to run a primary as uid {STRANGER}")) {
        return;
    }
    if !Command::new("unshare").args(["-U", "true"]).status().is_ok_and(|s| s.success()) {
        eprintln!("skipping: unshare -U does not work here");
        return;
    }
    let app = format!("org.trust.overflow{}", std::process::id());
    let (_bin, exe) = exe_for_anyone();
    let p = stranger_primary(&exe, &app);
    let (code, stdout, stderr) = launch_prints_under(&["unshare", "-U"], &exe, &app);
    assert_eq!(code, Some(3), "{}", String::from_utf8_lossy(&stderr));
    assert_eq!(String::from_utf8_lossy(&stdout), DEFUSED);
    assert!(!stderr.contains(&0x1b), "{}", String::from_utf8_lossy(&stderr));
    drop(p);
    let _ = std::fs::remove_file(format!("/tmp/solo-instance-system@{app}.lock"));
}
