//! SingleInstance (layer 2) with real processes: the `solo` and `editor` examples, spawned
//! with a fresh private `XDG_RUNTIME_DIR` per test so tests are independent and run in
//! parallel, plus in-process tests of the library API.
//!
//! Each of the README's eight guarantees has at least one test here that fails when the
//! guarantee is lost:
//!
//! | guarantee | tests |
//! |---|---|
//! | 1 one primary | `storm_elects_one_primary_and_answers_every_launch` |
//! | 2 no lost launch | `storm_...`, `primary_dying_between_accept_and_reply_makes_the_launch_retry`, `lib_release_hands_*` |
//! | 3 crash recovery | `kill_9_then_the_next_launch_is_primary_at_once`, `a_live_primarys_socket_is_never_removed` |
//! | 4 private | `another_user_cannot_reach_a_private_primary` (location layer), `stranger_is_dropped_by_the_primarys_peer_uid_check` (primary's uid check), `launch_refuses_a_primary_served_by_another_user` (launch's uid check), `lib_insecure_directories_are_refused`, `launch_writes_nothing_through_an_unsafe_directory` |
//! | 5 bad input | `hostile_*` |
//! | 6 lossless | `non_utf8_argv_and_cwd_round_trip_byte_for_byte`, `non_utf8_runtime_dir_still_elects_and_forwards` |
//! | 7 activation | `activation_token_and_startup_id_are_forwarded` |
//! | 8 clear failure | `lock_held_without_socket_fails_clearly`, `lock_held_by_a_server_that_never_replies_fails_clearly` |
//!
//! Also: `status_and_sigterm_cleanup`, `editor_demo_hands_files_over`, and the in-process
//! `lib_*` tests of the API (requests, try_recv with a waker, recv_timeout, Stopper,
//! on_request, release, invalid ids, insecure directories). The uid-65534 tests need root
//! and print a skip notice otherwise.
//!
//! Readiness is always a line read or a channel, never a sleep; every test has a Watchdog.
#![cfg(unix)]

mod util;

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use solo_instance::{
    protocol::decode_os, ConnectOptions, Error, LocalServer, LocalSocket, LocalSocketError, Reply,
    SingleInstance, SocketOptions, Start,
};
use util::solo::{
    forwarded, hold_lock, is_root, json_line, lock_is_free, output, read_reply, set_mode, signal, text,
    Fixture,
};
use util::{example, file_id, my_uid_gid, Proc, TempDir, Watchdog};

/// The uid and gid a stranger runs as in the root-only tests.
const NOBODY: u32 = 65534;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn skip_unless_root() -> bool {
    if is_root() {
        return false;
    }
    eprintln!(
        "skipping {}: needs root (to run a child as uid {NOBODY})",
        thread::current().name().unwrap_or("test")
    );
    true
}

/// Copies example `name` into a fresh 0755 directory with mode 0755, so a child running
/// as another user can execute it whatever the permissions above the target directory.
fn example_for_anyone(name: &'static str) -> (TempDir, PathBuf) {
    let dir = TempDir::new("bin");
    set_mode(dir.path(), 0o755);
    let to = dir.path().join(name);
    util::copy_executable(&example(name), &to);
    (dir, to)
}

// ---------------------------------------------------------------------------------------
// 1. One primary; 2. no lost launch
// ---------------------------------------------------------------------------------------

/// Guarantees 1 and 2: 32 launches started at once, five rounds. Exactly one prints
/// `PRIMARY`; every other is forwarded (ok, exit 0); the primary printed one request per
/// other launch, each launch's unique argument (and pid) exactly once, and exits by itself
/// after the last one (`--count 31`).
#[test]
fn storm_elects_one_primary_and_answers_every_launch() {
    let _w = Watchdog::new(Duration::from_secs(150));
    const LAUNCHES: usize = 32;
    const ROUNDS: usize = 5;
    let f = Fixture::new("storm");
    let count = (LAUNCHES - 1).to_string();
    for round in 0..ROUNDS {
        // All spawned before any is waited for.
        let launches: Vec<(String, Proc)> = (0..LAUNCHES)
            .map(|i| {
                let arg = format!("round{round}-launch{i}");
                // A long timeout: on a loaded machine a launch may wait, but must not give up.
                let p = Proc::spawn(&mut f.cmd("run", ["--count", &count, "--timeout", "60", "--", &arg]));
                (arg, p)
            })
            .collect();
        let firsts: Vec<String> = launches.iter().map(|(_, p)| p.line()).collect();
        let primaries: Vec<usize> = (0..LAUNCHES).filter(|&i| firsts[i].starts_with("PRIMARY ")).collect();
        assert_eq!(primaries.len(), 1, "round {round}: not exactly one primary: {firsts:#?}");
        let primary = primaries[0];
        assert_eq!(firsts[primary], format!("PRIMARY {}", f.sock().display()));

        let mut launches: Vec<Option<(String, Proc)>> = launches.into_iter().map(Some).collect();
        let (_, primary_proc) = launches[primary].take().unwrap();
        let mut expected = std::collections::BTreeMap::new();
        for (i, launch) in launches.iter_mut().enumerate() {
            let Some((arg, p)) = launch.take() else { continue };
            let reply = forwarded(&firsts[i]);
            assert_eq!(reply["ok"], true, "round {round} {arg}: {reply}");
            assert_eq!(reply["exit_code"], 0, "round {round} {arg}: {reply}");
            let pid = p.id();
            let (status, rest) = p.finish();
            assert!(status.success(), "round {round} {arg}: {status}");
            assert!(rest.is_empty(), "round {round} {arg}: extra output {rest:?}");
            expected.insert(arg, pid);
        }
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..LAUNCHES - 1 {
            let request = json_line(&primary_proc.line());
            assert_eq!(request["v"], 2, "{request}"); // a launch of this version speaks version 2
            let arg = request["argv"][1].as_str().unwrap_or_else(|| panic!("{request}")).to_owned();
            let pid = request["pid"].as_u64().unwrap() as u32;
            assert!(seen.insert(arg.clone(), pid).is_none(), "round {round}: {arg} delivered twice");
        }
        let (status, rest) = primary_proc.finish();
        assert!(status.success(), "round {round}: primary {status}");
        assert!(rest.is_empty(), "round {round}: the primary printed more than {count} requests: {rest:?}");
        assert_eq!(seen, expected, "round {round}: requests (arg -> pid) differ from the launches");
        assert!(!f.sock().exists(), "round {round}: the primary left its socket behind");
    }
}

// ---------------------------------------------------------------------------------------
// 2. No lost launch: the primary dies mid-handoff
// ---------------------------------------------------------------------------------------

