//! Private by default (guarantee 4): another user can neither reach a per-user primary
//! nor serve a launch of this user; a directory another user owns or may write to is
//! refused before anything is sent through it; where the per-user directory lives. The
//! tests that run a child as uid 65534 need root and say they skip otherwise.
//!
//! | layer | tests |
//! |---|---|
//! | location | `another_user_cannot_reach_a_private_primary`, `lib_insecure_directories_are_refused`, `launch_writes_nothing_through_an_unsafe_directory`, `cache_dir_is_xdg_cache_home_then_home_then_the_passwd_entry` |
//! | the primary's uid check | `stranger_is_dropped_by_the_primarys_peer_uid_check` |
//! | the launch's uid check | `launch_refuses_a_primary_served_by_another_user` |
//!
//! Every test has a Watchdog; readiness is a line read or a channel, never a sleep.
#![cfg(unix)]

mod util;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use solo_instance::{Error, LocalServer, SocketOptions};
use util::solo::{builder, is_root, output, private_dir, set_mode, skip_unless_root, text, Fixture};
use util::{example, my_uid_gid, Proc, TempDir, Watchdog};

/// The uid and gid a stranger runs as in the root-only tests.
const NOBODY: u32 = 65534;

/// Copies example `name` into a fresh 0755 directory with mode 0755, so a child running
/// as another user can execute it whatever the permissions above the target directory.
fn example_for_anyone(name: &'static str) -> (TempDir, PathBuf) {
    util::runnable_by_anyone(&example(name), name)
}

/// Guarantee 4: another user cannot hand a launch to root's primary. Here the stranger is
/// stopped by the *location* layer: `XDG_RUNTIME_DIR` is root's 0700 directory, which
/// `solo` refuses to use because another user owns it ("refusing an unsafe location").
/// Even a raw client gets no further: the 0700 directory (and the 0700 socket) deny
/// `connect` with EACCES. The peer-uid check behind both is tested separately below.
#[test]
fn another_user_cannot_reach_a_private_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if skip_unless_root(&format!("to run a child as uid {NOBODY}")) {
        return;
    }
    let f = Fixture::new("private");
    let p = f.primary(&[]);
    let (_bin, solo) = example_for_anyone("solo");
    let (_bin2, echo) = example_for_anyone("echo");

    let out = output(f.cmd_with(&solo, "send", ["--", "from-nobody"]).uid(NOBODY).gid(NOBODY));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout {:?} stderr {stderr:?}", text(&out.stdout));
    assert!(out.stdout.is_empty(), "{:?}", text(&out.stdout));
    assert!(stderr.contains("refusing an unsafe location") && stderr.contains("owned by uid 0"), "{stderr}");

    let raw = output(
        Command::new(&echo)
            .args(["client", &f.sock_name(), r#"{"v":1,"argv":["x","raw-nobody"]}"#])
            .uid(NOBODY)
            .gid(NOBODY),
    );
    let stdout = text(&raw.stdout);
    assert_eq!(raw.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("ERROR 3 "), "expected SocketAccess: {stdout}");

    // Nothing of nobody's reached the primary: its next line is root's request.
    f.send_ok(&p, "from-root");
}

/// Guarantee 4, the primary's own check: with the directory opened (0755) and the socket
/// chmod 0666 by root, a process of uid 65534 can connect, but the primary drops it before
/// reading (no request printed, no reply sent). `LocalSocket::peer_credentials` on an
/// accepted connection reports the stranger's uid and gid, which is what the check uses.
#[test]
fn stranger_is_dropped_by_the_primarys_peer_uid_check() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if skip_unless_root(&format!("to run a child as uid {NOBODY}")) {
        return;
    }
    let (_bin, echo) = example_for_anyone("echo");

    // The mechanism, at the LocalServer level.
    let open = TempDir::new("peercred");
    set_mode(open.path(), 0o755);
    let mut server = LocalServer::new();
    server.set_socket_options(SocketOptions::WORLD_ACCESS);
    let name = open.join("s");
    server.listen(&name).unwrap();
    let client = Proc::spawn(Command::new(&echo).args(["client", &name, "hi"]).uid(NOBODY).gid(NOBODY));
    assert!(server.wait_for_new_connection(Some(Duration::from_secs(20))).unwrap());
    let conn = server.next_pending_connection().unwrap();
    let creds = conn.peer_credentials().unwrap();
    assert_eq!((creds.uid, creds.gid), (Some(NOBODY), Some(NOBODY)), "{creds:?}");
    assert_eq!(creds.pid, Some(client.id()), "{creds:?}");
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).unwrap();
    (&conn).write_all(b"bye\n").unwrap();
    assert_eq!(client.line(), "bye");
    drop(client);

    // The primary's check.
    let f = Fixture::new("peeruid");
    set_mode(f.dir.path(), 0o755);
    let p = f.primary(&[]);
    set_mode(&f.sock(), 0o666);
    let out = output(
        Command::new(&echo)
            .args([
                "client",
                &f.sock_name(),
                r#"{"v":1,"argv":["x","stranger"],"cwd":"/","env":{},"pid":1,"data":null}"#,
            ])
            .uid(NOBODY)
            .gid(NOBODY),
    );
    let stdout = text(&out.stdout);
    // echo prints an empty line (EOF) or an ERROR line (reset): never a reply.
    assert!(!stdout.contains("\"ok\""), "the primary answered a stranger: {stdout}");
    f.send_ok(&p, "from-root");
}

