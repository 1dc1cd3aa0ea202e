//! A primary's life among other processes and cleaners: children forked without exec,
//! a runtime directory removed and made again, a user out of inotify instances. Real
//! processes, readiness by lines and channels, and a Watchdog on each test.
//!
//! | what | tests |
//! |---|---|
//! | fork() without exec, then release | `lifecycle_release_gives_up_primacy_that_a_forked_child_shares` (child: `lifecycle_helper_forking_primary`), `lifecycle_a_forked_child_dropping_its_copy_leaves_the_primary_alone` (child: `lifecycle_helper_child_drops_its_copy`), `lifecycle_a_forked_child_outliving_a_killed_primary_holds_nothing` (child: `lifecycle_helper_forking_primary_to_be_killed`) |
//! | out of descriptors while putting files back | `lifecycle_out_of_descriptors_while_putting_files_back_is_no_step_down` (child: `lifecycle_helper_primary_out_of_descriptors`) |
//! | no inotify instance left | `lifecycle_without_inotify_a_removed_socket_is_bound_again` (child: `lifecycle_helper_primary_without_inotify`) |
//! | the runtime directory removed and made again | `lifecycle_runtime_dir_removed_and_made_again_leaves_one_primary`, `lifecycle_socket_and_lock_removed_together_leave_one_primary`, `lifecycle_primary_steps_down_when_another_locks_the_fresh_lock_file`, `lifecycle_a_cleaner_striking_again_during_the_repair_is_no_step_down`, `lifecycle_launches_during_a_cleaner_never_fail_on_a_vanished_lock_file` |
// Unix. Linux only: the fork tests (fork(2) with a parent-death signal, abstract names)
// and the inotify one. The cleaner tests build for macOS too (a kqueue watch there):
// unproven, never run.
#![cfg(unix)]

mod util;

#[cfg(any(target_os = "linux", target_os = "android"))]
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "android"))]
use solo_instance::Start;
#[cfg(any(target_os = "linux", target_os = "android"))]
use solo_instance::{ConnectOptions, Scope, SocketOptions};
use solo_instance::{Health, Reply, SingleInstance};
use util::solo::{hold_lock, json_line, lib_primary, output, set_mode, text, Fixture};
#[cfg(any(target_os = "linux", target_os = "android"))]
use util::solo::{read_reply, signal};
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

#[cfg(any(target_os = "linux", target_os = "android"))]
const FORK_VAR: &str = "SOLO_LIFECYCLE_FORK";