/// Guarantee 2: the test plays a primary that accepts the launch's connection, reads its
/// request, and goes away without replying (connection dropped, server closed, lock
/// freed). The launch must start over and become the primary itself.
#[test]
fn primary_dying_between_accept_and_reply_makes_the_launch_retry() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("handoff");
    let lock = hold_lock(&f.lock());
    let mut server = LocalServer::new();
    server.set_socket_options(SocketOptions::USER_ACCESS);
    server.listen(&f.sock_name()).unwrap();

    let launch = Proc::spawn(&mut f.cmd("run", ["--count", "0", "--timeout", "10", "--", "hello"]));
    assert!(
        server.wait_for_new_connection(Some(Duration::from_secs(20))).unwrap(),
        "the launch never connected"
    );
    let conn = server.next_pending_connection().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).unwrap();
    let request = json_line(&line);
    assert_eq!(request["argv"][1], "hello", "{request}");
    assert_eq!(request["pid"], launch.id(), "{request}");

    // Die between accept and reply.
    let died = Instant::now();
    drop(conn);
    server.close();
    drop(lock);

    assert_eq!(launch.line(), format!("PRIMARY {}", f.sock().display()), "stderr: {}", launch.stderr());
    assert!(died.elapsed() < Duration::from_secs(8), "the launch took {:?} to take over", died.elapsed());
    let (status, rest) = launch.finish();
    assert!(status.success(), "{status}");
    assert!(rest.is_empty(), "{rest:?}");
}

// ---------------------------------------------------------------------------------------
// 3. Crash recovery
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// 4. Private by default
// ---------------------------------------------------------------------------------------

/// Guarantee 4: another user cannot hand a launch to root's primary. Here the stranger is
/// stopped by the *location* layer: `XDG_RUNTIME_DIR` is root's 0700 directory, which
/// `solo` refuses to use because another user owns it ("refusing an unsafe location").
/// Even a raw client gets no further: the 0700 directory (and the 0700 socket) deny
/// `connect` with EACCES. The peer-uid check behind both is tested separately below.
#[test]
fn another_user_cannot_reach_a_private_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if skip_unless_root() {
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
    if skip_unless_root() {
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
    if skip_unless_root() {
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

// ---------------------------------------------------------------------------------------
// 5. Bad input never hurts the primary
// ---------------------------------------------------------------------------------------

fn hostile_primary(tag: &str, timeout: &str) -> (Fixture, Proc) {
    let f = Fixture::new(tag);
    let p = f.primary(&["--timeout", timeout]);
    (f, p)
}

/// One raw exchange: connect, write `request`, read the reply line (decoded).
fn raw_exchange(f: &Fixture, request: &[u8]) -> Value {
    let conn = LocalSocket::connect(&f.sock_name()).unwrap();
    (&conn).write_all(request).unwrap();
    let reply = read_reply(&conn, Duration::from_secs(20)).unwrap();
    json_line(&reply.unwrap_or_else(|| panic!("no reply to {:?}", text(request))))
}

fn assert_error_reply(reply: &Value, needle: &str) {
    assert_eq!(reply["v"], 1, "{reply}");
    assert_eq!(reply["ok"], false, "{reply}");
    let error = reply["error"].as_str().unwrap_or_else(|| panic!("no error text: {reply}"));
    assert!(error.contains(needle), "error {error:?} does not mention {needle:?}");
}

/// Guarantee 5: malformed requests get an error reply naming the problem; the primary
/// prints nothing for them and serves the next launch.
#[test]
fn hostile_malformed_json_gets_an_error_reply() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let (f, p) = hostile_primary("malformed", "2");
    for (request, needle) in [
        (&b"this is not json\n"[..], "malformed JSON"),
        (b"{\"v\":1,\"argv\":[\"x\"\n", "malformed JSON"),
        (b"\xff\xfe\n", "malformed JSON"),
        (b"[1,2]\n", "must be a JSON object"),
        (b"{\"v\":1}\n", "argv"),
        (b"{\"v\":1,\"argv\":[{\"bytes\":[300]}]}\n", "0-255"),
    ] {
        assert_error_reply(&raw_exchange(&f, request), needle);
    }
    // 200-deep nesting: serde_json recurses 128 levels on a reader thread before it gives
    // up; a 128 KiB stack aborted the (debug) primary here (found by fuzz/).
    let deep = format!("{{\"v\":1,\"argv\":[],\"data\":{}{}}}\n", "[".repeat(200), "]".repeat(200));
    assert_error_reply(&raw_exchange(&f, deep.as_bytes()), "recursion limit");
    f.send_ok(&p, "after-malformed");
}

/// Guarantee 5: an unknown protocol version gets an error naming the version.
#[test]
fn hostile_unknown_version_gets_an_error_reply() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let (f, p) = hostile_primary("version", "2");
    let reply = raw_exchange(&f, b"{\"v\":99,\"argv\":[\"x\",\"y\"],\"cwd\":\"/\"}\n");
    assert_error_reply(&reply, "version");
    assert!(reply["error"].as_str().unwrap().contains("99"), "{reply}");
    let reply = raw_exchange(&f, b"{\"argv\":[\"x\"]}\n");
    assert_error_reply(&reply, "version");
    f.send_ok(&p, "after-version");
}

/// Guarantee 5: `data` that a `serde_json::Value` cannot hold (a number beyond f64, a
/// 300,000-digit integer, lone surrogates in a string or a key) gets an `ok:false` reply
/// naming `data`, instead of an `ok:true` and a `null` for the app; the primary prints
/// nothing for them (its next line is the next good launch's). The large one goes through
/// the decoder thread, the others through the fast path.
#[test]
fn hostile_data_a_value_cannot_hold_gets_an_error_reply() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let (f, p) = hostile_primary("unholdable", "2");
    let huge = format!("1{}", "0".repeat(300_000));
    for (data, needle) in [
        ("1e400", "number out of range"),
        (&huge[..], "number out of range"),
        ("\"\\udfff\"", "lone surrogate"),
        ("{\"\\ud800\":1}", "lone surrogate"),
    ] {
        let line = format!("{{\"v\":1,\"argv\":[\"x\"],\"data\":{data}}}\n");
        let reply = raw_exchange(&f, line.as_bytes());
        assert_error_reply(&reply, needle);
        assert_error_reply(&reply, "\"data\"");
    }
    f.send_ok(&p, "after-unholdable");
}