/// Guarantee 4, the launch's side: a launch of uid 65534 whose runtime dir leads (by a
/// symlink) to root's live socket does not hand its arguments to a primary of
/// another user: "served by another user", exit 1, and the primary got nothing.
#[test]
fn launch_refuses_a_primary_served_by_another_user() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if skip_unless_root(&format!("to run a child as uid {NOBODY}")) {
        return;
    }
    let (_bin, solo) = example_for_anyone("solo");
    let f = Fixture::new("theirs");
    set_mode(f.dir.path(), 0o755);
    let p = f.primary(&[]);
    set_mode(&f.sock(), 0o666);
    set_mode(&f.lock(), 0o666);

    let mine = TempDir::new("mine");
    // The launch's own lock file is free (a lock is never followed through a symlink); its
    // socket leads to root's live primary, which it must refuse to talk to.
    std::fs::write(mine.path().join(format!("{}.lock", f.app)), b"").unwrap();
    std::os::unix::fs::symlink(f.sock(), mine.path().join(format!("{}.sock", f.app))).unwrap();
    std::os::unix::fs::lchown(mine.path().join(format!("{}.lock", f.app)), Some(NOBODY), Some(NOBODY))
        .unwrap();
    std::os::unix::fs::lchown(mine.path().join(format!("{}.sock", f.app)), Some(NOBODY), Some(NOBODY))
        .unwrap();
    std::os::unix::fs::chown(mine.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    set_mode(mine.path(), 0o700);

    let mut cmd = f.cmd_with(&solo, "send", ["--", "secret-file"]);
    cmd.env("XDG_RUNTIME_DIR", mine.path()).uid(NOBODY).gid(NOBODY);
    let out = output(&mut cmd);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout {:?} stderr {stderr:?}", text(&out.stdout));
    assert!(stderr.contains("served by another user"), "{stderr}");
    f.send_ok(&p, "from-root");
}

