//! The Rust echo example against the project's Qt peer (`tests/qt/qt_peer.cpp`, Qt's own
//! `QLocalServer` and `QLocalSocket`), built against Qt 5 and against Qt 6: same names,
//! same file modes, same output lines, the same error state. Each test runs once per Qt
//! (`qt5::name`, `qt6::name`); where Qt 5 and Qt 6 differ, Qt 6 is the reference and the
//! test states Qt 5's answer.
//!
//! Without a Qt (pkg-config's `Qt5Network` or `Qt6Network`) a test prints a skip notice
//! and passes, unless `SOLO_REQUIRE_QT=1`, which makes a missing Qt a failure.
#![cfg(unix)]

mod util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use solo_instance::{ConnectOptions, LocalServer, LocalSocket, SocketOptions};
use util::{mode_of, unique_name, Proc, Qt, TempDir, Watchdog};

const WATCHDOG: Duration = Duration::from_secs(60);

/// The Qt peer built against `qt`, or return from the test (skipped) when that Qt is not
/// installed.
macro_rules! qt_peer {
    ($qt:expr) => {
        match util::qt_peer_of($qt) {
            Some(path) => path,
            None => return,
        }
    };
}

/// Each test once per Qt: `fn name(qt: Qt)` becomes `qt5::name` and `qt6::name`.
macro_rules! for_each_qt {
    ($($name:ident),* $(,)?) => {
        mod qt5 {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Qt::V5)
                }
            )*
        }
        mod qt6 {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Qt::V6)
                }
            )*
        }
    };
}

for_each_qt!(
    qt_client_reaches_rust_server_by_plain_name,
    qt_client_reaches_rust_server_by_path,
    rust_client_reaches_qt_server_by_plain_name,
    rust_client_reaches_qt_server_by_path,
    access_options_give_the_modes_qt_gives,
    listening_line_matches_qt_for_relative_names,
    client_errors_print_the_same_line_as_qt,
    server_errors_print_the_same_line_as_qt,
    server_error_state_follows_qt,
    adopted_sockets_are_named_as_qt_names_them,
    abstract_names_reach_across,
    accepted_sockets_are_named_as_qt_6_names_them,
    the_longest_path_is_the_kernels,
);

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

fn qt_client_reaches_rust_server_by_plain_name(qt: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt);
    let dir = TempDir::new("qc");
    round_trip(&echo(), &qt, &dir, "rust-server");
}

fn qt_client_reaches_rust_server_by_path(qt: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt);
    let dir = TempDir::new("qcp");
    round_trip(&echo(), &qt, &dir, &dir.join("rust.sock"));
}

fn rust_client_reaches_qt_server_by_plain_name(qt: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt);
    let dir = TempDir::new("rc");
    round_trip(&qt, &echo(), &dir, "qt-server");
}

fn rust_client_reaches_qt_server_by_path(qt: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt);
    let dir = TempDir::new("rcp");
    round_trip(&qt, &echo(), &dir, &dir.join("qt.sock"));
}

fn access_options_give_the_modes_qt_gives(qt: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt);
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

fn listening_line_matches_qt_for_relative_names(qt: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt);
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

fn client_errors_print_the_same_line_as_qt(qt: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt);
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

fn server_errors_print_the_same_line_as_qt(qt: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt);
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

/// The crate's answer to `qt_peer errors DIR`, line for line.
fn rust_error_state(dir: &str) -> Vec<String> {
    let mut server = LocalServer::new();
    let state =
        |step: &str, s: &LocalServer| format!("{step} {} {}", s.server_error().code(), s.error_string());
    // Qt's (result, timedOut): an error is "false, not timed out".
    let (waited, timed_out) = match server.wait_for_new_connection(Some(Duration::ZERO)) {
        Ok(true) => (1, 0),
        Ok(false) => (0, 1),
        Err(_) => (0, 0),
    };
    let mut lines = vec![format!("wait {waited} {timed_out}"), state("not-listening", &server)];
    assert!(server.listen(&format!("{dir}/no/such/sock")).is_err());
    lines.push(state("failed", &server));
    server.listen(&format!("{dir}/ok")).unwrap();
    lines.push(state("listened", &server));
    assert!(server.listen(&format!("{dir}/again")).is_err());
    lines.push(state("again", &server));
    server.close();
    lines.push(state("closed", &server));
    lines
}