/// What the primary accepts, `Request::data` gives exactly: a number just below f64's
/// limit, one that underflows to 0, a surrogate pair, a 300,000-digit fraction; and what
/// it refuses reaches the app not at all (the raw client gets `ok:false`).
#[test]
fn lib_request_data_is_exactly_what_decode_accepted() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("data-exact");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let name = primary.socket_path().to_string_lossy().into_owned();
    let tiny = format!("0.{}1", "0".repeat(300_000));
    let good = format!("[1.7976931348623157e308,1e-400,\"\\ud83d\\ude00\",{{\"\\u00e9\":{tiny}}}]");
    let lines = [
        "{\"v\":1,\"argv\":[\"bad\"],\"data\":[1,-1e400]}".to_owned(),
        "{\"v\":1,\"argv\":[\"bad\"],\"data\":{\"k\":\"\\udc00\"}}".to_owned(),
        format!("{{\"v\":1,\"argv\":[\"good\"],\"data\":{good}}}"),
    ];
    let client = thread::spawn(move || {
        lines
            .iter()
            .map(|line| {
                let conn = LocalSocket::connect(&name).unwrap();
                (&conn).write_all(format!("{line}\n").as_bytes()).unwrap();
                json_line(&read_reply(&conn, Duration::from_secs(20)).unwrap().expect("a reply"))
            })
            .collect::<Vec<_>>()
    });
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("the good request");
    assert_eq!(request.argv()[0], "good", "a refused request reached the app");
    let want: Value = serde_json::from_str(&good).unwrap();
    assert_eq!(request.data(), &want);
    assert_eq!(request.data()[3]["é"].as_f64(), Some(0.0));
    request.reply(Reply::ok()).unwrap();
    let replies = client.join().unwrap();
    assert_error_reply(&replies[0], "number out of range");
    assert_error_reply(&replies[1], "lone surrogate");
    assert_eq!(replies[2]["ok"], true, "{}", replies[2]);
}

/// Guarantee 5: a 100 MiB line is cut off at the limit: "too large" reply or a closed
/// connection, within seconds, and the primary goes on serving.
#[test]
fn hostile_oversized_message_is_refused() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let (f, p) = hostile_primary("oversized", "2");
    let conn = LocalSocket::connect(&f.sock_name()).unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let reply = thread::scope(|s| {
        s.spawn(|| {
            let chunk = vec![b'a'; 1 << 20];
            for _ in 0..100 {
                // EPIPE / reset once the primary gives up on us: expected.
                if (&conn).write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = (&conn).write_all(b"\n");
        });
        read_reply(&conn, Duration::from_secs(20))
    });
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    match reply {
        Ok(Some(line)) => assert_error_reply(&json_line(&line), "too large"),
        Ok(None) => {} // closed without a reply: allowed
        Err(e) => panic!("reading the reply: {e}"),
    }
    f.send_ok(&p, "after-oversized");
}

/// Guarantee 5: a client that connects and says nothing does not hold up others: a normal
/// launch is served meanwhile (before the silent one's deadline passes), and the silent
/// one then gets an error reply.
#[test]
fn hostile_silent_client_does_not_block_others() {
    let _w = Watchdog::new(Duration::from_secs(60));
    // The primary reads a request for at most 2 s, whatever its own timeout.
    let (f, p) = hostile_primary("silent", "5");
    let connected = Instant::now();
    let silent = LocalSocket::connect(&f.sock_name()).unwrap();
    // The silent client's reply is read (and timed) on its own thread.
    let (tx, silent_reply) = mpsc::channel();
    let reader = thread::spawn(move || {
        let reply = read_reply(&silent, Duration::from_secs(20));
        tx.send((reply.map_err(|e| e.to_string()), connected.elapsed())).unwrap();
        silent
    });
    f.send_ok(&p, "while-silent");
    let served = connected.elapsed();
    let (reply, replied) =
        silent_reply.recv_timeout(Duration::from_secs(30)).expect("no reply thread result");
    let reply = reply.unwrap().expect("an error reply, not a close");
    assert_error_reply(&json_line(&reply), "no request within 2.0s");
    assert!(
        served < replied,
        "the launch was served at {served:?}, only after the silent client was answered at {replied:?}"
    );
    assert!(replied >= Duration::from_millis(1900), "the silent client was cut off after {replied:?}");
    drop(reader.join().unwrap());
    f.send_ok(&p, "after-silent");
}

