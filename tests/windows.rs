//! `LocalServer`, `LocalSocket` and `SingleInstance` on Windows named pipes, in process.
//!
//! CI runs these under Wine (`tests/wine.sh`; see `../shared/wine/README.md`). Wine is
//! not Windows: where the two are known to differ the test detects Wine ([`on_wine`]),
//! asserts Windows' behaviour only on Windows, and prints what Wine did instead.
//!
//! The Windows security promises are tested in the crate, under Wine too:
//! `src/sys/windows/security/` (each access option's security descriptor read back with
//! `GetSecurityInfo`, on the first and a later pipe instance; interprocess's owner bug) and
//! `src/sys/windows/tests/` (the random published pipe name and its label, squatters
//! at a published name, the primary's peer and integrity checks, the elevated and session
//! refusals, one primary per directory however spelled, `%ProgramData%`, the lock's and pid
//! file's opens). What Wine cannot prove, and so is unproven here:
//! - ACL enforcement across users: Wine runs everything as one user, and does not refuse
//!   a client that the DACL leaves out. Real Windows does (the descriptor is read back and
//!   is Qt's, entry for entry).
//! - Another user's pipe: the squatting and peer checks are driven by an injected SID
//!   (and, for the launch, by a pipe whose owner is SYSTEM, which Wine lets us create).
//! - Anonymous clients: Wine ignores the impersonation level a client asks for.
//! - `PIPE_REJECT_REMOTE_CLIENTS`: there is no remote machine here.
//! - The foreground hand-over (`AllowSetForegroundWindow`): Wine has no foreground lock.
//! - Directories that are links, or another user's: Wine shows neither a directory
//!   symlink as a reparse point nor an owner other than the creator
//!   (`directories_that_are_links_or_anothers_are_refused` notes it and tests the owner
//!   decision alone).
//! - An elevated launch served by a non-elevated primary (the client's user is read
//!   through `GetCurrentThreadEffectiveToken`, which needs no access to its token); the
//!   refusal of a lower pipe by an elevated launch is tested with a Medium-labelled pipe.
//! - Integrity levels: Wine runs everything at High, enforces no mandatory label, and shows
//!   a pipe server the client's process token, not its thread's. The label on the
//!   primary's pipe is read back; the decisions run on injected levels; that Windows keeps a
//!   Low client out is `windows_a_less_trusted_client_cannot_write_to_the_primary`.
//! - Directory DACLs: Wine shows a directory's DACL as its Unix mode, so the refusal of a
//!   directory (or parent) others may write to is `windows_directories_others_may_write_to_are_refused`,
//!   and the decision alone runs under Wine (`directory_dacl_decision`); so is the crate's
//!   own directory's protected DACL.
//! - Terminal Services sessions: Wine has one; the refusal runs on an injected session.
//! - A client token that is not an impersonation token after `ImpersonateNamedPipeClient`
//!   (the decision is `only_an_impersonation_token_identifies_a_client`), and AppContainers.
//! - `LocalServer`'s default descriptor keeping other users out: read back, not enforced.
#![cfg(windows)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

mod util;
use util::{noise, unique_name as unique, TempDir, Watchdog};

use solo_instance::{
    ConnectOptions, Delivery, Error, LocalServer, LocalSocket, LocalSocketError, Reply, SingleInstance, Start,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

#[link(name = "kernel32")]
extern "system" {
    fn GetModuleHandleA(name: *const u8) -> *mut std::ffi::c_void;
    fn GetProcAddress(module: *mut std::ffi::c_void, name: *const u8) -> *mut std::ffi::c_void;
}

/// Whether this runs under Wine: its ntdll exports `wine_get_version` (the documented way
/// to tell), or the cargo runner `../shared/wine/run` set `WINEDEBUG`.
fn on_wine() -> bool {
    let ntdll = unsafe { GetModuleHandleA(c"ntdll.dll".as_ptr().cast()) };
    let export =
        !ntdll.is_null() && !unsafe { GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()) }.is_null();
    export || std::env::var_os("WINEDEBUG").is_some()
}

fn socket_kind<T: std::fmt::Debug>(r: solo_instance::Result<T>) -> LocalSocketError {
    match r {
        Err(e) => e.socket_error().unwrap_or_else(|| panic!("not a socket error: {e:?}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

fn read_line(socket: &LocalSocket) -> String {
    let mut line = String::new();
    BufReader::new(socket).read_line(&mut line).unwrap();
    line
}

// ---------------------------------------------------------------------------------------
// LocalServer / LocalSocket
// ---------------------------------------------------------------------------------------

/// A plain name becomes `\\.\pipe\NAME`, as Qt names pipes; a full pipe name is kept.
#[test]
fn listen_on_plain_and_full_pipe_names() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let name = unique("plain");
    let mut server = LocalServer::new();
    assert!(!server.is_listening());
    server.listen(&name).unwrap();
    assert!(server.is_listening());
    assert_eq!(server.server_name(), Some(name.as_str()));
    assert_eq!(server.full_server_name(), Some(Path::new(&format!(r"\\.\pipe\{name}"))));
    let client = LocalSocket::connect(&name).unwrap();
    assert_eq!(client.full_server_name(), Some(Path::new(&format!(r"\\.\pipe\{name}"))));
    drop(client);

    // listen while listening: Operation, as Qt's "Already listening" is.
    assert_eq!(socket_kind(server.listen(&unique("again"))), LocalSocketError::Operation);

    let full = format!(r"\\.\pipe\{}", unique("full"));
    let mut server2 = LocalServer::new();
    server2.listen(&full).unwrap();
    assert_eq!(server2.full_server_name(), Some(Path::new(&full)));
    let _c = LocalSocket::connect(&full).unwrap();
    assert!(server2.wait_for_new_connection(Some(Duration::from_secs(10))).unwrap());

    // Empty name: a Name error, with Qt's code and text.
    let mut bad = LocalServer::new();
    assert_eq!(socket_kind(bad.listen("")), LocalSocketError::ServerNotFound);
    assert_eq!(bad.server_error(), LocalSocketError::ServerNotFound);
    assert_eq!(bad.error_string(), "QLocalServer::listen: Name error");
}

/// Bytes both ways, a 1 MiB payload each way at once (so neither side's pipe buffer can
/// hold it), and end-of-stream when the peer goes.
#[test]
fn read_write_round_trip_both_ways() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let name = unique("rt");
    let mut server = LocalServer::new();
    server.listen(&name).unwrap();
    let mut client = LocalSocket::connect(&name).unwrap();
    let mut accepted = server.accept().unwrap();
    assert_eq!(accepted.server_name(), None);

    client.write_all(b"ping\n").unwrap();
    assert_eq!(read_line(&accepted), "ping\n");
    accepted.write_all(b"pong\n").unwrap();
    assert_eq!(read_line(&client), "pong\n");

    // Peer credentials: the client's pid, from GetNamedPipeClientProcessId.
    match accepted.peer_credentials() {
        Ok(c) => assert_eq!(c.pid, Some(std::process::id())),
        Err(e) if on_wine() => println!("note: under Wine, peer_credentials failed: {e}"),
        Err(e) => panic!("peer_credentials: {e}"),
    }

    const N: usize = 1 << 20;
    let data: Vec<u8> = (0..N).map(|i| (i * 7 % 251) as u8).collect();
    let expect = data.clone();
    let writer = {
        let data = data.clone();
        thread::spawn(move || {
            client.write_all(&data).unwrap();
            let mut back = vec![0; N];
            client.read_exact(&mut back).unwrap();
            (client, back)
        })
    };
    let mut got = vec![0; N];
    accepted.read_exact(&mut got).unwrap();
    assert!(got == expect, "server received different bytes");
    accepted.write_all(&got).unwrap();
    let (client, back) = writer.join().unwrap();
    assert!(back == expect, "client received different bytes");

    // The client goes: the server reads end-of-stream, not an error.
    drop(client);
    let mut rest = Vec::new();
    accepted.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// `wait_for_new_connection`: `Ok(false)` after about the timeout with nobody there,
/// `Ok(true)` once a client connects, `try_accept` never blocks.
#[test]
fn wait_for_new_connection_times_out_then_succeeds() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let name = unique("wait");
    let mut server = LocalServer::new();
    server.listen(&name).unwrap();

    let t = Instant::now();
    assert!(!server.wait_for_new_connection(Some(Duration::from_millis(300))).unwrap());
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(290), "returned early: {took:?}");
    assert!(took < Duration::from_secs(3), "returned late: {took:?}");
    assert!(!server.wait_for_new_connection(Some(Duration::ZERO)).unwrap());
    assert!(server.try_accept().unwrap().is_none());
    assert!(!server.has_pending_connections());

    let n = name.clone();
    let client = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        let mut c = LocalSocket::connect(&n).unwrap();
        c.write_all(b"hi\n").unwrap();
        c
    });
    let t = Instant::now();
    assert!(server.wait_for_new_connection(Some(Duration::from_secs(10))).unwrap());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(server.has_pending_connections());
    let s = server.next_pending_connection().unwrap();
    assert_eq!(read_line(&s), "hi\n");
    let _c = client.join().unwrap();

    // Without a timeout, too.
    let n = name.clone();
    let client = thread::spawn(move || LocalSocket::connect(&n).unwrap());
    assert!(server.wait_for_new_connection(None).unwrap());
    assert!(server.next_pending_connection().is_some());
    drop(client.join().unwrap());
}