/// Guarantee 4, the directory: one writable by others (0777, 0770), a symlink, or (as
/// root) one owned by another user is refused with `Error::Insecure`, and nothing is
/// created in it. `solo` refuses such an `XDG_RUNTIME_DIR` too.
#[test]
fn lib_insecure_directories_are_refused() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("insecure");
    let expect_insecure = |path: &Path, why: &str| {
        match builder(path, &[]).start() {
            Err(e @ Error::Insecure(_)) => assert!(e.to_string().contains(why), "{e}"),
            other => panic!("{}: expected Insecure: {other:?}", path.display()),
        }
        assert!(matches!(builder(path, &[]).send(), Err(Error::Insecure(_))));
        assert!(matches!(builder(path, &[]).status(), Err(Error::Insecure(_))));
    };
    for mode in [0o777, 0o770, 0o702] {
        set_mode(dir.path(), mode);
        expect_insecure(dir.path(), "writable by others");
        assert!(dir.entries().is_empty(), "{:?}", dir.entries());
    }
    set_mode(dir.path(), 0o700);
    let link = TempDir::new("insecure-link");
    let link_path = link.path().join("runtime");
    std::os::unix::fs::symlink(dir.path(), &link_path).unwrap();
    expect_insecure(&link_path, "not a directory");

    let f = Fixture::new("insecure-solo");
    set_mode(f.dir.path(), 0o777);
    let out = output(&mut f.cmd("run", ["--count", "0"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("refusing an unsafe location"), "{}", text(&out.stderr));
    assert!(f.dir.entries().is_empty(), "{:?}", f.dir.entries());

    if !is_root() {
        eprintln!("skipping the other-owner case: needs root to chown");
        return;
    }
    let theirs = private_dir("insecure-owner");
    std::os::unix::fs::chown(theirs.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    expect_insecure(theirs.path(), &format!("owned by uid {NOBODY}"));
    assert!(theirs.entries().is_empty());
}

/// Guarantee 4 before the directory check: a launch whose directory is unsafe (writable by
/// others) is refused, and writes nothing to what that directory's socket name leads to:
/// here a symlink planted by whoever can write there, to another service of this very
/// user (the peer check passes: same uid; as root, any root daemon's socket would do).
#[test]
fn launch_writes_nothing_through_an_unsafe_directory() {
    use std::os::unix::net::UnixListener;
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("unsafe-forward");
    let other = private_dir("unsafe-forward-target");
    // Another service of this user's, which records the first line of each connection.
    let service_path = other.path().join("service.sock");
    let service = UnixListener::bind(&service_path).unwrap();
    let (tx, lines) = mpsc::channel();
    let recorder = thread::spawn(move || {
        for conn in service.incoming() {
            let mut line = String::new();
            let _ = BufReader::new(conn.unwrap()).read_line(&mut line);
            let end = line.starts_with("END");
            tx.send(line).unwrap();
            if end {
                return;
            }
        }
    });
    std::os::unix::fs::symlink(&service_path, dir.path().join("org.test.Lib.sock")).unwrap();
    set_mode(dir.path(), 0o777);
    match builder(dir.path(), &["secret-arg"]).timeout(Duration::from_secs(5)).send() {
        Err(e @ Error::Insecure(_)) => assert!(e.to_string().contains("writable by others"), "{e}"),
        other => panic!("expected Insecure: {other:?}"),
    }
    // The backlog is in order: a launch that connected is accepted before this marker.
    let mut marker = std::os::unix::net::UnixStream::connect(&service_path).unwrap();
    marker.write_all(b"END\n").unwrap();
    let first = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(first.starts_with("END"), "the launch wrote to a socket through an unsafe directory: {first:?}");
    recorder.join().unwrap();
    set_mode(dir.path(), 0o700);
}

/// Without `XDG_RUNTIME_DIR`, the user scope lives in the cache directory, found as the
/// XDG spec says (the crate reads it itself on Unix, without `directories`): an absolute
/// `$XDG_CACHE_HOME`; a relative one is ignored for `$HOME/.cache`; an empty `$HOME` is
/// ignored for the passwd entry's home.
#[test]
fn cache_dir_is_xdg_cache_home_then_home_then_the_passwd_entry() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("cachedir");
    let uid = my_uid_gid().0;
    let status = |env: &[(&str, &OsStr)]| {
        let mut cmd = f.cmd("status", None::<&str>);
        cmd.env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("HOME")
            .envs(env.iter().copied());
        let out = output(&mut cmd);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        text(&out.stdout).trim_end().strip_prefix("STOPPED ").expect("a STOPPED line").to_owned()
    };
    let sock = |dir: &Path| format!("{}/solo-instance-{uid}/{}.sock", dir.display(), f.app);
    let cache = f.dir.path().join("xdg-cache");
    assert_eq!(status(&[("XDG_CACHE_HOME", cache.as_os_str())]), sock(&cache));
    let home = f.dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let relative = OsStr::new("relative/cache");
    assert_eq!(
        status(&[("XDG_CACHE_HOME", relative), ("HOME", home.as_os_str())]),
        sock(&home.join(".cache"))
    );
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|e| e.get(2) == Some(&&*uid.to_string()));
    let passwd_home = Path::new(entry.expect("a passwd entry")[5]);
    assert_eq!(status(&[("HOME", OsStr::new(""))]), sock(&passwd_home.join(".cache")));
}