/// Guarantee 5: 200 connections opened at once and held (silent, half a request, garbage,
/// closed at once): a normal launch is still served, every hostile connection ends with
/// an error reply or a close, and the primary serves on.
#[test]
fn hostile_flood_does_not_starve_a_normal_launch() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let (f, p) = hostile_primary("flood", "2");
    let name = f.sock_name();
    // Opening all 200 takes a moment with readers working in parallel; a primary that
    // reads one connection at a time would need minutes (2 s per silent one).
    let deadline = Instant::now() + Duration::from_secs(40);
    let held: Vec<(usize, LocalSocket)> = thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let name = &name;
                s.spawn(move || {
                    let mut held = Vec::new();
                    for i in (t * 50)..(t * 50 + 50) {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let conn = ConnectOptions::new()
                            .timeout(Some(left))
                            .connect(name)
                            .unwrap_or_else(|e| panic!("flood connection {i} not taken within 40 s: {e}"));
                        match i % 4 {
                            0 => {}                                                  // silent
                            1 => (&conn).write_all(b"{\"v\":1,\"argv\":[").unwrap(), // half a request
                            2 => (&conn).write_all(b"garbage\n").unwrap(),           // malformed
                            _ => continue,                                           // closed at once
                        }
                        held.push((i, conn));
                    }
                    held
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(held.len(), 150);

    // All 200 opened, 150 still held: a normal launch gets through.
    let out = output(&mut f.cmd("send", ["--timeout", "60", "--", "during-flood"]));
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    assert_eq!(forwarded(&text(&out.stdout))["ok"], true);
    assert_eq!(json_line(&p.line())["argv"][1], "during-flood");

    for (i, conn) in &held {
        match read_reply(conn, Duration::from_secs(30)) {
            Ok(Some(line)) => {
                let needle = if i % 4 == 2 { "malformed JSON" } else { "no request within 2.0s" };
                assert_error_reply(&json_line(&line), needle);
            }
            Ok(None) => panic!("flood connection {i} closed without the error reply"),
            Err(e) => panic!("flood connection {i}: {e}"),
        }
    }
    drop(held);
    f.send_ok(&p, "after-flood");
}

/// Guarantee 5 and a clean exit: SIGTERM while 100 silent connections are held (readers
/// waiting on them with a 30 s deadline, the acceptor waiting for a free reader) still
/// ends the primary at once, socket removed and lock freed.
#[test]
fn hostile_sigterm_during_a_flood_exits_cleanly() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let (f, p) = hostile_primary("floodterm", "30");
    let held: Vec<LocalSocket> = (0..100)
        .map(|i| {
            ConnectOptions::new()
                .timeout(Some(Duration::from_secs(20)))
                .connect(&f.sock_name())
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    // (No launch is served meanwhile here: more silent clients than reader threads, each
    // with a 30 s deadline, delay others until the deadline; a bounded, same-user case.)
    let started = Instant::now();
    signal(p.id(), libc::SIGTERM);
    let (status, rest) = p.finish();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(took < Duration::from_secs(10), "exit took {took:?} (waited for the silent clients?)");
    assert!(!f.sock().exists(), "the socket file is left behind");
    assert!(lock_is_free(&f.lock()));
    drop(held);
}

// ---------------------------------------------------------------------------------------
// 6. Lossless; 7. activation
// ---------------------------------------------------------------------------------------

/// Guarantee 6: an argument with bytes 0xFF 0xFE and a working directory whose name is
/// not UTF-8 arrive byte for byte (`{"base64":"..."}`), beside plain Unicode strings.
#[test]
fn non_utf8_argv_and_cwd_round_trip_byte_for_byte() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("bytes");
    let p = f.primary(&[]);
    let cwd = f.dir.path().join(OsStr::from_bytes(b"cwd-\xff\xfe-\xc3("));
    std::fs::create_dir(&cwd).unwrap();
    let cwd = std::fs::canonicalize(&cwd).unwrap();
    let odd = OsStr::from_bytes(b"file-\xff\xfe.txt");
    let unicode = "ü ✓\n\"quoted\"";

    let mut cmd = f.cmd("send", [OsStr::new("--"), odd, OsStr::new(unicode), OsStr::new("")]);
    cmd.current_dir(&cwd);
    let out = output(&mut cmd);
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    assert_eq!(forwarded(&text(&out.stdout))["ok"], true);

    let request = json_line(&p.line());
    let argv = request["argv"].as_array().unwrap();
    assert_eq!(argv.len(), 4, "{request}");
    assert_eq!(argv[1], json!({ "base64": "ZmlsZS3//i50eHQ=" }), "{request}");
    assert_eq!(decode_os(&argv[1]).unwrap().as_bytes(), odd.as_bytes());
    assert_eq!(argv[2], unicode, "Unicode stays a plain string");
    assert_eq!(argv[3], "");
    assert!(request["cwd"].get("base64").is_some(), "{request}");
    let got: OsString = decode_os(&request["cwd"]).unwrap();
    assert_eq!(got.as_bytes(), cwd.as_os_str().as_bytes(), "cwd differs");
}

/// Guarantee 6 for the location itself: a runtime directory whose path is not UTF-8 still
/// works (the socket gets a name the socket API can carry), and two such directories
/// differing only in their non-UTF-8 bytes stay independent.
#[test]
fn non_utf8_runtime_dir_still_elects_and_forwards() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let parent = TempDir::new("rtbytes");
    let make = |bytes: &[u8]| {
        let dir = parent.path().join(OsStr::from_bytes(bytes));
        std::fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o700);
        dir
    };
    let (a, b) = (make(b"rt-\xff"), make(b"rt-\xfe"));
    let solo = |dir: &Path, sub: &str, args: &[&str]| {
        let mut cmd = Command::new(example("solo"));
        cmd.args([sub, "org.test.bytes"]).args(args).env("XDG_RUNTIME_DIR", dir).current_dir("/");
        cmd
    };
    let pa = Proc::spawn(&mut solo(&a, "run", &[]));
    let line = pa.line();
    assert!(line.starts_with("PRIMARY "), "{line}; stderr: {}", pa.stderr());
    // A different directory: its own primary, not a launch forwarded to the first.
    let pb = Proc::spawn(&mut solo(&b, "run", &[]));
    let line_b = pb.line();
    assert!(line_b.starts_with("PRIMARY "), "{line_b}; stderr: {}", pb.stderr());
    assert_ne!(line, line_b);
    for (dir, p, tag) in [(&a, &pa, "to-a"), (&b, &pb, "to-b")] {
        let out = output(&mut solo(dir, "send", &["--", tag]));
        assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
        assert_eq!(json_line(&p.line())["argv"][1], tag);
    }
    for p in [pa, pb] {
        signal(p.id(), libc::SIGTERM);
        assert!(p.finish().0.success());
    }
    // The sockets were in fallback directories made for these runtime directories (named
    // after a secret kept in each): not to be left behind by a test.
    for l in [&line, &line_b] {
        let _ = std::fs::remove_dir(Path::new(l.trim_start_matches("PRIMARY ")).parent().unwrap());
    }
}

/// Guarantee 7: `XDG_ACTIVATION_TOKEN` and `DESKTOP_STARTUP_ID` are forwarded; nothing else
/// of the environment is (that is opt-in).
#[test]
fn activation_token_and_startup_id_are_forwarded() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("activate");
    let p = f.primary(&[]);
    let mut cmd = f.cmd("send", ["--", "raise"]);
    cmd.env("XDG_ACTIVATION_TOKEN", "tok123").env("DESKTOP_STARTUP_ID", "id456").env("SOLO_TEST_SECRET", "s");
    let out = output(&mut cmd);
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    let request = json_line(&p.line());
    assert_eq!(request["argv"][1], "raise");
    assert_eq!(request["env"], json!({"XDG_ACTIVATION_TOKEN": "tok123", "DESKTOP_STARTUP_ID": "id456"}));

    let request = f.send_ok(&p, "no-token");
    assert_eq!(request["env"], json!({}), "{request}");
}

// ---------------------------------------------------------------------------------------
// 8. Clear failure
// ---------------------------------------------------------------------------------------

const NO_REPLY_1S: &str = "a primary instance holds the lock but did not answer within 1.0s";

fn assert_no_reply(out: &Output, took: Duration) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout {:?} stderr {stderr:?}", text(&out.stdout));
    assert!(stderr.contains(NO_REPLY_1S), "{stderr}");
    assert!(out.stdout.is_empty(), "{:?}", text(&out.stdout));
    assert!(took >= Duration::from_millis(900), "gave up after {took:?}, before its timeout");
    assert!(took < Duration::from_secs(3), "took {took:?}");
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

// ---------------------------------------------------------------------------------------
// status, signals, the editor demo
// ---------------------------------------------------------------------------------------

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