/// At the pending limit the server accepts no more; the clients beyond it wait (at the
/// pipe) and are all accepted, none lost, once sockets are taken.
#[test]
fn pending_limit_holds_and_loses_no_client() {
    let _w = Watchdog::new(Duration::from_secs(60));
    const CLIENTS: u8 = 5;
    let name = unique("limit");
    let mut server = LocalServer::new();
    assert_eq!(server.max_pending_connections(), 30);
    server.set_max_pending_connections(2);
    server.listen(&name).unwrap();

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let n = name.clone();
            thread::spawn(move || {
                let mut c = ConnectOptions::new().timeout(Some(Duration::from_secs(30))).connect(&n).unwrap();
                c.write_all(&[i]).unwrap();
                // Hold the connection until the server has read the byte and answered.
                let mut ack = [0u8];
                c.read_exact(&mut ack).unwrap();
                assert_eq!(ack[0], i);
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(20);
    while server.pending_connections().len() < 2 {
        assert!(Instant::now() < deadline, "two clients were not queued");
        server.wait_for_new_connection(Some(Duration::from_millis(100))).unwrap();
    }
    // All clients have had time to connect: the queue stays at its limit.
    thread::sleep(Duration::from_millis(300));
    assert!(server.wait_for_new_connection(Some(Duration::from_millis(100))).unwrap());
    assert_eq!(server.pending_connections().len(), 2);

    let mut seen = Vec::new();
    while seen.len() < CLIENTS as usize {
        assert!(Instant::now() < deadline, "only {seen:?} accepted");
        if let Some(mut s) = server.next_pending_connection() {
            let mut b = [0u8];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
            seen.push(b[0]);
        }
        server.wait_for_new_connection(Some(Duration::from_millis(100))).unwrap();
        assert!(server.pending_connections().len() <= 2);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..CLIENTS).collect::<Vec<_>>());
    for c in clients {
        c.join().unwrap();
    }
}

/// The `newConnection` callback runs on the acceptor thread; `close()` wakes and joins it
/// at once (a watchdog thread fails the test if it does not), and afterwards the pipe is
/// gone and the name free again.
#[test]
fn callback_and_prompt_close() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let name = unique("cb");
    let (tx, rx) = mpsc::channel();
    let mut server = LocalServer::new();
    server.on_new_connection(move |pending| {
        while let Some(s) = pending.next_pending_connection() {
            tx.send(s).unwrap();
        }
    });
    server.listen(&name).unwrap();
    for i in 0..3u8 {
        let mut c = LocalSocket::connect(&name).unwrap();
        c.write_all(&[i]).unwrap();
        let mut s = rx.recv_timeout(Duration::from_secs(10)).expect("callback not run");
        let mut b = [0u8];
        s.read_exact(&mut b).unwrap();
        assert_eq!(b[0], i);
    }
    // The callback's thread waits for connections; close must not wait for one.
    thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    server.close();
    assert!(t.elapsed() < Duration::from_secs(2), "close took {:?}", t.elapsed());
    assert!(!server.is_listening());
    assert_eq!(server.full_server_name(), None);
    assert_eq!(
        socket_kind(ConnectOptions::new().timeout(Some(Duration::from_millis(500))).connect(&name)),
        LocalSocketError::ServerNotFound
    );

    // close() with no callback, and the name can be listened on again.
    server.listen(&name).unwrap();
    let t = Instant::now();
    server.close();
    assert!(t.elapsed() < Duration::from_secs(2), "close took {:?}", t.elapsed());
    let mut again = LocalServer::new();
    again.listen(&name).unwrap();
    drop(LocalSocket::connect(&name).unwrap());

    // Dropping a server closes it the same way, promptly.
    let t = Instant::now();
    drop(again);
    assert!(t.elapsed() < Duration::from_secs(2), "drop took {:?}", t.elapsed());
}

/// A second server on a live name: AddressInUse on Windows (interprocess creates the first
/// pipe instance with `FILE_FLAG_FIRST_PIPE_INSTANCE`). Wine 8 creates the pipe instead;
/// that is noted, not failed.
#[test]
fn second_listen_on_same_name_is_address_in_use() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let name = unique("inuse");
    let mut first = LocalServer::new();
    first.listen(&name).unwrap();
    let mut second = LocalServer::new();
    match second.listen(&name) {
        Err(e) => {
            assert_eq!(e.socket_error(), Some(LocalSocketError::AddressInUse), "{e:?}");
            assert_eq!(second.server_error(), LocalSocketError::AddressInUse);
            assert_eq!(second.error_string(), "QLocalServer::listen: Address in use");
            assert!(!second.is_listening());
        }
        Ok(()) if on_wine() => {
            println!(
                "note: Wine let a second server listen on {} (Windows refuses: \
                 FILE_FLAG_FIRST_PIPE_INSTANCE); AddressInUse is unproven here",
                name
            );
        }
        Ok(()) => panic!("a second server listened on a live pipe name"),
    }
    // Either way dropping the second is prompt (its accept is cancelled, not unblocked by
    // a connection that could reach the first server's instance), and the first still
    // serves.
    let t = Instant::now();
    drop(second);
    assert!(t.elapsed() < Duration::from_secs(1), "drop took {:?}", t.elapsed());
    let _c = LocalSocket::connect(&name).unwrap();
    assert!(first.wait_for_new_connection(Some(Duration::from_secs(10))).unwrap());
}

/// `peer_credentials` carries the SID on both ends: the client's user as the server sees
/// it, and the pipe's owner as the client sees it; both are this process's user.
#[test]
fn peer_credentials_carry_the_sid_both_ways() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let name = unique("peer-sid");
    let mut server = LocalServer::new();
    server.set_socket_options(solo_instance::SocketOptions::USER_ACCESS);
    server.listen(&name).unwrap();
    let client = LocalSocket::connect(&name).unwrap();
    assert!(server.wait_for_new_connection(Some(Duration::from_secs(5))).unwrap());
    let accepted = server.next_pending_connection().unwrap();
    let seen_by_server = accepted.peer_credentials().unwrap();
    let seen_by_client = client.peer_credentials().unwrap();
    assert_eq!(seen_by_server.pid, Some(std::process::id()));
    assert_eq!(seen_by_client.pid, Some(std::process::id()));
    let sid = seen_by_server.sid.expect("the client's SID");
    assert_eq!(seen_by_client.sid, Some(sid));
    assert_eq!((seen_by_server.uid, seen_by_server.gid), (None, None));
}