/// The server's error state through failures is Qt's: kept through a refused wait, a
/// good listen and a second listen; cleared by close (Qt 5 and Qt 6 agree).
fn server_error_state_follows_qt(qt: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt);
    let (qt_dir, rust_dir) = (TempDir::new("qerr"), TempDir::new("rerr"));
    let (status, qt_lines) = util::run(Command::new(&qt).args(["errors", qt_dir.path().to_str().unwrap()]));
    assert!(status.success(), "{status}");
    let rust_lines = rust_error_state(rust_dir.path().to_str().unwrap());
    assert_eq!(rust_lines, qt_lines, "Rust, then Qt");
    assert_eq!(rust_lines[3], "listened 2 QLocalServer::listen: Name error");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The crate's `ADOPTED` line for a socket bound at `addr`.
fn rust_adopted(addr: &std::os::unix::net::SocketAddr) -> String {
    let listener = std::os::unix::net::UnixListener::bind_addr(addr).unwrap();
    let mut server = LocalServer::new();
    server.listen_fd(std::os::fd::OwnedFd::from(listener)).unwrap();
    use std::os::unix::ffi::OsStrExt;
    let full = server.full_server_name().map(|p| p.as_os_str().as_bytes().to_vec()).unwrap_or_default();
    let name = server.server_name().unwrap_or_default().as_bytes().to_vec();
    let abstract_ns = server.socket_options().contains(SocketOptions::ABSTRACT_NAMESPACE);
    format!("ADOPTED {} {} {}", hex(&full), hex(&name), abstract_ns as u8)
}

/// `listen(qintptr)` / `listen_fd`: a path is named by its path and last part (Qt 5 and 6);
/// an abstract name (Linux) by itself, with the abstract option set, as Qt 6 names it.
fn adopted_sockets_are_named_as_qt_names_them(qt_version: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt_version);
    let dir = TempDir::new("adopt");
    let path = dir.join("adopted.sock");
    let (status, qt_lines) = util::run(Command::new(&qt).args(["adopt", &path, "path"]));
    assert!(status.success(), "{status}: {qt_lines:?}");
    let addr = std::os::unix::net::SocketAddr::from_pathname(&path).unwrap();
    assert_eq!(vec![rust_adopted(&addr)], qt_lines, "path: Rust, then Qt");
    assert_eq!(qt_lines[0], format!("ADOPTED {} {} 0", hex(path.as_bytes()), hex(b"adopted.sock")));

    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("{}/last", unique_name("adopt"));
        // Qt's peer binds the name and exits (freeing it); then the crate binds it.
        let (status, qt_lines) = util::run(Command::new(&qt).args(["adopt", &name, "abstract"]));
        assert!(status.success(), "{status}: {qt_lines:?}");
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rust = rust_adopted(&addr);
        assert_eq!(rust, format!("ADOPTED {} {} 1", hex(name.as_bytes()), hex(name.as_bytes())));
        match qt_version {
            Qt::V6 => assert_eq!(vec![rust], qt_lines, "abstract: Rust, then Qt 6"),
            // Qt 5: `@name`, the part after the last `/`, and no abstract option.
            Qt::V5 => assert_eq!(
                qt_lines,
                vec![format!("ADOPTED {} {} 0", hex(format!("@{name}").as_bytes()), hex(b"last"))]
            ),
        }
    }
}

/// Abstract names (Linux; Qt 6's `AbstractNamespaceOption`) reach across both ways. Qt 5
/// has no such option: its peer says so.
fn abstract_names_reach_across(qt_version: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt_version);
    if !cfg!(target_os = "linux") {
        return;
    }
    let dir = TempDir::new("abs");
    let tmpdir = dir.path().to_str().unwrap();
    let name = unique_name("abs");
    if qt_version == Qt::V5 {
        let (status, out) = util::run(peer(&qt, tmpdir).args(["server", &name, "1", "abstract"]));
        assert_eq!((status.code(), out), (Some(1), vec!["ERROR unsupported".to_owned()]));
        return;
    }
    let abstract_ns = ConnectOptions::new().socket_options(SocketOptions::ABSTRACT_NAMESPACE);

    // A Qt server, a Rust client.
    let (server, listening) = start_server(&qt, tmpdir, &name, Some("abstract"));
    assert_eq!(listening, name, "Qt 6's fullServerName of an abstract server is the name");
    assert!(dir.entries().is_empty(), "an abstract server made a file");
    {
        use std::io::{BufRead, BufReader, Write};
        let mut client = LocalSocket::connect_with(&name, abstract_ns).unwrap();
        client.write_all(b"to qt\n").unwrap();
        let mut line = String::new();
        BufReader::new(&client).read_line(&mut line).unwrap();
        assert_eq!(line, "echo:to qt\n");
    }
    assert!(server.finish().0.success());

    // A Rust server, a Qt client.
    let mut rust = LocalServer::new();
    rust.set_socket_options(SocketOptions::ABSTRACT_NAMESPACE);
    rust.listen(&name).unwrap();
    let client = Proc::spawn(peer(&qt, tmpdir).args(["client", &name, "to rust", "abstract"]));
    {
        use std::io::{BufRead, BufReader, Write};
        let mut accepted = rust.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&accepted).read_line(&mut line).unwrap();
        accepted.write_all(format!("echo:{line}").as_bytes()).unwrap();
    }
    let stderr = client.stderr();
    assert_eq!(client.finish().1, vec!["echo:to rust".to_owned()], "{stderr}");
}