/// The demo: the first `editor` opens its files and stays; a later one hands its file over
/// (resolved against its own directory) and prints the primary's answer; `--quit` ends it.
#[test]
fn editor_demo_hands_files_over() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("editor");
    let work = f.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("b.txt"), "one\ntwo\n").unwrap();
    let editor = |args: &[&str]| {
        let mut cmd = Command::new(example("editor"));
        cmd.args(args)
            .env("XDG_RUNTIME_DIR", f.dir.path())
            .env_remove("XDG_ACTIVATION_TOKEN")
            .env_remove("DESKTOP_STARTUP_ID")
            .current_dir(&work);
        cmd
    };
    let primary = Proc::spawn(&mut editor(&["a.txt"]));
    assert!(primary
        .line()
        .starts_with(&format!("editor: running as the primary instance (pid {})", primary.id())));
    primary.line();
    assert_eq!(primary.line(), format!("editor: opened {} (new file)", work.join("a.txt").display()));

    let out = output(editor(&["b.txt"]).env("XDG_ACTIVATION_TOKEN", "tok"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("editor: opened b.txt in the running editor (pid {})\n", primary.id())
    );
    assert_eq!(primary.line(), "editor: raising the window (activation token tok)");
    assert_eq!(primary.line(), format!("editor: opened {} (2 lines)", work.join("b.txt").display()));

    let out = output(&mut editor(&["--quit"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "editor: the editor is closing\n");
    let (status, rest) = primary.finish();
    assert!(status.success());
    assert_eq!(rest, ["editor: closed 2 file(s)"]);
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

/// The README's quick start is `examples/quickstart.rs` (the test checks the text), and
/// as a forwarded launch it prints what the primary answered, on stdout and stderr, and
/// exits with its code; a refusal (`Reply::error`) prints the primary's message and exits 1.
#[test]
fn quick_start_forwarded_launch_prints_the_answer_and_exits_with_its_code() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let program = include_str!("../examples/quickstart.rs");
    let code = &program[program.find("use std::process").unwrap()..];
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```rust,no_run\n{code}```")),
        "the README's quick start is not examples/quickstart.rs"
    );
    let f = Fixture::in_namespace("org.example", "Editor");
    let primary =
        primary_of(SingleInstance::new(&f.app).unwrap().directory(f.dir.path()).argv(["p"]).start());
    let launch = |arg: &str| {
        let mut cmd = Command::new(example("quickstart"));
        cmd.arg(arg).env("XDG_RUNTIME_DIR", f.dir.path());
        thread::spawn(move || output(&mut cmd))
    };

    let answered = launch("b.txt");
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("the quick start's launch");
    assert_eq!(request.args(), ["b.txt"]);
    request.reply(Reply::exit(3).with_stdout("opened b.txt\n").with_stderr("b.txt is read-only\n")).unwrap();
    let out = answered.join().unwrap();
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("opened b.txt\n".into(), "b.txt is read-only\n".into())
    );
    assert_eq!(out.status.code(), Some(3));

    let refused = launch("c.txt");
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("the quick start's launch");
    request.reply(Reply::error("c.txt: no such file")).unwrap();
    let out = refused.join().unwrap();
    assert!(text(&out.stderr).contains("c.txt: no such file"), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(1));
}

// ---------------------------------------------------------------------------------------
// The library API, in process
// ---------------------------------------------------------------------------------------

fn private_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    set_mode(dir.path(), 0o700);
    dir
}

fn builder(dir: &Path, args: &[&str]) -> SingleInstance {
    SingleInstance::new("org.test.Lib")
        .unwrap()
        .directory(dir)
        .timeout(Duration::from_secs(20))
        .argv(std::iter::once("prog").chain(args.iter().copied()))
}

/// `builder` for the System scope (on Linux an abstract socket: no directory, and no
/// removal watch), app id `id`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn system_builder(id: &str, args: &[&str]) -> SingleInstance {
    SingleInstance::new(id)
        .unwrap()
        .scope(solo_instance::Scope::System)
        .timeout(Duration::from_secs(20))
        .argv(std::iter::once("prog").chain(args.iter().copied()))
}

fn primary_of(start: solo_instance::Result<Start>) -> solo_instance::Primary {
    match start {
        Ok(Start::Primary(p)) => p,
        Ok(Start::Forwarded(r)) => panic!("forwarded, not primary: {r:?}"),
        Err(e) => panic!("start: {e}"),
    }
}

fn reply_of(start: solo_instance::Result<Start>) -> Reply {
    match start {
        Ok(Start::Forwarded(r)) => r,
        Ok(Start::Primary(p)) => panic!("became primary: {p:?}"),
        Err(e) => panic!("start: {e}"),
    }
}

/// A launch on its own thread: its `start()` result.
fn launch(dir: &Path, args: &[&str]) -> thread::JoinHandle<solo_instance::Result<Start>> {
    let b = builder(dir, args);
    thread::spawn(move || b.start())
}

/// `requests()`, `reply` with exit code, output and data, the request's accessors, status,
/// `send()` with and without a primary, and error replies (`Error::Rejected`).
#[test]
fn lib_primary_serves_requests_and_replies() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-serve");
    assert!(matches!(builder(dir.path(), &[]).send(), Err(Error::NoPrimary)));
    let status = builder(dir.path(), &[]).status().unwrap();
    assert!(!status.running);

    let primary = primary_of(builder(dir.path(), &["first"]).start());
    assert_eq!(primary.socket_path(), dir.path().join("org.test.Lib.sock"));
    assert_eq!(primary.lock_path(), dir.path().join("org.test.Lib.lock"));
    assert_eq!(primary.app_id(), "org.test.Lib");
    let status = builder(dir.path(), &[]).status().unwrap();
    assert!(status.running);
    assert_eq!(status.pid, Some(std::process::id()));
    assert_eq!(status.socket, primary.socket_path());

    let b = builder(dir.path(), &["second", "x"]).data(json!({"k": 1}));
    let l = thread::spawn(move || b.start());
    let request = primary.requests().next().unwrap();
    assert_eq!(request.args(), [OsString::from("second"), OsString::from("x")]);
    assert_eq!(request.argv()[0], "prog");
    assert_eq!(request.pid(), Some(std::process::id()));
    assert_eq!(request.data(), &json!({"k": 1}));
    assert_eq!(request.cwd(), Some(std::env::current_dir().unwrap().as_path()));
    assert_eq!(request.peer_credentials().and_then(|c| c.uid), Some(unsafe { libc::geteuid() }));
    assert_eq!(json_line(request.raw_json())["argv"][1], "second");
    request.reply(Reply::exit(3).with_stdout("out").with_stderr("err").with_data(json!([1]))).unwrap();
    let reply = reply_of(l.join().unwrap());
    assert!(reply.is_ok());
    assert_eq!((reply.exit_code(), reply.stdout(), reply.stderr()), (3, "out", "err"));
    assert_eq!(reply.data(), &json!([1]));

    // send() forwards too.
    let b = builder(dir.path(), &["via-send"]);
    let l = thread::spawn(move || b.send());
    let request = primary.recv().unwrap();
    assert_eq!(request.args(), [OsString::from("via-send")]);
    request.reply(Reply::ok()).unwrap();
    assert_eq!(l.join().unwrap().unwrap().exit_code(), 0);

    // A refusal, and a request dropped unanswered: the launch gets an error, never a hang.
    let l = launch(dir.path(), &["refuse-me"]);
    primary.recv().unwrap().reply(Reply::error("nope")).unwrap();
    match l.join().unwrap() {
        Err(Error::Rejected(why)) => assert_eq!(&*why, "nope"),
        other => panic!("expected Rejected: {other:?}"),
    }
    let l = launch(dir.path(), &["drop-me"]);
    drop(primary.recv().unwrap());
    match l.join().unwrap() {
        Err(Error::Rejected(why)) => assert!(why.contains("without answering"), "{why}"),
        other => panic!("expected Rejected: {other:?}"),
    }
}