/// Nothing listening: ServerNotFound at once, with or without a timeout.
#[test]
fn connect_to_nothing_is_server_not_found() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let name = unique("nobody");
    let t = Instant::now();
    let e = LocalSocket::connect(&name).unwrap_err();
    assert_eq!(e.socket_error(), Some(LocalSocketError::ServerNotFound), "{e:?}");
    // Qt's text, then the pipe name tried.
    assert_eq!(e.to_string(), format!("QLocalSocket::connectToServer: Invalid name (\\\\.\\pipe\\{name})"));
    let e = ConnectOptions::new().timeout(Some(Duration::from_secs(5))).connect(&name).unwrap_err();
    assert_eq!(e.socket_error(), Some(LocalSocketError::ServerNotFound), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
    assert_eq!(socket_kind(LocalSocket::connect("")), LocalSocketError::ServerNotFound);
}

/// I/O timeouts: named pipes have none, so `Some` is refused, and `None` (the default)
/// is accepted.
#[test]
fn socket_timeouts_are_unsupported_on_pipes() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let name = unique("to");
    let mut server = LocalServer::new();
    server.listen(&name).unwrap();
    let c = LocalSocket::connect(&name).unwrap();
    c.set_read_timeout(None).unwrap();
    c.set_write_timeout(None).unwrap();
    assert!(c.set_read_timeout(Some(Duration::from_secs(1))).is_err());
    assert!(c.set_write_timeout(Some(Duration::from_secs(1))).is_err());
}

// ---------------------------------------------------------------------------------------
// SingleInstance
// ---------------------------------------------------------------------------------------

fn builder(dir: &Path, app: &str, argv: &[&str]) -> SingleInstance {
    SingleInstance::new(app)
        .unwrap()
        .directory(dir)
        .timeout(Duration::from_secs(10))
        .argv(argv.iter().copied())
}

fn primary_of(start: solo_instance::Result<Start>) -> solo_instance::Primary {
    match start {
        Ok(Start::Primary(p)) => p,
        Ok(Start::Forwarded(r)) => panic!("forwarded, not primary: {r:?}"),
        Err(e) => panic!("start: {e}"),
    }
}

/// The first start is primary, listening on a per-user, per-directory pipe; a thread's
/// `send()` reaches it and gets its reply; `status` sees it.
#[test]
fn instance_primary_and_forwarding_thread() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("inst");
    let app = unique("test.win.fwd");
    assert!(matches!(builder(dir.path(), &app, &["p"]).send(), Err(Error::NoPrimary)));
    assert!(!builder(dir.path(), &app, &[]).status().unwrap().running);

    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    // A fresh random name, published beside the lock (`<app>.pipe`).
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    assert!(
        pipe.starts_with(r"\\.\pipe\solo-instance-") && pipe.len() == r"\\.\pipe\solo-instance-".len() + 32,
        "{pipe}"
    );
    assert!(std::fs::read_to_string(dir.path().join(format!("{app}.pipe"))).unwrap().contains(&pipe));
    assert_eq!(primary.lock_path(), dir.path().join(format!("{app}.lock")));
    let status = builder(dir.path(), &app, &[]).status().unwrap();
    assert!(status.running);
    assert_eq!(status.socket, primary.socket_path());
    // The pid lives beside the lock file (`<app>.pid`): LockFileEx locks are mandatory, so
    // Windows would refuse to read it from the locked file itself (Wine 8 allows that).
    assert_eq!(status.pid, Some(std::process::id()));
    assert!(dir.path().join(format!("{app}.pid")).is_file());

    let b = builder(dir.path(), &app, &["prog", "open", "ü.txt"]).data(serde_json::json!({"k": 1}));
    let launch = thread::spawn(move || b.send());
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
    assert_eq!(request.args(), [OsString::from("open"), OsString::from("ü.txt")]);
    assert_eq!(request.pid(), Some(std::process::id()));
    // The primary saw who connected: this user.
    let sid = request.peer_credentials().and_then(|c| c.sid).expect("the client's SID");
    assert!(sid.to_string().starts_with("S-1-5-"), "{sid}");
    assert_eq!(request.cwd(), Some(std::env::current_dir().unwrap().as_path()));
    assert_eq!(request.data(), &serde_json::json!({"k": 1}));
    request.reply(Reply::exit(7).with_stdout("done")).unwrap();
    let reply = launch.join().unwrap().unwrap();
    assert_eq!((reply.exit_code(), reply.stdout()), (7, "done"));

    // A refusal arrives as Error::Rejected.
    let b = builder(dir.path(), &app, &["prog"]);
    let launch = thread::spawn(move || b.start());
    primary.recv_timeout(Duration::from_secs(20)).unwrap().reply(Reply::error("nope")).unwrap();
    assert!(
        matches!(launch.join().unwrap(), Err(Error::Rejected(ref m)) if m.error_message() == Some("nope"))
    );
}

/// Protocol version 2 on pipes: a waiting launch outlasts its timeout once taken, gets
/// the output written before the reply; a release ends a wait at once.
#[test]
fn instance_wait_and_output_on_pipes() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("v2");
    let app = unique("test.win.v2");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let quick = |argv: &[&str]| builder(dir.path(), &app, argv).timeout(Duration::from_millis(300));
    let b = quick(&["prog", "slow"]).wait_for_reply(true);
    let launch = thread::spawn(move || b.send());
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
    assert!(request.is_waiting());
    let mut out = request.stdout();
    assert!(out.is_connected());
    std::io::Write::write_all(&mut out, b"working\n").unwrap();
    // Past the launch's timeout: it waits, since its request was taken.
    thread::sleep(Duration::from_millis(600));
    assert!(request.reply(Reply::exit(3)).unwrap().is_delivered());
    assert_eq!(launch.join().unwrap().unwrap().exit_code(), 3);

    let b = quick(&["prog", "held"]).wait_for_reply(true);
    let launch = thread::spawn(move || b.send());
    let held = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
    primary.release();
    let gone = launch.join().unwrap();
    assert!(
        matches!(gone, Err(Error::Io(ref e)) if e.kind() == std::io::ErrorKind::ConnectionAborted),
        "{gone:?}"
    );
    drop(held);
}

/// Set for a run of this test binary as a launch that forwards its stdin
/// ([`instance_stdin_launch_child`]): the directory and the app id, one a line.
const STDIN_CHILD: &str = "SOLO_WIN_STDIN_LAUNCH";

/// What the child launch prints before the primary's output (libtest prints its own lines
/// before the test runs).
const STDIN_MARK: &[u8] = b"<<launch>>\n";

/// Not a test of its own: this binary run again as a launch with `--stdin` (the parent
/// sets [`STDIN_CHILD`]). It forwards its stdin to the primary, whose output reaches its
/// stdout after [`STDIN_MARK`], and exits with the reply's exit code (99 on an error).
#[test]
fn instance_stdin_launch_child() {
    let Ok(spec) = std::env::var(STDIN_CHILD) else { return };
    let (dir, app) = spec.split_once('\n').expect("dir and app");
    let mut out = std::io::stdout();
    out.write_all(STDIN_MARK).unwrap();
    out.flush().unwrap();
    // It waits for the reply as long as the primary lives: no time limit in the test.
    let launch = builder(Path::new(dir), app, &["prog", "stdin"]).forward_stdin(true).wait_for_reply(true);
    let code = match launch.send() {
        Ok(reply) => reply.exit_code(),
        Err(e) => {
            eprintln!("launch: {e}");
            99
        }
    };
    out.flush().unwrap();
    std::process::exit(code);
}