/// The crate's `ACCEPTED` line: a server on `path`, with `options`, accepts a client.
fn rust_accepted(path: &str, options: SocketOptions) -> String {
    let mut server = LocalServer::new();
    server.set_socket_options(options);
    server.listen(path).unwrap();
    let _client = LocalSocket::connect(path).unwrap();
    let accepted = server.accept().unwrap();
    use std::os::unix::ffi::OsStrExt;
    let full = accepted.full_server_name().map(|p| p.as_os_str().as_bytes().to_vec()).unwrap_or_default();
    format!("ACCEPTED {} {}", hex(&full), hex(accepted.server_name().unwrap_or_default().as_bytes()))
}

/// An accepted socket's names: Qt 6 gives the server's path and its last part (Qt 5 gives
/// none). With access options Qt 6 gives the temporary path it bound first; the crate
/// gives the path the socket lives at.
fn accepted_sockets_are_named_as_qt_6_names_them(qt_version: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt_version);
    let dir = TempDir::new("acc");
    let path = dir.join("accepted.sock");
    let expected = format!("ACCEPTED {} {}", hex(path.as_bytes()), hex(b"accepted.sock"));
    // Qt's peer listens, accepts, prints and exits (removing its socket); then the crate.
    let (status, qt_plain) = util::run(Command::new(&qt).args(["accepted", &path]));
    assert!(status.success(), "{status}: {qt_plain:?}");
    let (status, qt_user) = util::run(Command::new(&qt).args(["accepted", &path, "user"]));
    assert!(status.success(), "{status}: {qt_user:?}");
    assert_eq!(rust_accepted(&path, SocketOptions::empty()), expected);
    assert_eq!(rust_accepted(&path, SocketOptions::USER_ACCESS), expected);
    match qt_version {
        Qt::V6 => {
            assert_eq!(qt_plain, vec![expected]);
            // `<dir>/.XXXXXX/s`, since removed, named `s`.
            let temp_prefix = hex(format!("{}/.", dir.path().display()).as_bytes());
            let line = &qt_user[0];
            assert!(line.starts_with(&format!("ACCEPTED {temp_prefix}")), "{line}");
            assert!(line.ends_with(&format!("{} {}", hex(b"/s"), hex(b"s"))), "{line}");
        }
        Qt::V5 => {
            assert_eq!(qt_plain, vec!["ACCEPTED  ".to_owned()]);
            assert_eq!(qt_user, vec!["ACCEPTED  ".to_owned()]);
        }
    }
}

/// A path of 107 bytes (Linux's `sun_path` limit) is listened on by the crate and by
/// Qt 5; Qt 6 reserves two bytes for every name and refuses it with a stale `errno`
/// (README, "Where Qt is wrong").
fn the_longest_path_is_the_kernels(qt_version: Qt) {
    let _w = Watchdog::new(WATCHDOG);
    let qt = qt_peer!(qt_version);
    if !cfg!(target_os = "linux") {
        return;
    }
    let dir = TempDir::new("p107");
    let tmpdir = dir.path().to_str().unwrap();
    let base = format!("{tmpdir}/");
    let path = format!("{base}{}", "x".repeat(107 - base.len()));
    assert_eq!(path.len(), solo_instance::MAX_SOCKET_PATH);
    let mut rust = LocalServer::new();
    rust.listen(&path).unwrap();
    rust.close();
    match qt_version {
        Qt::V5 => {
            let (_server, listening) = start_server(&qt, tmpdir, &path, None);
            assert_eq!(listening, path);
        }
        Qt::V6 => {
            let (status, out) = util::run(peer(&qt, tmpdir).args(["server", &path]));
            assert_eq!(status.code(), Some(1), "{out:?}");
            // The code and text depend on the errno left from before ("Name error" from a
            // stat, "Unknown error 95"): only the refusal is Qt 6's rule.
            assert!(out[0].starts_with("ERROR ") && out[0].contains(" QLocalServer::listen: "), "{out:?}");
        }
    }
}