/// `try_recv` for GUI loops, woken by `set_waker`; `recv_timeout`; a `Stopper` ends
/// `requests()` from another thread.
#[test]
fn lib_try_recv_waker_recv_timeout_and_stopper() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-poll");
    let primary = primary_of(builder(dir.path(), &[]).start());
    assert!(primary.try_recv().is_none());
    let started = Instant::now();
    assert!(primary.recv_timeout(Duration::from_millis(100)).is_none());
    assert!(started.elapsed() >= Duration::from_millis(100));

    let (tx, woken) = mpsc::channel();
    primary.set_waker(move || {
        let _ = tx.send(());
    });
    let l = launch(dir.path(), &["polled"]);
    woken.recv_timeout(Duration::from_secs(20)).expect("the waker was not called");
    let request = primary.try_recv().expect("a request is ready once the waker ran");
    assert_eq!(request.args(), [OsString::from("polled")]);
    request.reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());

    let l = launch(dir.path(), &["timed"]);
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("recv_timeout got nothing");
    assert_eq!(request.args(), [OsString::from("timed")]);
    request.reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());

    // The primary (not Sync) moves to a thread blocked in requests(); stop it from here.
    let stopper = primary.stopper();
    let (tx, done) = mpsc::channel();
    let serving = thread::spawn(move || {
        let n = primary.requests().count();
        tx.send(n).unwrap();
        primary
    });
    stopper.stop();
    assert_eq!(done.recv_timeout(Duration::from_secs(20)).expect("requests() did not end"), 0);
    let primary = serving.join().unwrap();
    assert!(primary.recv().is_none());
    assert!(primary.recv_timeout(Duration::from_secs(1)).is_none());
}

/// Without a waker, the app's own thread serves: `try_recv` alone (a GUI that polls each
/// frame) accepts and reads a launch, and a `Stopper` wakes a `requests()` that waits in
/// the primary's loop (poll(2) on the socket) on another thread. The System scope's
/// abstract socket has no removal watch, so no timer wakes that poll(2) either.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn lib_try_recv_alone_serves_and_stop_wakes_a_serving_recv() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let id = format!("org.test.SelfServed{}", std::process::id());
    let app = |args: &[&str]| system_builder(&id, args);
    let primary = primary_of(app(&[]).start());
    let launching = app(&["polled"]);
    let l = thread::spawn(move || launching.start());
    let request = loop {
        // Polling, as a frame loop does; the watchdog ends a test that never gets it.
        if let Some(r) = primary.try_recv() {
            break r;
        }
        thread::yield_now();
    };
    assert_eq!(request.args(), [OsString::from("polled")]);
    request.reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());

    let stopper = primary.stopper();
    let (tx, done) = mpsc::channel();
    let (served_tx, served) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let serving = thread::spawn(move || {
        // "/proc/thread-self" links to "PID/task/TID".
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        tid_tx.send(me.file_name().unwrap().to_string_lossy().into_owned()).unwrap();
        let mut n = 0;
        for request in primary.requests() {
            request.reply(Reply::ok()).unwrap();
            n += 1;
            served_tx.send(()).unwrap();
        }
        tx.send(n).unwrap();
    });
    let launching = app(&["served"]);
    let l = thread::spawn(move || launching.start());
    served.recv_timeout(Duration::from_secs(20)).expect("requests() did not serve the launch");
    assert!(reply_of(l.join().unwrap()).is_ok());
    // Stop only once the serving thread sleeps in poll(2) again (the kernel says where it
    // sleeps), so that the stop has to wake it.
    let tid = tid_rx.recv().unwrap();
    let wchan = format!("/proc/self/task/{tid}/wchan");
    while !std::fs::read_to_string(&wchan).unwrap_or_default().contains("poll") {
        thread::yield_now();
    }
    stopper.stop();
    assert_eq!(done.recv_timeout(Duration::from_secs(20)).expect("stop did not wake requests()"), 1);
    serving.join().unwrap();
}

/// The crate's threads block the app's signals, so a process-directed SIGINT or SIGTERM
/// reaches the app's own handling thread (or its signalfd) and never one of ours: the
/// driver thread a waker starts blocks both, though this thread blocks neither.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn crate_threads_block_the_apps_signals() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-quiet-threads");
    let primary = primary_of(builder(dir.path(), &[]).start());
    primary.set_waker(|| {});
    // And the thread `on_request` starts, which serves the socket of its primary.
    let dir2 = private_dir("lib-quiet-threads-callback");
    let callback = primary_of(builder(dir2.path(), &[]).start()).on_request(|_| {});
    let (blocked, int_term) = (util::blocked_signals, util::INT_TERM);
    let mine = blocked(&std::fs::read_to_string("/proc/thread-self/status").unwrap()).unwrap();
    assert_eq!(mine & int_term, 0, "the test thread blocks SIGINT or SIGTERM itself");
    // A new thread names itself once it runs: look until the serve and callback threads
    // show (the watchdog ends a test where they never do).
    loop {
        let mut serve_threads = 0;
        let mut callback_threads = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !name.starts_with("solo-instance") {
                continue;
            }
            serve_threads += usize::from(name.trim() == "solo-instance s");
            callback_threads += usize::from(name.trim() == "solo-instance c");
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            // A thread that ended meanwhile has no status left.
            if let Some(mask) = blocked(&status) {
                assert_eq!(mask & int_term, int_term, "{} takes SIGINT or SIGTERM", name.trim());
            }
        }
        if serve_threads > 0 && callback_threads > 0 {
            break;
        }
        thread::yield_now();
    }
    drop(callback);
    drop(primary);
}

/// `recv_timeout(Duration::ZERO)`, polled (as a frame loop may poll instead of
/// `try_recv`), serves what is ready: the primary's loop runs once even when the
/// deadline has passed already.
#[test]
fn lib_recv_timeout_zero_serves_what_is_ready() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-recv-zero");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let l = launch(dir.path(), &["zero"]);
    let request = loop {
        // The watchdog ends a test that never gets it.
        if let Some(r) = primary.recv_timeout(Duration::ZERO) {
            break r;
        }
        thread::yield_now();
    };
    assert_eq!(request.args(), [OsString::from("zero")]);
    request.reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());
}