/// A launch of this binary ([`instance_stdin_launch_child`]) forwarding its stdin to the
/// primary at `dir`, `app`; its stdout arrives on the channel, whole, once it has exited.
fn stdin_launch(
    dir: &Path,
    app: &str,
) -> (std::process::Child, std::process::ChildStdin, mpsc::Receiver<Vec<u8>>) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "instance_stdin_launch_child", "--nocapture", "--test-threads=1"])
        .env(STDIN_CHILD, format!("{}\n{app}", dir.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    (child, stdin, rx)
}

/// Who runs the primary's loop while the app reads a launch's stdin.
#[derive(Clone, Copy, Debug)]
enum LoopBy {
    /// Nobody else: the thread reading stdin runs its turns.
    Reader,
    /// The app's thread, waiting in `recv_timeout` while a worker reads stdin.
    AppInRecv,
    /// The driver thread (a waker is set).
    Driver,
}

/// 300 KB of random stdin, forwarded by a launch process, come back byte for byte from a
/// primary that copies it to the launch's stdout; another launch is served meanwhile.
fn echo_300_kb(tag: &str, by: LoopBy) {
    let dir = TempDir::new(tag);
    let app = unique(&format!("test.win.{tag}"));
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let (woken, wakes) = mpsc::channel::<()>();
    if let LoopBy::Driver = by {
        let woken = std::sync::Mutex::new(woken);
        primary.set_waker(move || {
            let _ = woken.lock().unwrap().send(());
        });
    }
    let input = noise(300 * 1024, 0x5eed);
    let (mut child, mut stdin, stdout) = stdin_launch(dir.path(), &app);
    let sent = input.clone();
    let writer = thread::spawn(move || stdin.write_all(&sent));
    let request = primary.recv_timeout(Duration::from_secs(30)).expect("no request");
    assert!(request.has_stdin());
    let echo = move || {
        let mut echo = request.stdout().blocking(true);
        let copied = std::io::copy(&mut request.stdin(), &mut echo).unwrap();
        assert!(request.reply(Reply::ok()).unwrap().is_delivered());
        copied
    };
    let copied = match by {
        LoopBy::Reader | LoopBy::Driver => {
            // Another launch, while this one's stdin streams.
            let b = builder(dir.path(), &app, &["prog", "other"]);
            let other = thread::spawn(move || b.send());
            let copied = echo();
            let second = primary.recv_timeout(Duration::from_secs(30)).expect("the other launch");
            assert_eq!(second.args(), [OsString::from("other")]);
            second.reply(Reply::exit(5)).unwrap();
            assert_eq!(other.join().unwrap().unwrap().exit_code(), 5);
            copied
        }
        LoopBy::AppInRecv => {
            let worker = thread::spawn(echo);
            // The app's thread serves the loop while the worker reads; the other launch
            // comes once the echo is done.
            assert!(primary.recv_timeout(Duration::from_millis(200)).is_err());
            let copied = worker.join().unwrap();
            let b = builder(dir.path(), &app, &["prog", "other"]);
            let other = thread::spawn(move || b.send());
            primary
                .recv_timeout(Duration::from_secs(30))
                .expect("the other launch")
                .reply(Reply::exit(5))
                .unwrap();
            assert_eq!(other.join().unwrap().unwrap().exit_code(), 5);
            copied
        }
    };
    assert_eq!(copied, input.len() as u64);
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    let out = stdout.recv_timeout(Duration::from_secs(30)).unwrap();
    let at =
        out.windows(STDIN_MARK.len()).position(|w| w == STDIN_MARK).expect("the mark") + STDIN_MARK.len();
    let echo = &out[at..];
    assert!(echo == input.as_slice(), "the echo differs ({} bytes back of {})", echo.len(), input.len());
    if let LoopBy::Driver = by {
        assert!(wakes.try_recv().is_ok(), "the waker was never called");
    }
}

/// The thread that reads stdin runs the loop's turns itself (nobody else does).
#[test]
fn instance_stdin_300_kb_echoed_on_pipes() {
    let _w = Watchdog::new(Duration::from_secs(120));
    echo_300_kb("stdin", LoopBy::Reader);
}

/// A worker reads stdin while the app's thread waits in `recv_timeout`.
#[test]
fn instance_stdin_read_while_the_app_waits_in_recv() {
    let _w = Watchdog::new(Duration::from_secs(120));
    echo_300_kb("stdin-recv", LoopBy::AppInRecv);
}

/// The driver thread runs the loop (a waker is set).
#[test]
fn instance_stdin_read_with_a_driver_thread() {
    let _w = Watchdog::new(Duration::from_secs(120));
    echo_300_kb("stdin-driver", LoopBy::Driver);
}

/// A launch that goes away in the middle of its stdin ends the primary's read with an
/// error (not a hang, not a clean end), the reading thread running the loop itself.
#[test]
fn instance_stdin_of_a_killed_launch_ends_with_an_error() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let dir = TempDir::new("stdin-kill");
    let app = unique("test.win.stdinkill");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let (mut child, mut stdin, _stdout) = stdin_launch(dir.path(), &app);
    stdin.write_all(b"first bytes").unwrap();
    stdin.flush().unwrap();
    let request = primary.recv_timeout(Duration::from_secs(30)).expect("no request");
    let mut input = request.stdin();
    let mut got = [0u8; 11];
    input.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"first bytes");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rest = Vec::new();
    let end = input.read_to_end(&mut rest);
    assert!(end.is_err(), "a killed launch's stdin ended cleanly: {end:?}");
    assert!(rest.is_empty());
    drop(stdin);
}

/// A primary that never reads a launch's stdin holds a bounded amount of it: the launch
/// (and the writer feeding it) wait, and the primary serves on; its reply ends the launch.
#[test]
fn instance_stdin_never_read_stays_bounded_on_pipes() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let dir = TempDir::new("nostdin");
    let app = unique("test.win.nostdin");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let (mut child, mut stdin, stdout) = stdin_launch(dir.path(), &app);
    let (progress, taken) = mpsc::channel();
    let writer = thread::spawn(move || {
        let chunk = noise(32 * 1024, 7);
        while stdin.write_all(&chunk).is_ok() {
            if progress.send(chunk.len()).is_err() {
                break;
            }
        }
    });
    let request = primary.recv_timeout(Duration::from_secs(30)).expect("no request");
    assert!(request.has_stdin());
    let most = 64usize << 20;
    let mut total = 0usize;
    // Until a write makes no progress for 2 s (the launch and everything before it wait),
    // or far more went than anything bounded holds.
    while let Ok(n) = taken.recv_timeout(Duration::from_secs(2)) {
        total += n;
        if total >= most {
            break;
        }
    }
    eprintln!("stdin never read: the launch's writer got {total} bytes through");
    assert!(total < 8 << 20, "{total} bytes of stdin went to a primary that reads none");
    // The loop serves on.
    let b = builder(dir.path(), &app, &["prog", "other"]);
    let other = thread::spawn(move || b.send());
    primary.recv_timeout(Duration::from_secs(30)).expect("the other launch").reply(Reply::exit(6)).unwrap();
    assert_eq!(other.join().unwrap().unwrap().exit_code(), 6);
    // The reply ends the launch, its stdin unread.
    assert!(request.reply(Reply::exit(4)).unwrap().is_delivered());
    assert_eq!(child.wait().unwrap().code(), Some(4));
    drop(taken);
    writer.join().unwrap();
    drop(stdout);
}