#[cfg(any(target_os = "linux", target_os = "android"))]
/// `user <dir> <app>` or `system <app>`.
fn instance_of(spec: &str) -> SingleInstance {
    let parts: Vec<&str> = spec.split(' ').collect();
    match parts[..] {
        ["user", dir, app] => SingleInstance::new(app).unwrap().directory(dir),
        ["system", app] => SingleInstance::new(app).unwrap().scope(Scope::System),
        _ => panic!("bad spec {spec:?}"),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
/// Not a test of its own (it returns at once): the helper process of
/// `lifecycle_release_gives_up_primacy_that_a_forked_child_shares`, with
/// `SOLO_LIFECYCLE_FORK=<spec>` (see [`instance_of`]). It becomes the primary, forks a
/// child that sleeps holding every descriptor (a prefork worker, a crash reporter) and
/// dies with it, prints `CHILD <pid>`, connects a launch that waits in the listening
/// socket's backlog, releases the primary, prints `RELEASED`, then `BACKLOG ended` once
/// that launch's connection ends (`BACKLOG waits` if it has not within 5 s), the same
/// (`HELD`) for a launch whose partial request the primary held, and sleeps.
#[test]
fn lifecycle_helper_forking_primary() {
    let Ok(spec) = std::env::var(FORK_VAR) else { return };
    let Ok(Start::Primary(primary)) = instance_of(&spec).argv(["helper"]).start() else {
        println!("ERROR not the primary");
        return;
    };
    let options = if spec.starts_with("system") {
        ConnectOptions::new().socket_options(SocketOptions::ABSTRACT_NAMESPACE)
    } else {
        ConnectOptions::new()
    };
    let name = primary.socket_path().to_string_lossy().into_owned();
    // A launch whose request has not arrived whole, held by the primary's loop (so the
    // child gets a copy of that connection too).
    let held = options.connect(&name).unwrap();
    (&held).write_all(b"{\"v\":1,").unwrap();
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(50)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
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
    // Never accepted: the primary's loop does not run here.
    let waiting = options.connect(&name).unwrap();
    (&waiting).write_all(b"{\"v\":1,\"argv\":[\"waiting\"]}\n").unwrap();
    primary.release();
    println!("RELEASED");
    match read_reply(&waiting, Duration::from_secs(5)) {
        Ok(_) => println!("BACKLOG ended"),
        Err(e) => println!("BACKLOG waits {e}"),
    }
    match read_reply(&held, Duration::from_secs(5)) {
        Ok(_) => println!("HELD ended"),
        Err(e) => println!("HELD waits {e}"),
    }
    loop {
        std::thread::park();
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
/// Runs the forking helper for `spec` and checks that, once it released, a new launch is
/// the primary (the child, which still holds every descriptor the primary had, must hold
/// neither the lock nor the socket nor the abstract name); then that launches reach the
/// new primary, not the child.
fn release_beats_a_forked_child(spec: &str) {
    let p = Proc::spawn(&mut helper("lifecycle_helper_forking_primary", FORK_VAR, spec));
    let child: u32 = line_starting(&p, "CHILD").parse().unwrap();
    line_starting(&p, "RELEASED");
    assert_eq!(line_starting(&p, "BACKLOG"), "ended", "{spec}: a launch in the backlog was left waiting");
    assert_eq!(line_starting(&p, "HELD"), "ended", "{spec}: a launch the primary held was left waiting");
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

#[cfg(any(target_os = "linux", target_os = "android"))]
/// A primary forks a child that sleeps holding the lock file's open
/// file description and the listening socket, then calls `release()`: the next launch is
/// the primary at once, in the User scope (a lock file and a socket file) and in the
/// System scope (an abstract name), and a launch after it reaches it. Launches that waited
/// in the backlog of the released socket, or whose partial request the primary held, are
/// hung up on (they start over), not left waiting.
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

#[cfg(any(target_os = "linux", target_os = "android"))]
const CHILD_DROPS_VAR: &str = "SOLO_LIFECYCLE_CHILD_DROPS";

#[cfg(any(target_os = "linux", target_os = "android"))]
/// Not a test of its own (it returns at once): the helper process of
/// `lifecycle_a_forked_child_dropping_its_copy_leaves_the_primary_alone`, with
/// `SOLO_LIFECYCLE_CHILD_DROPS=<spec>`. It becomes the primary, lets its watch be set,
/// forks a child that drops its copy of the `Primary` (as a child that returns from
/// `main` does) and exits, prints `DROPPED <wait status>`, then serves, printing
/// `REQUEST <arg>` for each launch.
#[test]
fn lifecycle_helper_child_drops_its_copy() {
    let Ok(spec) = std::env::var(CHILD_DROPS_VAR) else { return };
    let Ok(Start::Primary(primary)) = instance_of(&spec).argv(["helper"]).start() else {
        println!("ERROR not the primary");
        return;
    };
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(150)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
    // SAFETY: the child drops the primary (no other thread of this process holds a lock of
    // it, and malloc is fork-safe) and leaves with _exit, never into the test harness.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(primary);
        // SAFETY: ends the child at once, running no exit handler of the parent's.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: `status` is a live local the kernel writes the child's status into.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    println!("DROPPED {status}");
    for request in primary.requests() {
        println!("REQUEST {}", request.args()[0].to_string_lossy());
        request.reply(Reply::ok()).unwrap();
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
/// The other way round: a child forked by the primary drops its copy
/// of the `Primary` and exits. The parent is still the primary: its socket file, socket
/// and lock are its own to let go, so a launch after that reaches it (User and System
/// scope).
#[test]
fn lifecycle_a_forked_child_dropping_its_copy_leaves_the_primary_alone() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("childdrop");
    set_mode(dir.path(), 0o700);
    let pid = std::process::id();
    for spec in [
        format!("user {} org.life.childdrop{pid}", dir.path().display()),
        format!("system org.life.childdropsys{pid}"),
    ] {
        let p = Proc::spawn(&mut helper("lifecycle_helper_child_drops_its_copy", CHILD_DROPS_VAR, &spec));
        assert_eq!(line_starting(&p, "DROPPED"), "0");
        let reply = instance_of(&spec).timeout(Duration::from_secs(3)).argv(["x", "after-the-child"]).send();
        assert!(reply.is_ok(), "{spec}: {reply:?}");
        assert_eq!(line_starting(&p, "REQUEST"), "after-the-child");
    }
}

// ---------------------------------------------------------------------------------------
// The runtime directory removed and made again
// ---------------------------------------------------------------------------------------

/// How each round ended, for the failure messages.
#[derive(Debug, Default)]
struct Outcomes {
    /// The launch reached the running primary.
    forwarded: usize,
    /// The launch locked the fresh lock file first and was the primary for a moment; the
    /// old primary then took the lock after it, and serves on.
    old_took_over: usize,
    /// The launch locked the fresh lock file first, and the old primary stepped down (and
    /// exited).
    old_stepped_down: usize,
}

/// How the launch after a cleaner comes.
#[derive(Clone, Copy, Debug)]
enum Launch {
    /// At once, and quits at once if it is the primary (`solo run --count 0`).
    Brief,
    /// Once the old primary has put its lock file and socket back: it must be forwarded.
    AfterRepair,
    /// At once, and stays if it is the primary (the user started the app again).
    Staying,
}

/// A cleaner has just struck under the primary `p`: one launch must find exactly one
/// primary. Either it is forwarded to `p`, which prints its request; or it becomes the
/// primary (it locked the fresh lock file first), and `p` never lives on unreachable
/// beside it: `p` steps down and exits (status 1), or, when the launch quit at once, `p`
/// may take the lock after it and serve on. Returns the primary for the next round.
fn one_primary_after_cleaning(f: &Fixture, p: Proc, round: &str, how: Launch, seen: &mut Outcomes) -> Proc {
    if let Launch::AfterRepair = how {
        let mut tries = 0;
        while !(f.sock().exists() && f.lock().exists()) {
            tries += 1;
            assert!(tries < 5000, "{round}: the primary never put its socket and lock file back");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if let Launch::Staying = how {
        let launch = Proc::spawn(&mut f.cmd("run", ["--timeout", "5", "--", round]));
        let first = launch.line();
        if first.starts_with("FORWARDED") {
            assert_eq!(json_line(&p.line())["argv"][1], round, "after {seen:?}");
            seen.forwarded += 1;
            return p;
        }
        assert!(first.starts_with("PRIMARY"), "{round}: {first:?}");
        let (status, _) = p.finish();
        assert_eq!(status.code(), Some(1), "a primary that steps down says so");
        seen.old_stepped_down += 1;
        return launch;
    }
    let out = output(&mut f.cmd("run", ["--count", "0", "--timeout", "5", "--", round]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{round}: {stdout:?} {:?} after {seen:?}", text(&out.stderr));
    if stdout.starts_with("FORWARDED") {
        assert_eq!(json_line(&p.line())["argv"][1], round, "after {seen:?}");
        seen.forwarded += 1;
        return p;
    }
    assert!(stdout.starts_with("PRIMARY"), "{round}: {stdout:?}");
    assert!(!matches!(how, Launch::AfterRepair), "{round}: a second primary after {seen:?}");
    // The old primary settles within a few tries: it serves the next launch, or it has
    // exited (its stdout ends) and nothing answers.
    let check = format!("{round}-check");
    for _ in 0..200 {
        let sent = output(&mut f.cmd("send", ["--timeout", "5", "--", &check]));
        match sent.status.code() {
            Some(0) => {
                assert_eq!(json_line(&p.line())["argv"][1], check.as_str(), "after {seen:?}");
                seen.old_took_over += 1;
                return p;
            }
            Some(3) => {}
            _ => panic!("{check}: {:?} {:?}", text(&sent.stdout), text(&sent.stderr)),
        }
        if let Err(why) = p.try_line(Duration::from_millis(20)) {
            if why == "stdout ended" {
                let (status, _) = p.finish();
                assert_eq!(status.code(), Some(1), "a primary that steps down says so");
                seen.old_stepped_down += 1;
                return f.primary(&[]);
            }
        }
    }
    panic!("{round}: the old primary lives on, unreachable, after {seen:?}");
}

/// Each launch in turn.
const LAUNCHES: [Launch; 3] = [Launch::Brief, Launch::AfterRepair, Launch::Staying];

/// `rm -rf $XDG_RUNTIME_DIR; mkdir -m 0700 $XDG_RUNTIME_DIR` under a
/// running primary, 30 times: each time the next launch finds exactly one primary (the
/// old one, which put its directory, lock and socket back, or the launch itself, after
/// which the old one stepped down or took over again), never a second one beside an
/// unreachable old one. Launches come at once or after the repair, and brief or staying
/// (see [`Launch`]).
#[test]
fn lifecycle_runtime_dir_removed_and_made_again_leaves_one_primary() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let f = Fixture::in_namespace("org.life", "rmrf");
    let mut p = f.primary(&[]);
    let mut seen = Outcomes::default();
    for round in 0..30 {
        // The primary may put a new lock file in between (a slow `rm -rf` then fails with
        // "Directory not empty"): the cleaner runs again.
        let mut tries = 0;
        while let Err(e) = std::fs::remove_dir_all(f.dir.path()) {
            tries += 1;
            assert!(tries < 100, "rm -rf: {e}");
        }
        match std::fs::create_dir(f.dir.path()) {
            Ok(()) => set_mode(f.dir.path(), 0o700),
            // The primary made it first (`mkdir -p` would not mind either).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("mkdir: {e}"),
        }
        p = one_primary_after_cleaning(&f, p, &format!("round{round}"), LAUNCHES[round % 3], &mut seen);
    }
    eprintln!("{seen:?}");
}

/// The socket and the lock file removed together (a tmp cleaner), 60
/// times: the next launch finds exactly one primary each time.
#[test]
fn lifecycle_socket_and_lock_removed_together_leave_one_primary() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let f = Fixture::in_namespace("org.life", "rmboth");
    let mut p = f.primary(&[]);
    let mut seen = Outcomes::default();
    for round in 0..60 {
        let _ = std::fs::remove_file(f.sock());
        let _ = std::fs::remove_file(f.lock());
        p = one_primary_after_cleaning(&f, p, &format!("round{round}"), LAUNCHES[round % 3], &mut seen);
    }
    eprintln!("{seen:?}");
}

/// A primary in this process, in `dir`.
/// Through the API: the primary is `Watched` once its watch is set.
/// Its socket and lock file removed, it puts them back (a fresh lock file, locked; a new
/// socket) and a launch reaches it. Removed again, with another process (here: this test,
/// through a file of its own) locking a fresh lock file first, it steps down: `recv`
/// returns `None`, `health()` says why, and it binds no socket.
#[test]
fn lifecycle_primary_steps_down_when_another_locks_the_fresh_lock_file() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("stepdown");
    set_mode(dir.path(), 0o700);
    let app = "org.life.stepdown";
    let (sock, lock) = (dir.path().join(format!("{app}.sock")), dir.path().join(format!("{app}.lock")));
    let primary = lib_primary(dir.path(), app);
    // The watch is set 100 ms after the start, while the loop runs.
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(150)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
    assert_eq!(primary.health(), Health::Watched);

    std::fs::remove_file(&sock).unwrap();
    std::fs::remove_file(&lock).unwrap();
    // The loop sees the removal and puts both back.
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(100)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
    assert!(sock.exists() && lock.exists(), "socket and lock file not put back");
    let launch = std::thread::spawn({
        let dir = dir.path().to_owned();
        move || SingleInstance::new(app).unwrap().directory(&dir).argv(["x", "back"]).send()
    });
    let request = primary.recv_timeout(Duration::from_secs(10)).expect("the launch reached the primary");
    assert_eq!(request.args(), ["back"]);
    request.reply(Reply::ok()).unwrap();
    launch.join().unwrap().unwrap();
    assert_eq!(primary.health(), Health::Watched);

    std::fs::remove_file(&sock).unwrap();
    std::fs::remove_file(&lock).unwrap();
    let _other = hold_lock(&lock);
    let r = primary.recv_timeout(Duration::from_secs(10));
    assert_eq!(
        r.as_ref().err(),
        Some(&solo_instance::RecvTimeoutError::Stopped),
        "a request after stepping down: {:?}",
        r.as_ref().map(|r| r.args().to_vec())
    );
    match primary.health() {
        Health::SteppedDown(why) => assert!(why.contains("another process"), "{why}"),
        other => panic!("health {other:?}"),
    }
    assert!(!sock.exists(), "a primary that stepped down bound its socket again");
    assert_eq!(primary.try_recv().err(), Some(solo_instance::TryRecvError::Stopped));
}

const EMFILE_VAR: &str = "SOLO_LIFECYCLE_EMFILE";

/// Not a test of its own (it returns at once): the helper process of
/// `lifecycle_out_of_descriptors_while_putting_files_back_is_no_step_down`, with
/// `SOLO_LIFECYCLE_EMFILE=<dir> <app>`. A primary whose watch is set removes its own socket
/// and lock file (as a cleaner would), then uses up its descriptors, runs its loop
/// (`HEALTH <health>`), frees them, runs its loop again (`HEALTH <health>`), and says
/// whether both files are back (`BACK <bool>`).
#[test]
fn lifecycle_helper_primary_out_of_descriptors() {
    let Ok(spec) = std::env::var(EMFILE_VAR) else { return };
    let (dir, app) = spec.split_once(' ').unwrap();
    let dir = Path::new(dir);
    let primary = lib_primary(dir, app);
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(150)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
    assert_eq!(primary.health(), Health::Watched);
    let limit = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
    // SAFETY: `limit` is a live, initialized rlimit the call only reads.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    std::fs::remove_file(primary.socket_path()).unwrap();
    std::fs::remove_file(primary.lock_path()).unwrap();
    let mut fill = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fill.push(f);
    }
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(100)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
    println!("HEALTH {:?}", primary.health());
    drop(fill);
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(500)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
    println!("HEALTH {:?}", primary.health());
    println!("BACK {}", primary.socket_path().exists() && primary.lock_path().exists());
}

/// A primary that cannot put its files back for want of descriptors
/// (the app's own load) does not step down: it tries again, and once descriptors are
/// free its lock file and socket are back.
#[test]
fn lifecycle_out_of_descriptors_while_putting_files_back_is_no_step_down() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("emfile");
    set_mode(dir.path(), 0o700);
    let spec = format!("{} org.life.emfile", dir.path().display());
    let p = Proc::spawn(&mut helper("lifecycle_helper_primary_out_of_descriptors", EMFILE_VAR, &spec));
    assert_eq!(line_starting(&p, "HEALTH"), "Watched", "out of descriptors");
    assert_eq!(line_starting(&p, "HEALTH"), "Watched", "descriptors free again");
    assert_eq!(line_starting(&p, "BACK"), "true");
}

// ---------------------------------------------------------------------------------------
// No inotify instance left
// ---------------------------------------------------------------------------------------

#[cfg(any(target_os = "linux", target_os = "android"))]
const NO_INOTIFY_VAR: &str = "SOLO_LIFECYCLE_NO_INOTIFY";

#[cfg(any(target_os = "linux", target_os = "android"))]
/// Not a test of its own (it returns at once): the helper process of
/// `lifecycle_without_inotify_a_removed_socket_is_bound_again`, run as a throwaway user
/// with `SOLO_LIFECYCLE_NO_INOTIFY=<dir> <app>`. It uses up its user's inotify instances
/// (`EXHAUSTED <n>`), becomes the primary in `dir`, prints `HEALTH <health>` once the
/// watch would have been set, then `REQUEST <arg>` for each launch, answering it.
#[test]
fn lifecycle_helper_primary_without_inotify() {
    let Ok(spec) = std::env::var(NO_INOTIFY_VAR) else { return };
    let (dir, app) = spec.split_once(' ').unwrap();
    let mut held = Vec::new();
    loop {
        // SAFETY: no pointer; the descriptor returned is ours, closed at exit.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            println!("EXHAUSTED {} {}", held.len(), std::io::Error::last_os_error());
            break;
        }
        held.push(fd);
        assert!(held.len() < 100_000, "inotify instances without end");
    }
    let primary = lib_primary(Path::new(dir), app);
    println!("PRIMARY");
    // The watch is tried 100 ms after the start, while the loop runs.
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(150)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
    println!("HEALTH {:?}", primary.health());
    for request in primary.requests() {
        println!("REQUEST {}", request.args()[0].to_string_lossy());
        request.reply(Reply::ok()).unwrap();
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
/// A user whose inotify instances are all taken (uid 4271, by a
/// helper that takes them) runs a primary: its `health()` says it has no watch and why,
/// and when a cleaner removes its socket, the periodic check binds it again, so a launch
/// (which waits for it within its 5 s timeout) reaches it.
#[test]
fn lifecycle_without_inotify_a_removed_socket_is_bound_again() {
    use std::os::unix::process::CommandExt;
    let _w = Watchdog::new(Duration::from_secs(60));
    if !util::solo::is_root() {
        eprintln!("skipped: needs root, to use up another user's inotify instances");
        return;
    }
    const UID: u32 = 4271;
    let f = Fixture::in_namespace("org.life", "noinotify");
    std::os::unix::fs::chown(f.dir.path(), Some(UID), Some(UID)).unwrap();
    let spec = format!("{} {}", f.dir.path().display(), f.app);
    let mut cmd = helper("lifecycle_helper_primary_without_inotify", NO_INOTIFY_VAR, &spec);
    cmd.uid(UID).gid(UID);
    let p = Proc::spawn(&mut cmd);
    let exhausted = line_starting(&p, "EXHAUSTED");
    line_starting(&p, "PRIMARY");
    let health = line_starting(&p, "HEALTH");
    assert!(
        health.starts_with("Checked(") && health.contains("max_user_instances"),
        "{health} ({exhausted})"
    );
    std::fs::remove_file(f.sock()).unwrap();
    let out = output(f.cmd("send", ["--timeout", "5", "--", "after-removal"]).uid(UID).gid(UID));
    assert!(out.status.success(), "{:?} {:?}", text(&out.stdout), text(&out.stderr));
    assert_eq!(line_starting(&p, "REQUEST"), "after-removal");
    assert!(f.sock().exists());
}

/// A cleaner that strikes again while the primary puts its files back (`rm -rf dir;
/// mkdir -m 0700 dir`, 3000 times in a row, as a logout script and a tmp cleaner running
/// together): no other process ever locks, so the primary must never step down; once the
/// cleaner is done, its files are back (the last directory watched) and a launch reaches
/// it. The races it catches: a removal between `mkdir` and the lock file's `open`
/// (ENOENT, or the file unlinked as it was opened: "not a plain lock file"), or before the
/// socket's `bind`, must not make it step down (that leaves no primary at all); and the
/// watch must not end on no directory while `health()` says `Watched` (skipping a
/// directory whose device and inode number it recorded: ext4 hands a removed directory's
/// number to the next `mkdir`), or the files are never put back and the next launch is a
/// second primary.
#[test]
fn lifecycle_a_cleaner_striking_again_during_the_repair_is_no_step_down() {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("restrike");
    set_mode(dir.path(), 0o700);
    let app = "org.life.restrike";
    let primary = lib_primary(dir.path(), app);
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(150)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
    assert_eq!(primary.health(), Health::Watched);
    let done = Arc::new(AtomicBool::new(false));
    let cleaner = std::thread::spawn({
        let (dir, done) = (dir.path().to_owned(), Arc::clone(&done));
        move || {
            for _ in 0..3000 {
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            }
            done.store(true, Ordering::SeqCst);
        }
    });
    while !done.load(Ordering::SeqCst) {
        assert_eq!(
            primary.recv_timeout(Duration::from_millis(5)).err(),
            Some(solo_instance::RecvTimeoutError::Timeout)
        );
        if let Health::SteppedDown(why) = primary.health() {
            panic!("stepped down with no other primary: {why}");
        }
    }
    cleaner.join().unwrap();
    let _ = std::fs::DirBuilder::new().mode(0o700).create(dir.path());
    // Put back at the next look: a repair that kept failing waits up to 1 s between two.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while !(primary.socket_path().exists() && primary.lock_path().exists()) {
        assert!(
            std::time::Instant::now() < until,
            "{:?}, but the files are not back: {:?}",
            primary.health(),
            dir.entries()
        );
        assert_eq!(
            primary.recv_timeout(Duration::from_millis(20)).err(),
            Some(solo_instance::RecvTimeoutError::Timeout)
        );
    }
    assert_eq!(primary.health(), Health::Watched);
    let launch = std::thread::spawn({
        let dir = dir.path().to_owned();
        move || SingleInstance::new(app).unwrap().directory(&dir).argv(["x", "after"]).send()
    });
    let request = primary.recv_timeout(Duration::from_secs(10)).expect("the launch reached the primary");
    assert_eq!(request.args(), ["after"]);
    request.reply(Reply::ok()).unwrap();
    launch.join().unwrap().unwrap();
}

/// Launches while a cleaner strikes again and again (`rm -rf dir; mkdir -m 0700 dir`):
/// each is forwarded to the primary, which puts its files back, or fails only with
/// `NoReply`/`NoPrimary` (nothing answered in time), never with an I/O error about a lock
/// file that vanished as it was opened.
#[test]
fn lifecycle_launches_during_a_cleaner_never_fail_on_a_vanished_lock_file() {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _w = Watchdog::new(Duration::from_secs(90));
    let dir = TempDir::new("launchrace");
    set_mode(dir.path(), 0o700);
    let app = "org.life.launchrace";
    let primary = lib_primary(dir.path(), app);
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(150)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
    let done = Arc::new(AtomicBool::new(false));
    let cleaner = std::thread::spawn({
        let (dir, done) = (dir.path().to_owned(), Arc::clone(&done));
        move || {
            for _ in 0..2000 {
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            }
            done.store(true, Ordering::SeqCst);
        }
    });
    let launcher = std::thread::spawn({
        let (dir, done) = (dir.path().to_owned(), Arc::clone(&done));
        move || {
            let mut errors = Vec::new();
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                n += 1;
                let r = SingleInstance::new(app)
                    .unwrap()
                    .directory(&dir)
                    .timeout(Duration::from_millis(500))
                    .argv(["x", "race"])
                    .send();
                match r {
                    Ok(_) | Err(solo_instance::Error::NoReply(_) | solo_instance::Error::NoPrimary) => {}
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (n, errors)
        }
    });
    while !done.load(Ordering::SeqCst) {
        if let Ok(r) = primary.recv_timeout(Duration::from_millis(5)) {
            r.reply(Reply::ok()).unwrap();
        }
    }
    cleaner.join().unwrap();
    while !launcher.is_finished() {
        if let Ok(r) = primary.recv_timeout(Duration::from_millis(5)) {
            r.reply(Reply::ok()).unwrap();
        }
    }
    let (n, errors) = launcher.join().unwrap();
    assert!(
        errors.is_empty(),
        "{} of {n} launches failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const KILLED_VAR: &str = "SOLO_LIFECYCLE_KILLED";

#[cfg(any(target_os = "linux", target_os = "android"))]
/// Not a test of its own (it returns at once): the helper process of
/// `lifecycle_a_forked_child_outliving_a_killed_primary_holds_nothing`, with
/// `SOLO_LIFECYCLE_KILLED=<spec>` (see [`instance_of`]). It becomes the primary, forks a
/// child that sleeps with every descriptor (a prefork worker, a crash reporter; it
/// outlives this process), prints `CHILD <pid>` and waits to be killed.
#[test]
fn lifecycle_helper_forking_primary_to_be_killed() {
    let Ok(spec) = std::env::var(KILLED_VAR) else { return };
    // Held until this process is killed.
    let Ok(Start::Primary(_primary)) = instance_of(&spec).argv(["helper"]).start() else {
        println!("ERROR not the primary");
        return;
    };
    // SAFETY: the child makes only async-signal-safe calls (open, dup2, pause) and never
    // returns into the test harness; the test kills it.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: a NUL-terminated literal; descriptors only. Its stdout and stderr go to
        // /dev/null, so that the test sees this process's output end when it dies.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            loop {
                libc::pause();
            }
        }
    }
    assert!(pid > 0, "fork failed");
    println!("CHILD {pid}");
    loop {
        std::thread::park();
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
/// A primary killed with `kill -9` while a child it forked without exec lives on: the
/// next launch is the primary within its timeout, in the User scope (the child must hold
/// neither the lock file's open description nor the listening socket) and in the System
/// scope. A child that held the lock (and the User scope's socket, which answers no one)
/// would make every launch fail with `NoReply` until it exited.
#[test]
fn lifecycle_a_forked_child_outliving_a_killed_primary_holds_nothing() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("killed");
    set_mode(dir.path(), 0o700);
    let specs = [
        format!("user {} org.life.killed", dir.path().display()),
        format!("system org.life.killed{}", std::process::id()),
    ];
    for spec in &specs {
        let p = Proc::spawn(&mut helper("lifecycle_helper_forking_primary_to_be_killed", KILLED_VAR, spec));
        let child: u32 = line_starting(&p, "CHILD").parse().unwrap();
        signal(p.id(), libc::SIGKILL);
        let _ = p.finish();
        let started = instance_of(spec).timeout(Duration::from_secs(3)).argv(["next"]).start();
        signal(child, libc::SIGKILL);
        match started {
            Ok(Start::Primary(primary)) => drop(primary),
            other => {
                panic!("{spec}: with the killed primary's child alive, no launch is the primary: {other:?}")
            }
        }
    }
    let _ = std::fs::remove_file(format!("/tmp/org.life.killed{}.lock", std::process::id()));
}