/// A request deadline runs only while the primary's loop serves: the time the app spends
/// away from it (handling another request between two receive calls, so no turn runs)
/// is not counted against a launch that sent its whole request at once. It is served,
/// not told it sent no request in time (which failed the launch).
#[test]
fn lib_a_deadline_passed_while_the_app_was_away_is_not_the_launchs() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-away");
    // The primary gives a connected client 300 ms for its request line.
    let primary = primary_of(builder(dir.path(), &[]).timeout(Duration::from_millis(300)).start());
    let client = std::os::unix::net::UnixStream::connect(primary.socket_path()).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // A line larger than the first read and one more read of the loop (16 + 64 KiB), sent
    // whole at once: what the socket's buffer does not hold waits for the primary.
    let mut line = br#"{"v":1,"argv":["prog","away"],"data":""#.to_vec();
    line.resize(150 * 1024, b'a');
    line.extend_from_slice(b"\"}\n");
    let mut writer = client.try_clone().unwrap();
    let written = thread::spawn(move || {
        let _ = writer.write_all(&line);
    });
    // One turn: the connection (in the backlog since `connect`) is accepted and held, its
    // request not whole yet.
    assert!(primary.recv_timeout(Duration::ZERO).is_none());
    // The app is away (handling another request, say) past that deadline.
    thread::sleep(Duration::from_millis(600));
    // Back in its loop, it reads the rest and serves the launch.
    let got = primary.recv_timeout(Duration::from_secs(20));
    let served = got.is_some();
    if let Some(request) = got {
        assert_eq!(request.args(), [OsString::from("away")]);
        request.reply(Reply::exit(7)).unwrap();
    }
    let mut reply = String::new();
    BufReader::new(&client).read_line(&mut reply).unwrap();
    assert!(served, "the app's absence failed the launch: {reply}");
    assert_eq!(json_line(&reply)["exit_code"], 7, "{reply}");
    drop(client);
    written.join().unwrap();
}

/// The names of the threads of process `pid` that are the crate's ("solo-instance ...").
#[cfg(any(target_os = "linux", target_os = "android"))]
fn crate_threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .filter(|n| n.starts_with("solo-instance"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Issue 14: no thread is started before it is needed. `solo run` serves with
/// `requests()`, so its own thread accepts, checks and reads each launch: before and after
/// launches, none of its threads is the crate's.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn primary_serving_with_requests_starts_no_thread() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let fx = Fixture::new("no-threads");
    let primary = fx.primary(&[]);
    assert_eq!(crate_threads(primary.id()), Vec::<String>::new(), "threads after the start");
    fx.send_ok(&primary, "first");
    fx.send_ok(&primary, "second");
    // A request over 16 KiB, read in pieces and decoded on the same thread.
    fx.send_ok(&primary, &"large".repeat(5000));
    assert_eq!(crate_threads(primary.id()), Vec::<String>::new(), "threads after three launches");
}

/// `on_request`: each request goes to the callback on the primary's own thread; dropping
/// the handle releases the primary, so the next launch becomes primary.
#[test]
fn lib_on_request_callback_and_drop_releases() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-callback");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let (tx, seen) = mpsc::channel();
    let handle = primary.on_request(move |request| {
        let _ = tx.send(request.args().to_vec());
        request.reply(Reply::ok().with_stdout("from callback")).unwrap();
    });
    let reply = builder(dir.path(), &["via-callback"]).send().unwrap();
    assert_eq!(reply.stdout(), "from callback");
    assert_eq!(seen.recv_timeout(Duration::from_secs(20)).unwrap(), [OsString::from("via-callback")]);
    drop(handle);
    assert!(!dir.path().join("org.test.Lib.sock").exists());
    let next = primary_of(builder(dir.path(), &[]).start());
    drop(next);
}

/// `release()` hands primacy to a successor: a launch whose request is queued but not yet
/// received is told to start over, and becomes the primary itself (guarantee 2).
#[test]
fn lib_release_hands_a_queued_launch_to_the_successor() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-release");
    let first = primary_of(builder(dir.path(), &[]).start());
    let (tx, woken) = mpsc::channel();
    first.set_waker(move || {
        let _ = tx.send(());
    });
    let successor = launch(dir.path(), &["successor"]);
    woken.recv_timeout(Duration::from_secs(20)).expect("the successor's request never arrived");
    first.release();
    let second = primary_of(successor.join().unwrap());
    assert!(second.socket_path().exists());

    // The successor serves as usual.
    let l = launch(dir.path(), &["to-second"]);
    let request = second.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(request.args(), [OsString::from("to-second")]);
    request.reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());
}

/// `release()` with a request in hand: dropping it after the release tells the launch to
/// start over (not "dropped without answering"), and it becomes the primary.
#[test]
fn lib_release_hands_a_received_launch_to_the_successor() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-release2");
    let first = primary_of(builder(dir.path(), &[]).start());
    let successor = launch(dir.path(), &["restart"]);
    let request = first.recv_timeout(Duration::from_secs(20)).expect("no request");
    first.release();
    assert!(!dir.path().join("org.test.Lib.sock").exists(), "release left the socket");
    drop(request);
    let second = primary_of(successor.join().unwrap());
    assert_eq!(second.socket_path(), dir.path().join("org.test.Lib.sock"));
}