/// A waker that reads a request's stdin runs on the driver thread, the one thread that
/// runs the loop whose turns complete the pipe's reads: the read runs those turns itself
/// there, and gets the bytes (a wait for turns that nobody else runs would never end).
#[test]
fn instance_stdin_read_in_the_waker_on_the_driver_thread() {
    use std::sync::{Arc, Mutex};
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("stdin-waker");
    let app = unique("test.win.stdinwaker");
    let slot: Arc<Mutex<Option<solo_instance::Primary>>> = Arc::default();
    let (tx, got) = mpsc::channel();
    let tx = Mutex::new(tx);
    let in_waker = Arc::clone(&slot);
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    primary.set_waker(move || {
        let held = in_waker.lock().unwrap();
        let Some(p) = held.as_ref() else { return };
        while let Ok(request) = p.try_recv() {
            let mut all = Vec::new();
            let read = request.stdin().read_to_end(&mut all).map(|_| all).map_err(|e| e.to_string());
            request.reply(Reply::exit(3)).unwrap();
            let _ = tx.lock().unwrap().send((read, thread::current().name().map(str::to_owned)));
        }
    });
    *slot.lock().unwrap() = Some(primary);
    let (mut child, mut stdin, _stdout) = stdin_launch(dir.path(), &app);
    stdin.write_all(b"read by the waker").unwrap();
    drop(stdin);
    let (read, on) = got.recv_timeout(Duration::from_secs(30)).expect("the waker's read of stdin hung");
    assert_eq!(read.as_deref(), Ok(&b"read by the waker"[..]));
    assert_eq!(on.as_deref(), Some("solo-instance serve"), "the waker ran elsewhere");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let p = slot.lock().unwrap().take();
    drop(p);
}

/// A launch that goes away while the primary does not read its stdin (the pipe holds
/// what it sent, reading paused) is abandoned at once, as on Unix: its request says so,
/// and a reply reaches nobody.
#[test]
fn instance_launch_gone_with_its_stdin_unread_is_abandoned() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let dir = TempDir::new("stdin-gone");
    let app = unique("test.win.stdingone");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let (mut child, mut stdin, _stdout) = stdin_launch(dir.path(), &app);
    let (progress, taken) = mpsc::channel();
    let writer = thread::spawn(move || {
        let chunk = noise(32 * 1024, 11);
        while stdin.write_all(&chunk).is_ok() {
            if progress.send(()).is_err() {
                break;
            }
        }
    });
    let request = primary.recv_timeout(Duration::from_secs(30)).expect("no request");
    assert!(request.has_stdin());
    // Until the launch stops taking stdin (everything between it and the app is full).
    while taken.recv_timeout(Duration::from_secs(2)).is_ok() {}
    assert!(!request.is_abandoned());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(request.is_abandoned(), "a launch gone with its stdin unread is not abandoned");
    assert_eq!(request.reply(Reply::ok()).unwrap(), Delivery::Abandoned);
    drop(taken);
    writer.join().unwrap();
}

/// The lock decides: while a Primary lives, a second `start()` in the same process (a
/// second handle on the lock file) forwards instead of becoming primary. `release()`
/// frees the name and the lock so the next start is primary.
#[test]
fn instance_lock_decides_and_release_hands_over() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("lock");
    let app = unique("test.win.lock");
    let primary = primary_of(builder(dir.path(), &app, &["first"]).start());

    let b = builder(dir.path(), &app, &["prog", "second"]);
    let launch = thread::spawn(move || b.start());
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("second start did not forward");
    assert_eq!(request.args(), [OsString::from("second")]);
    request.reply(Reply::ok()).unwrap();
    match launch.join().unwrap() {
        Ok(Start::Forwarded(r)) => assert!(r.is_ok()),
        Ok(Start::Primary(_)) => panic!("a second primary while the first lives"),
        Err(e) => panic!("{e}"),
    }

    let t = Instant::now();
    primary.release();
    assert!(t.elapsed() < Duration::from_secs(3), "release took {:?}", t.elapsed());
    let status = builder(dir.path(), &app, &[]).status().unwrap();
    assert!(!status.running && status.pid.is_none(), "{status:?}");
    let successor = primary_of(builder(dir.path(), &app, &["third"]).start());

    // And it serves: the name is its own now.
    let b = builder(dir.path(), &app, &["prog", "fourth"]);
    let launch = thread::spawn(move || b.send());
    successor.recv_timeout(Duration::from_secs(20)).unwrap().reply(Reply::exit(4)).unwrap();
    assert_eq!(launch.join().unwrap().unwrap().exit_code(), 4);
}

/// A release ends the launches waiting for requests the app still holds, version 1 and 2
/// alike, and closes their pipe instances: in the System scope, whose pipe name is fixed,
/// a successor started right after the release binds it and serves while the old requests
/// still exist; a reply to one of them afterwards is not delivered. The User scope (a
/// fresh random name per primary) the same.
#[test]
fn instance_release_closes_the_pipes_of_requests_the_app_holds() {
    let _w = Watchdog::new(Duration::from_secs(90));
    for scope in [solo_instance::Scope::System, solo_instance::Scope::User] {
        let dir = TempDir::new("heldrelease");
        let app = unique("test.win.heldrelease");
        let b = |argv: &[&str]| builder(dir.path(), &app, argv).scope(scope);
        let primary = primary_of(b(&["p"]).start());
        // Version 2, waiting for its reply.
        let waiting = b(&["prog", "held"]).wait_for_reply(true);
        let launch = thread::spawn(move || waiting.send());
        let held = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
        assert!(held.is_waiting());
        // Version 1, over a plain connection.
        let mut plain = LocalSocket::connect(&primary.socket_path().to_string_lossy()).unwrap();
        plain.write_all(b"{\"v\":1,\"argv\":[\"prog\",\"plain\"]}\n").unwrap();
        let held_plain = primary.recv_timeout(Duration::from_secs(20)).expect("no version-1 request");
        assert_eq!(held_plain.args(), [OsString::from("plain")]);

        primary.release();
        let gone = launch.join().unwrap();
        assert!(
            matches!(gone, Err(Error::Io(ref e)) if e.kind() == std::io::ErrorKind::ConnectionAborted),
            "{scope:?}: {gone:?}"
        );
        // The version-1 client reads the end, no reply.
        let mut rest = Vec::new();
        let _ = plain.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{scope:?}: {:?}", String::from_utf8_lossy(&rest));

        // The requests still exist; the successor binds and serves.
        let successor = match b(&["next"]).start() {
            Ok(Start::Primary(p)) => p,
            other => panic!("{scope:?}: the successor is not primary: {other:?}"),
        };
        let next = b(&["prog", "next"]);
        let launch = thread::spawn(move || next.send());
        successor.recv_timeout(Duration::from_secs(20)).unwrap().reply(Reply::exit(5)).unwrap();
        assert_eq!(launch.join().unwrap().unwrap().exit_code(), 5, "{scope:?}");
        assert!(!held.reply(Reply::ok()).unwrap().is_delivered(), "{scope:?}");
        assert!(!held_plain.reply(Reply::ok()).unwrap().is_delivered(), "{scope:?}");
    }
}

/// An argument that is not valid UTF-16 (a lone surrogate, as Windows file names may
/// hold) travels as `{"wide":[...]}` and arrives unit for unit.
#[test]
fn instance_ill_formed_utf16_argv_round_trips() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("wide");
    let app = unique("test.win.wide");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());

    let units: Vec<u16> = vec![0x61, 0xD800, 0x62, 0xDC00, 0xDC00, 0x63];
    let ill = OsString::from_wide(&units);
    assert!(ill.to_str().is_none());
    assert_eq!(
        solo_instance::protocol::encode_os(&ill),
        serde_json::json!({ "wide": [0x61, 0xD800, 0x62, 0xDC00, 0xDC00, 0x63] })
    );

    let b = SingleInstance::new(&app).unwrap().directory(dir.path()).timeout(Duration::from_secs(10)).argv([
        OsString::from("prog"),
        ill.clone(),
        OsString::from("plain"),
    ]);
    let launch = thread::spawn(move || b.send());
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
    assert_eq!(request.args()[0].encode_wide().collect::<Vec<_>>(), units);
    assert_eq!(request.args()[1], "plain");
    let raw: serde_json::Value = serde_json::from_str(request.raw_json()).unwrap();
    assert_eq!(raw["argv"][1], serde_json::json!({ "wide": units }));
    request.reply(Reply::ok()).unwrap();
    assert!(launch.join().unwrap().unwrap().is_ok());
}

