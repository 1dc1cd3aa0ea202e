//! The Rust echo example against the project's Qt peer (`tests/qt/qt_peer.cpp`, Qt's own
//! `QLocalServer` and `QLocalSocket`): same names, same file modes, same output lines.
//!
//! Without Qt 5 (pkg-config's `Qt5Network`) each test prints a skip notice and passes,
//! unless `SOLO_REQUIRE_QT=1`, which makes a missing Qt a failure.
#![cfg(unix)]

mod util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use solo_instance::LocalServer;
use util::{mode_of, Proc, TempDir, Watchdog};

const WATCHDOG: Duration = Duration::from_secs(60);

/// The Qt peer, or return from the test (skipped) when Qt is not installed.
macro_rules! qt_peer {
    () => {
        match util::qt_peer() {
            Some(path) => path,
            None => return,
        }
    };
}

/// A command for the Rust echo example (`rust`) or the Qt peer, with `TMPDIR` set, so
/// relative names resolve in the test's own directory.
fn peer(program: &Path, tmpdir: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("TMPDIR", tmpdir);
    cmd
}

fn echo() -> std::path::PathBuf {
    util::example("echo")
}

/// Starts `server NAME 1 [perm]` and returns it with its `LISTENING` line's path.
fn start_server(program: &Path, tmpdir: &str, name: &str, perm: Option<&str>) -> (Proc, String) {
    let mut cmd = peer(program, tmpdir);
    cmd.args(["server", name, "1"]);
    cmd.args(perm);
    let server = Proc::spawn(&mut cmd);
    let line = server.line();
    let path = line
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| {
            panic!("{}: expected LISTENING, got {line:?}; stderr {}", program.display(), server.stderr())
        })
        .to_owned();
    (server, path)
}

/// `server` on one side, `client` on the other, by `name`: one line goes there and back,
/// and the server exits after its one connection.
fn round_trip(server_program: &Path, client_program: &Path, dir: &TempDir, name: &str) {
    let tmpdir = dir.path().to_str().unwrap();
    let (server, listening) = start_server(server_program, tmpdir, name, None);
    let expected_path = if name.starts_with('/') { name.to_owned() } else { format!("{tmpdir}/{name}") };
    assert_eq!(listening, expected_path);
    assert!(Path::new(&listening).exists());

    let message = "hello from the other side";
    let client = Proc::spawn(peer(client_program, tmpdir).args(["client", name, message]));
    let stderr = client.stderr();
    let (status, out) = client.finish();
    assert_eq!(out, vec![format!("echo:{message}")], "client stderr: {stderr}");
    assert!(status.success(), "client: {status}");

    let server_stderr = server.stderr();
    let (status, rest) = server.finish();
    assert!(status.success(), "server: {status}; stderr {server_stderr}");
    assert!(rest.is_empty(), "server printed {rest:?}");
    assert!(!Path::new(&listening).exists(), "the server left its socket file");
}

#[test]
fn qt_client_reaches_rust_server_by_plain_name() {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!();
    let dir = TempDir::new("qc");
    round_trip(&echo(), &qt, &dir, "rust-server");
}

#[test]
fn qt_client_reaches_rust_server_by_path() {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!();
    let dir = TempDir::new("qcp");
    round_trip(&echo(), &qt, &dir, &dir.join("rust.sock"));
}

#[test]
fn rust_client_reaches_qt_server_by_plain_name() {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!();
    let dir = TempDir::new("rc");
    round_trip(&qt, &echo(), &dir, "qt-server");
}

#[test]
fn rust_client_reaches_qt_server_by_path() {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!();
    let dir = TempDir::new("rcp");
    round_trip(&qt, &echo(), &dir, &dir.join("qt.sock"));
}

#[test]
fn access_options_give_the_modes_qt_gives() {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!();
    let echo = echo();
    for (perm, mode) in [("user", 0o700), ("group", 0o070), ("other", 0o007), ("world", 0o777)] {
        let dir = TempDir::new(perm);
        let tmpdir = dir.path().to_str().unwrap();
        let (_rust, rust_path) = start_server(&echo, tmpdir, &dir.join("rust"), Some(perm));
        let (_qt, qt_path) = start_server(&qt, tmpdir, &dir.join("qt"), Some(perm));
        let (rust_mode, qt_mode) = (mode_of(&rust_path), mode_of(&qt_path));
        assert_eq!(rust_mode, qt_mode, "{perm}: Rust {rust_mode:o}, Qt {qt_mode:o}");
        assert_eq!(rust_mode, mode, "{perm}");
        // Neither leaves its private directory behind.
        assert_eq!(dir.entries(), vec!["qt".to_owned(), "rust".to_owned()], "{perm}");
    }
}