/// Invalid app ids are refused up front, by the library and by `solo`.
#[test]
fn lib_invalid_app_ids() {
    let _w = Watchdog::new(Duration::from_secs(60));
    for ok in ["org.example.Editor", "a", "my_app-2", "A1"] {
        assert!(SingleInstance::new(ok).is_ok(), "{ok}");
    }
    let long = "x".repeat(201);
    for bad in ["", ".hidden", "-flag", "a/b", "../up", "a b", "ü", "a\0b", long.as_str()] {
        match SingleInstance::new(bad) {
            Err(e @ Error::InvalidAppId(_)) => assert!(e.to_string().starts_with("invalid app id"), "{e}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let f = Fixture::new("badid");
    let out = output(Command::new(example("solo")).args(["run", "a/b"]).env("XDG_RUNTIME_DIR", f.dir.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("invalid app id"), "{}", text(&out.stderr));
    assert!(f.dir.entries().is_empty(), "{:?}", f.dir.entries());
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

/// Guarantees 1 and 3 when a cleaner deletes the lock file under a running primary: the
/// next launch can lock a new file, but the live socket answers, so it forwards instead
/// of becoming a second primary and removing that socket.
#[test]
fn a_deleted_lock_file_does_not_make_a_second_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("unlinked");
    let p = f.primary(&[]);
    let before = file_id(f.sock());
    std::fs::remove_file(f.lock()).unwrap();
    f.send_ok(&p, "after-unlink");
    let out = output(&mut f.cmd("run", ["--count", "0", "--", "would-be-second"]));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("FORWARDED "), "a second launch did not forward: {stdout:?}");
    assert_eq!(json_line(&p.line())["argv"][1], "would-be-second");
    assert_eq!(file_id(f.sock()), before, "the live primary's socket was replaced");
}

/// Guarantee 5 from the launch's side: a request over the limit fails at once and says
/// why (it is not retried until the timeout, nor reported as "did not answer").
#[test]
fn an_oversized_launch_fails_at_once_and_says_why() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("bigsend");
    let p = f.primary(&[]);
    let start = Instant::now();
    let sent = solo_instance::SingleInstance::new(&f.app)
        .unwrap()
        .directory(f.dir.path())
        .argv(["x".to_owned(), "x".repeat(1536 * 1024)])
        .send();
    match sent {
        Err(solo_instance::Error::Protocol(why)) => assert!(why.contains("message too large"), "{why}"),
        Err(other) => panic!("expected a protocol error, got {other}"),
        Ok(reply) => panic!("an oversized launch was answered: {}", reply.encode()),
    }
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    f.send_ok(&p, "after-big");
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

// ---------------------------------------------------------------------------------------
// Review of the primary's loop on the app's thread (issue 14) and the unchecked forward
// ---------------------------------------------------------------------------------------

/// A waker may own the primary and release it (a GUI's "quit" handled in the callback):
/// the waker runs on the serving thread, inside a turn of the loop, and dropping the
/// primary there must not wait for that turn (the loop's state is locked by it). Hung
/// before the waker was called outside the turn.
#[test]
fn lib_a_waker_may_release_the_primary_on_the_serving_thread() {
    use std::sync::{Arc, Mutex};
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-waker-releases");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let slot: Arc<Mutex<Option<solo_instance::Primary>>> = Arc::default();
    let (tx, released) = mpsc::channel();
    let in_waker = Arc::clone(&slot);
    primary.set_waker(move || {
        let mut held = in_waker.lock().unwrap();
        let Some(p) = held.as_ref() else { return };
        let mut quit = false;
        while let Some(request) = p.try_recv() {
            quit |= request.args() == [OsString::from("quit")];
            request.reply(Reply::exit(7)).unwrap();
        }
        if quit {
            let p = held.take();
            drop(held);
            drop(p);
            let _ = tx.send(thread::current().name().map(str::to_owned));
        }
    });
    *slot.lock().unwrap() = Some(primary);
    let reply = reply_of(launch(dir.path(), &["quit"]).join().unwrap());
    assert_eq!(reply.exit_code(), 7);
    let on =
        released.recv_timeout(Duration::from_secs(20)).expect("releasing the primary from its waker hung");
    assert_eq!(on.as_deref(), Some("solo-instance serve"), "the waker ran elsewhere");
    assert!(!dir.path().join("org.test.Lib.sock").exists(), "the released primary left its socket");
    // The lock is free: the next launch is the primary.
    drop(primary_of(builder(dir.path(), &[]).start()));
}

/// Guarantee 4 before the directory check: a launch whose directory is unsafe (writable by
/// others) is refused, and writes nothing to what that directory's socket name leads to:
/// here a symlink planted by whoever can write there, to another service of this very
/// user (the peer check passes: same uid; as root, any root daemon's socket would do). The
/// first forward went out through the unchecked directory before the fix.
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

/// `max_message_size(usize::MAX)` (no limit): a request that arrives in pieces is read and
/// served (the read's room, `limit + 1`, overflowed and panicked the serving thread: the
/// app's own, in `recv`).
#[test]
fn lib_unlimited_message_size_serves_a_request_in_pieces() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-unlimited");
    let primary = primary_of(builder(dir.path(), &[]).max_message_size(usize::MAX).start());
    let sock = primary.socket_path().to_str().unwrap().to_owned();
    let (piece_tx, first_piece) = mpsc::channel();
    let (rest_tx, send_rest) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let mut conn = ConnectOptions::new().connect(&sock).unwrap();
        let line = br#"{"v":1,"argv":["prog","pieces"]}"#;
        conn.write_all(&line[..5]).unwrap();
        piece_tx.send(()).unwrap();
        send_rest.recv().unwrap();
        conn.write_all(&line[5..]).unwrap();
        conn.write_all(b"\n").unwrap();
        read_reply(&conn, Duration::from_secs(20)).unwrap()
    });
    // The first piece alone: one turn accepts the connection and holds what it read; the
    // next reads the rest.
    first_piece.recv().unwrap();
    assert!(primary.try_recv().is_none());
    rest_tx.send(()).unwrap();
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
    assert_eq!(request.args(), [OsString::from("pieces")]);
    request.reply(Reply::ok()).unwrap();
    let reply = json_line(&client.join().unwrap().expect("no reply"));
    assert_eq!(reply["ok"], true);
}

/// The System scope's abstract name is the lock: it must be free once the primary is
/// dropped, whatever outlives it (a `Stopper`, the driver thread a waker started, held
/// connections), and a waker that drops the primary frees it too. Checked by the next
/// start becoming the primary at once.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn dropping_a_system_primary_frees_its_name_whatever_outlives_it() {
    use std::sync::{Arc, Mutex};
    let _w = Watchdog::new(Duration::from_secs(60));
    let id = format!("org.test.SystemFree{}", std::process::id());
    let app = |args: &[&str]| system_builder(&id, args);
    // Driven by a waker's thread, with a silent connection held and a Stopper kept.
    let primary = primary_of(app(&[]).start());
    let stopper = primary.stopper();
    let (tx, woken) = mpsc::channel();
    primary.set_waker(move || {
        let _ = tx.send(());
    });
    let name = primary.socket_path().to_str().unwrap().to_owned();
    let silent =
        ConnectOptions::new().socket_options(SocketOptions::ABSTRACT_NAMESPACE).connect(&name).unwrap();
    let l = thread::spawn({
        let b = app(&["one"]);
        move || b.start()
    });
    woken.recv_timeout(Duration::from_secs(20)).expect("no request");
    primary.try_recv().unwrap().reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());
    drop(primary);
    let second = primary_of(app(&[]).start());
    drop((stopper, silent));

    // Released by its own waker, on the driver thread.
    let slot: Arc<Mutex<Option<solo_instance::Primary>>> = Arc::default();
    let in_waker = Arc::clone(&slot);
    let (tx, released) = mpsc::channel();
    second.set_waker(move || {
        let mut held = in_waker.lock().unwrap();
        if let Some(p) = held.as_ref() {
            while let Some(r) = p.try_recv() {
                r.reply(Reply::ok()).unwrap();
            }
            let p = held.take();
            drop(held);
            drop(p);
            let _ = tx.send(());
        }
    });
    *slot.lock().unwrap() = Some(second);
    assert!(reply_of(app(&["quit"]).start()).is_ok());
    released.recv_timeout(Duration::from_secs(20)).expect("the waker did not release the primary");
    drop(primary_of(app(&[]).start()));
}