/// Guarantee 5 on pipes: a client that connects and says nothing gets the primary's "no
/// request" reply after the timeout, and the primary keeps serving others meanwhile.
#[test]
fn instance_silent_client_is_bounded() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("silent");
    let app = unique("test.win.silent");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).timeout(Duration::from_millis(800)).start());
    // The primary's loop runs on its own thread from now on: deadlines pass while the
    // app is away from its receive calls.
    primary.set_waker(|| {});
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    let silent = LocalSocket::connect(&pipe).unwrap();

    // Another launch is served while the silent one is held.
    let b = builder(dir.path(), &app, &["prog", "other"]);
    let launch = thread::spawn(move || b.send());
    primary.recv_timeout(Duration::from_secs(20)).unwrap().reply(Reply::ok()).unwrap();
    assert!(launch.join().unwrap().unwrap().is_ok());

    let t = Instant::now();
    let line = read_line(&silent);
    assert!(line.contains("no request within"), "{line:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
}

/// Guarantee 5 on pipes, at scale: 256 pipe connections that say nothing do not keep a
/// launch from being served. It is answered while they are all held (before the last of
/// them is told "no request within", 2 s after it connected; the issue's bound is 1 s),
/// and every one of them then gets that reply: one loop reads them all, with no reader
/// thread per connection to run out of.
#[test]
fn instance_256_silent_pipes_do_not_hold_up_a_launch() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let dir = TempDir::new("silent256");
    let app = unique("test.win.silent256");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    primary.set_waker(|| {});
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    let mut silent: Vec<LocalSocket> = (0..256).map(|_| LocalSocket::connect(&pipe).unwrap()).collect();
    // The last one's reply is read (and timed) on its own thread.
    let last = silent.pop().unwrap();
    let connected = Instant::now();
    let (tx, last_reply) = mpsc::channel();
    let reader = thread::spawn(move || {
        let line = read_line(&last);
        tx.send((line, connected.elapsed())).unwrap();
    });
    let b = builder(dir.path(), &app, &["prog", "after-256"]);
    let launch = thread::spawn(move || b.send());
    let request = primary.recv_timeout(Duration::from_secs(60)).expect("the launch was not served");
    assert_eq!(request.args(), [OsString::from("after-256")]);
    let served = connected.elapsed();
    request.reply(Reply::ok()).unwrap();
    assert!(launch.join().unwrap().unwrap().is_ok());
    eprintln!("served {served:?} after the 256th silent connection");
    let (line, replied) = last_reply.recv_timeout(Duration::from_secs(60)).expect("no reply to the last");
    assert!(line.contains("no request within"), "{line:?}");
    assert!(served < replied, "the launch was served at {served:?}, after the silent ones at {replied:?}");
    reader.join().unwrap();
    for s in &silent {
        let line = read_line(s);
        assert!(line.contains("no request within") || line.is_empty(), "{line:?}");
    }
}

/// A request whose launch gave up (closed its end) before the app took it is dropped
/// unseen, as on Unix: the app gets the next launch's request instead.
#[test]
fn instance_abandoned_request_is_dropped_unseen() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("abandoned");
    let app = unique("test.win.abandoned");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    // Sent whole, then gone, before the primary's loop first runs. A plain file: its drop
    // closes its handle at once (a `LocalSocket`'s drop closes it later, on a thread of its
    // own, once the server has read everything, so the request could still be taken).
    let mut gone = std::fs::OpenOptions::new().read(true).write(true).open(&pipe).unwrap();
    gone.write_all(b"{\"v\":1,\"argv\":[\"gone\"]}\n").unwrap();
    drop(gone);
    let b = builder(dir.path(), &app, &["prog", "present"]);
    let launch = thread::spawn(move || b.send());
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
    assert_eq!(request.args(), [OsString::from("present")], "the abandoned request was delivered");
    assert!(!request.is_abandoned());
    request.reply(Reply::ok()).unwrap();
    assert!(launch.join().unwrap().unwrap().is_ok());
}

/// The message limit holds on pipes as on sockets (the same loop reads both): a request
/// over it is refused with "message too large", read no further than the limit, and the
/// primary serves on.
#[test]
fn instance_request_over_the_limit_is_refused() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("limit");
    let app = unique("test.win.limit");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).max_message_size(256).start());
    primary.set_waker(|| {});
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    let mut big = LocalSocket::connect(&pipe).unwrap();
    let line = format!("{{\"v\":1,\"argv\":[\"{}\"]}}\n", "x".repeat(4096));
    big.write_all(line.as_bytes()).unwrap();
    let reply = read_line(&big);
    assert!(reply.contains("message too large"), "{reply:?}");

    let b = builder(dir.path(), &app, &["prog", "small"]).max_message_size(256);
    let launch = thread::spawn(move || b.send());
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
    assert_eq!(request.args(), [OsString::from("small")]);
    request.reply(Reply::ok()).unwrap();
    assert!(launch.join().unwrap().unwrap().is_ok());
}

/// The bound on held connections holds on pipes: past 512 silent ones the oldest is shed
/// with a "busy" reply (retry), so a flood holds bounded memory and handles.
#[test]
fn instance_oldest_silent_pipe_is_shed_past_the_bound() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let dir = TempDir::new("shed");
    let app = unique("test.win.shed");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    primary.set_waker(|| {});
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    let t = Instant::now();
    let silent: Vec<LocalSocket> = (0..513).map(|_| LocalSocket::connect(&pipe).unwrap()).collect();
    let connecting = t.elapsed();
    let first = read_line(&silent[0]);
    // Each is told "no request within 2.0s" at its deadline: only a first one still held
    // when the 513th came can have been shed (connecting took less than its deadline).
    if connecting < Duration::from_millis(1500) {
        assert!(first.contains("busy"), "{first:?} (513 connected in {connecting:?})");
    } else {
        eprintln!("513 connections took {connecting:?}: the first may have timed out first");
        assert!(first.contains("busy") || first.contains("no request within"), "{first:?}");
    }
    drop(silent);
    drop(primary);
}

/// Guarantee 8 on pipes: a primary that takes the request but never answers makes the
/// launch fail with `NoReply` after its timeout, not hang.
#[test]
fn instance_unanswered_launch_gets_no_reply() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("noreply");
    let app = unique("test.win.noreply");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let b = builder(dir.path(), &app, &["prog", "x"]).timeout(Duration::from_millis(700));
    let t = Instant::now();
    let launch = thread::spawn(move || b.start());
    // The primary app never looks at its requests.
    let r = launch.join().unwrap();
    assert!(matches!(r, Err(Error::NoReply(_))), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    drop(primary);
}

/// A launch that sends its request but never reads the reply cannot hold the primary
/// either: a reply larger than the pipe's buffer is given up after 2 s instead of
/// blocking, and reported abandoned (not an error: `?` on it is safe).
#[test]
fn instance_reply_to_a_client_that_never_reads_is_bounded() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("deaf");
    let app = unique("test.win.deaf");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    let mut deaf = LocalSocket::connect(&pipe).unwrap();
    deaf.write_all(b"{\"v\":1,\"argv\":[\"deaf\"]}\n").unwrap();
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
    assert_eq!(request.argv(), [OsString::from("deaf")]);
    let t = Instant::now();
    let r = request.reply(Reply::ok().with_stdout("x".repeat(4 << 20)));
    assert_eq!(r.unwrap(), Delivery::Abandoned, "a 4 MiB reply was written to a client that reads nothing");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(10), "took {took:?}");
    drop(deaf);
}