#[test]
fn listening_line_matches_qt_for_relative_names() {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!();
    let echo = echo();
    let dir = TempDir::new("tmpdir");
    let base = dir.path().to_str().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let name = util::unique_name("lst");
    // TMPDIR values Qt cleans: a trailing slash, `//`, `.` and `..`; and an empty one,
    // which counts as unset (/tmp).
    for tmpdir in
        [format!("{base}/sub/"), format!("{base}//sub"), format!("{base}/./sub/../sub//"), String::new()]
    {
        let mut lines = Vec::new();
        for program in [&echo, &qt] {
            let (server, path) = start_server(program, &tmpdir, &name, None);
            lines.push(format!("LISTENING {path}"));
            drop(server); // killed: its socket file stays, so remove it for the next one
            std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        assert_eq!(lines[0], lines[1], "TMPDIR={tmpdir:?}: Rust, then Qt");
        let expected_dir = if tmpdir.is_empty() { "/tmp".to_owned() } else { format!("{base}/sub") };
        assert_eq!(lines[0], format!("LISTENING {expected_dir}/{name}"), "TMPDIR={tmpdir:?}");
    }
}

/// Runs `args` with the Rust example and with the Qt peer: both must fail with status 1
/// and print the same one line, which must be `expected`.
fn same_error(qt: &Path, tmpdir: &str, args: &[&str], expected: &str) {
    let mut outputs = Vec::new();
    for program in [echo().as_path(), qt] {
        let (status, out) = util::run(peer(program, tmpdir).args(args));
        assert_eq!(status.code(), Some(1), "{} {args:?}: {out:?}", program.display());
        outputs.push(out);
    }
    assert_eq!(outputs[0], outputs[1], "{args:?}: Rust, then Qt");
    assert_eq!(outputs[0], vec![expected.to_owned()], "{args:?}");
}

#[test]
fn client_errors_print_the_same_line_as_qt() {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!();
    let dir = TempDir::new("cerr");
    let tmpdir = dir.path().to_str().unwrap();
    let not_found = "ERROR 2 QLocalSocket::connectToServer: Invalid name";
    same_error(&qt, tmpdir, &["client", "missing", "hi"], not_found);
    same_error(&qt, tmpdir, &["client", &dir.join("missing"), "hi"], not_found);
    same_error(&qt, tmpdir, &["client", &dir.join("no/such/dir"), "hi"], not_found);
    // A socket file nobody listens on.
    let stale = dir.join("stale");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    same_error(
        &qt,
        tmpdir,
        &["client", &stale, "hi"],
        "ERROR 0 QLocalSocket::connectToServer: Connection refused",
    );
}

#[test]
fn server_errors_print_the_same_line_as_qt() {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!();
    let dir = TempDir::new("serr");
    let tmpdir = dir.path().to_str().unwrap();
    let in_use = "ERROR 8 QLocalServer::listen: Address in use";

    // A live server holds the name, by path and by relative name.
    let path = dir.join("live");
    let mut live = LocalServer::new();
    live.listen(&path).unwrap();
    let id = util::file_id(&path);
    same_error(&qt, tmpdir, &["server", &path], in_use);
    same_error(&qt, tmpdir, &["server", "live"], in_use);
    // Neither took the name or removed the file: the live server still serves.
    assert_eq!(util::file_id(&path), id);
    let client = Proc::spawn(peer(&echo(), tmpdir).args(["client", &path, "still here"]));
    let mut accepted = live.accept().unwrap();
    {
        use std::io::{BufRead, BufReader, Write};
        let mut line = String::new();
        BufReader::new(&accepted).read_line(&mut line).unwrap();
        assert_eq!(line, "still here\n");
        accepted.write_all(b"yes\n").unwrap();
    }
    assert_eq!(client.finish().1, vec!["yes".to_owned()]);

    // A stale socket file holds the name as well.
    let stale = dir.join("stale");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    same_error(&qt, tmpdir, &["server", &stale], in_use);
    assert!(Path::new(&stale).exists());

    // A missing directory is a name error.
    same_error(
        &qt,
        tmpdir,
        &["server", &dir.join("no/such/sock")],
        "ERROR 2 QLocalServer::listen: Name error",
    );
}