/// A launch that never reads its (small) reply ties nothing up: `reply` returns within
/// about 2 s, and the primary's pipe to it is closed rather than handed to interprocess'
/// linger pool, whose one thread would wait on that launch and leave every pipe dropped
/// later in the process open (their peers never seeing the end).
#[test]
fn instance_deaf_client_leaves_other_pipes_closing() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("linger");
    let app = unique("test.win.linger");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    let mut deaf = LocalSocket::connect(&pipe).unwrap();
    deaf.write_all(b"{\"v\":1,\"argv\":[\"deaf\"]}\n").unwrap();
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
    let t = Instant::now();
    request.reply(Reply::ok()).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "reply took {:?}", t.elapsed());

    // Another connection in this process: its client goes, and the server sees the end.
    let name = unique("after-deaf");
    let mut server = LocalServer::new();
    server.listen(&name).unwrap();
    let mut client = LocalSocket::connect(&name).unwrap();
    let mut accepted = server.accept().unwrap();
    client.write_all(b"x").unwrap();
    let mut b = [0u8];
    accepted.read_exact(&mut b).unwrap();
    drop(client);
    let t = Instant::now();
    let mut rest = Vec::new();
    accepted.read_to_end(&mut rest).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "end seen after {:?}", t.elapsed());
    drop(deaf);
}

/// The receive calls on pipes: `try_recv` alone serves (one turn of the loop on the
/// app's thread), `recv_timeout` says `Timeout`, and a `Stopper` wakes a `requests()`
/// that waits in the loop's completion port on another thread; once stopped, every call
/// says so. Here the thread may not wait yet when `stop` runs; that the stop wakes one
/// that does is `a_stop_wakes_a_receive_call_waiting_in_the_loop` (in the crate, on every
/// platform), which knows it waits.
#[test]
fn instance_receive_calls_serve_time_out_and_stop() {
    use solo_instance::{RecvError, RecvTimeoutError, TryRecvError};
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("recv");
    let app = unique("test.win.recv");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    assert_eq!(primary.try_recv().err(), Some(TryRecvError::Empty));
    assert_eq!(primary.recv_timeout(Duration::from_millis(50)).err(), Some(RecvTimeoutError::Timeout));
    let b = builder(dir.path(), &app, &["prog", "polled"]);
    let launch = thread::spawn(move || b.send());
    let request = util::poll_request(&primary);
    assert_eq!(request.args(), [OsString::from("polled")]);
    request.reply(Reply::ok()).unwrap();
    assert!(launch.join().unwrap().unwrap().is_ok());

    let stopper = primary.stopper();
    let (tx, done) = mpsc::channel();
    let (served_tx, served) = mpsc::channel();
    let serving = thread::spawn(move || {
        let mut n = 0;
        for request in primary.requests() {
            request.reply(Reply::ok()).unwrap();
            n += 1;
            served_tx.send(()).unwrap();
        }
        tx.send(n).unwrap();
        primary
    });
    let b = builder(dir.path(), &app, &["prog", "served"]);
    let launch = thread::spawn(move || b.send());
    served.recv_timeout(Duration::from_secs(20)).expect("requests() did not serve the launch");
    assert!(launch.join().unwrap().unwrap().is_ok());
    stopper.stop();
    assert_eq!(done.recv_timeout(Duration::from_secs(20)).expect("stop did not wake requests()"), 1);
    let primary = serving.join().unwrap();
    assert_eq!(primary.try_recv().err(), Some(TryRecvError::Stopped));
    assert_eq!(primary.recv().err(), Some(RecvError));
    assert_eq!(primary.recv_timeout(Duration::from_secs(1)).err(), Some(RecvTimeoutError::Stopped));
}

/// The budget of requests the app holds counts what each pins on Windows: its pipe keeps
/// one overlapped read in flight, of up to 64 KiB, until the request is dropped. So an app
/// that keeps launches' requests unanswered holds a bounded number of them (16 MiB of
/// budget: some 250), not tens of thousands of small ones (some 3 GiB of read buffers);
/// past that, launches are told to retry.
#[test]
fn instance_requests_held_by_the_app_count_their_pipes_read_buffers() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let dir = TempDir::new("heldbudget");
    let app = unique("test.win.heldbudget");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    let mut held = Vec::new();
    let mut clients = Vec::new();
    let busy = loop {
        assert!(held.len() < 1000, "1000 requests held, and no launch was told to retry");
        let client = std::sync::Arc::new(LocalSocket::connect(&pipe).unwrap());
        (&*client).write_all(b"{\"v\":1,\"argv\":[\"held\"]}\n").unwrap();
        // The request reaches the app, or its launch is told to retry.
        let (tx, replied) = mpsc::channel();
        let reader = std::sync::Arc::clone(&client);
        thread::spawn(move || {
            let _ = tx.send(read_line(&reader));
        });
        let request = loop {
            if let Ok(r) = primary.try_recv() {
                break Some(r);
            }
            if let Ok(line) = replied.try_recv() {
                assert!(line.contains("busy"), "{line:?}");
                break None;
            }
            thread::yield_now();
        };
        match request {
            Some(r) => held.push(r),
            None => break held.len(),
        }
        clients.push(client);
    };
    eprintln!("the launch after {busy} held requests was told to retry");
    assert!(busy >= 64, "only {busy} requests held");
    drop(held);
    drop(primary);
}

/// Requests the app keeps past the primary's drop hold no pipe instance: the drop ends
/// their clients (each reads the end while the app still holds both requests, so no
/// instance is left open, nor its handle and read buffer kept, for the rest of the
/// process), and a reply afterwards reaches nobody.
#[test]
fn instance_request_outliving_its_primary_closes_its_pipe() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("outlive");
    let app = unique("test.win.outlive");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    let mut clients = Vec::new();
    let mut requests = Vec::new();
    for arg in ["first", "second"] {
        let mut client = LocalSocket::connect(&pipe).unwrap();
        client.write_all(format!("{{\"v\":1,\"argv\":[\"{arg}\"]}}\n").as_bytes()).unwrap();
        clients.push(client);
        requests.push(primary.recv_timeout(Duration::from_secs(20)).expect("no request"));
    }
    drop(primary);
    for client in clients {
        let (tx, ended) = mpsc::channel();
        thread::spawn(move || {
            let mut all = String::new();
            let r = (&client).read_to_string(&mut all).map(|_| all);
            let _ = tx.send(r);
        });
        let all = ended.recv_timeout(Duration::from_secs(20)).expect("the pipe was never closed");
        assert!(all.as_deref().map_or(true, str::is_empty), "{all:?}");
    }
    for request in requests {
        assert_eq!(request.reply(Reply::ok()).unwrap(), Delivery::Abandoned);
    }
}

// ---------------------------------------------------------------------------------------
// What Wine cannot show (written for real Windows; under Wine each notes what it saw)
// ---------------------------------------------------------------------------------------

/// Creates directory `dir` with the security descriptor `sddl`.
fn dir_with_sddl(dir: &Path, sddl: &str) {
    use windows_sys::Win32::Security::Authorization::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
    };
    use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
    let wide: Vec<u16> = sddl.encode_utf16().chain([0]).collect();
    let mut sd = std::ptr::null_mut();
    // SAFETY: `wide` is NUL-terminated; `sd` receives a LocalAlloc'd descriptor, freed below.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            wide.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            std::ptr::null_mut(),
        )
    };
    assert_ne!(ok, 0, "{sddl}: {}", std::io::Error::last_os_error());
    let attrs = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd,
        bInheritHandle: 0,
    };
    let path: Vec<u16> = dir.as_os_str().encode_wide().chain([0]).collect();
    // SAFETY: `path` is NUL-terminated; `attrs` points to `sd`, alive until the LocalFree.
    let made = unsafe { windows_sys::Win32::Storage::FileSystem::CreateDirectoryW(path.as_ptr(), &attrs) };
    let err = std::io::Error::last_os_error();
    // SAFETY: allocated by the conversion above, not used after this.
    unsafe { windows_sys::Win32::Foundation::LocalFree(sd) };
    assert_ne!(made, 0, "{}: {err}", dir.display());
}

/// This process's user SID, in string form (from `whoami /user`'s source: the token).
fn my_sid() -> String {
    let name = unique("sid");
    let mut server = LocalServer::new();
    server.listen(&name).unwrap();
    let client = LocalSocket::connect(&name).unwrap();
    client.peer_credentials().unwrap().sid.expect("the pipe's owner").to_string()
}

/// A directory whose DACL lets other users add files (Authenticated Users), or delete what
/// it holds (an inherit-only entry for Everyone), is refused; so is one whose parent lets
/// Everyone delete or rename its children (a junction could take the directory's place).
/// Wine shows a directory's DACL as its Unix mode, without these grants: there this notes
/// what it saw (the decision is `directory_dacl_decision`, in the crate).
#[test]
fn windows_directories_others_may_write_to_are_refused() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let base = TempDir::new("dacl");
    let me = my_sid();
    let mine = format!("O:{me}D:P(A;OICI;FA;;;{me})(A;OICI;FA;;;SY)");
    let app = unique("test.win.dacl");
    for (tag, ace) in [("add-file", "(A;;0x2;;;AU)"), ("delete-child", "(A;OICIIO;0x40;;;WD)")] {
        let d = base.path().join(tag);
        dir_with_sddl(&d, &format!("{mine}{ace}"));
        match builder(&d, &app, &["p"]).start() {
            Err(Error::Insecure(m)) => assert!(m.contains("DACL"), "{tag}: {m}"),
            other if on_wine() => println!("note: Wine kept no {tag} grant on the directory: {other:?}"),
            other => panic!("{tag}: used: {other:?}"),
        }
    }
    let parent = base.path().join("open-parent");
    dir_with_sddl(&parent, &format!("{mine}(A;;0x40;;;WD)"));
    match builder(&parent.join("app"), &app, &["p"]).start() {
        Err(Error::Insecure(m)) => assert!(m.contains("rename"), "{m}"),
        other if on_wine() => println!("note: Wine kept no delete-child grant on the parent: {other:?}"),
        other => panic!("a directory others may rename was used: {other:?}"),
    }
}

/// Windows' mandatory integrity control on the primary's pipe: a client at Low integrity
/// (a sandbox of the same user; here this thread, impersonating a copy of its own token
/// labelled Low) cannot open the primary's pipe, which is labelled at the primary's level
/// with no-write-up; and the primary would drop it anyway. Wine enforces no labels, and
/// shows the server the client's process token rather than its thread's: there this notes
/// what it saw (the primary's check is `elevated_primary_drops_less_trusted_clients`, in
/// the crate, with an injected level).
#[test]
fn windows_a_less_trusted_client_cannot_write_to_the_primary() {
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
    use windows_sys::Win32::Security::{
        DuplicateTokenEx, ImpersonateLoggedOnUser, RevertToSelf, SecurityImpersonation, SetTokenInformation,
        TokenImpersonation, TokenIntegrityLevel, SID_AND_ATTRIBUTES, TOKEN_ADJUST_DEFAULT, TOKEN_DUPLICATE,
        TOKEN_IMPERSONATE, TOKEN_MANDATORY_LABEL, TOKEN_QUERY,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("mic");
    let app = unique("test.win.mic");
    let primary = primary_of(builder(dir.path(), &app, &["p"]).start());
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    let r = thread::spawn(move || {
        let mut process: HANDLE = std::ptr::null_mut();
        let mut low: HANDLE = std::ptr::null_mut();
        // Low integrity: S-1-16-4096.
        let mut sid = [1u8, 1, 0, 0, 0, 0, 0, 16, 0, 0x10, 0, 0];
        // SAFETY: valid out pointers; the handles are closed below; `sid` outlives the call.
        unsafe {
            assert_ne!(OpenProcessToken(GetCurrentProcess(), TOKEN_DUPLICATE | TOKEN_QUERY, &mut process), 0);
            let access = TOKEN_IMPERSONATE | TOKEN_QUERY | TOKEN_ADJUST_DEFAULT;
            let dup = DuplicateTokenEx(
                process,
                access,
                std::ptr::null(),
                SecurityImpersonation,
                TokenImpersonation,
                &mut low,
            );
            assert_ne!(dup, 0, "{}", std::io::Error::last_os_error());
            let label = TOKEN_MANDATORY_LABEL {
                Label: SID_AND_ATTRIBUTES { Sid: sid.as_mut_ptr().cast(), Attributes: 0x20 },
            };
            let size = (size_of::<TOKEN_MANDATORY_LABEL>() + sid.len()) as u32;
            assert_ne!(
                SetTokenInformation(
                    low,
                    TokenIntegrityLevel,
                    (&label as *const TOKEN_MANDATORY_LABEL).cast(),
                    size
                ),
                0
            );
            assert_ne!(ImpersonateLoggedOnUser(low), 0);
        }
        let r = LocalSocket::connect(&pipe).map(|s| {
            let mut s = s;
            let _ = s.write_all(b"{\"v\":1,\"argv\":[\"low\"]}\n");
            s
        });
        // SAFETY: plain calls; the handles were opened above and are not used after this.
        unsafe {
            RevertToSelf();
            CloseHandle(low);
            CloseHandle(process);
        }
        r.map(drop).map_err(|e| e.socket_error())
    })
    .join()
    .unwrap();
    let delivered = primary.recv_timeout(Duration::from_secs(2));
    if on_wine() {
        // Wine also shows the server the client's process token, not its thread's.
        println!(
            "note: Wine enforces no integrity labels: a Low client's connect gave {r:?}, delivered: {}",
            delivered.is_ok()
        );
    } else {
        assert_eq!(r, Err(Some(LocalSocketError::SocketAccess)), "a Low client opened the pipe");
        assert!(delivered.is_err(), "a Low client's request reached the app");
    }
}

/// A release while a request's output is being written to a launch that does not read (its
/// writer thread waits in a write): the write fails at the release, and the pipe instance
/// closes with it, though the app still holds the request and a writer of its output. The
/// System scope's successor binds the fixed name at once, round after round.
#[test]
fn instance_release_closes_a_pipe_whose_output_write_waits() {
    let _w = Watchdog::new(Duration::from_secs(120));
    for round in 0..8 {
        let dir = TempDir::new("heldwrite");
        let app = unique("test.win.heldwrite");
        let b = |argv: &[&str]| builder(dir.path(), &app, argv).scope(solo_instance::Scope::System);
        let primary = primary_of(b(&["p"]).start());
        // Version 2 by hand: it never reads.
        let mut conn = LocalSocket::connect(&primary.socket_path().to_string_lossy()).unwrap();
        conn.write_all(b"{\"v\":2,\"argv\":[\"prog\",\"mute\"]}\n").unwrap();
        let held = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
        let mut out = held.stdout();
        let chunk = noise(64 << 10, round);
        while out.write(&chunk).is_ok() {}
        primary.release();
        let successor = match b(&["next"]).start() {
            Ok(Start::Primary(p)) => p,
            other => panic!("round {round}: the successor is not primary: {other:?}"),
        };
        drop(successor);
        assert!(!held.reply(Reply::ok()).unwrap().is_delivered(), "round {round}");
        drop((out, conn));
    }
}
