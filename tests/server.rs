//! `LocalServer` and `LocalSocket` against real Unix sockets: every member of Qt's
//! `QLocalServer` port, its error paths, and where it does better than Qt.
#![cfg(unix)]

mod util;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use solo_instance::{
    ConnectOptions, Error, LocalServer, LocalSocket, LocalSocketError, SocketOptions,
    DEFAULT_LISTEN_BACKLOG_SIZE, DEFAULT_MAX_PENDING_CONNECTIONS, MAX_SOCKET_PATH,
};
use std::ffi::OsStr;
use std::process::Command;

use util::{example, file_id, mode_of, run, unique_name, TempDir, Watchdog};

const WATCHDOG: Duration = Duration::from_secs(30);
/// Long enough for anything that should happen at once on a loaded machine.
const SOON: Duration = Duration::from_secs(10);

/// Qt's code and text of an error that must be a socket error.
fn socket_err<T: std::fmt::Debug>(r: Result<T, Error>) -> (LocalSocketError, String) {
    match r {
        Err(Error::Socket(e)) => (e.kind(), e.message().to_owned()),
        other => panic!("expected a socket error, got {other:?}"),
    }
}

fn listening(name: &str) -> LocalServer {
    let mut server = LocalServer::new();
    server.listen(name).unwrap_or_else(|e| panic!("listen {name}: {e}"));
    server
}

fn listening_with(name: &str, options: SocketOptions) -> LocalServer {
    let mut server = LocalServer::new();
    server.set_socket_options(options);
    server.listen(name).unwrap_or_else(|e| panic!("listen {name} with {options:?}: {e}"));
    server
}

/// Connects, accepts, and checks that a byte goes each way.
fn assert_serves(server: &LocalServer, name: &str) {
    assert_serves_with(server, name, ConnectOptions::new());
}

fn assert_serves_with(server: &LocalServer, name: &str, options: ConnectOptions) {
    let mut client =
        LocalSocket::connect_with(name, options).unwrap_or_else(|e| panic!("connect {name}: {e}"));
    client.write_all(b"q").unwrap();
    assert!(server.wait_for_new_connection(Some(SOON)).unwrap(), "no connection arrived at {name}");
    let mut accepted = server.next_pending_connection().expect("a pending connection");
    let mut byte = [0u8];
    accepted.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"q");
    accepted.write_all(b"r").unwrap();
    client.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"r");
}

/// A socket file nobody listens on: std binds it, and drops the listener without
/// unlinking (as a crashed server leaves it).
fn stale_socket(path: &str) {
    drop(UnixListener::bind(path).unwrap());
    assert!(Path::new(path).exists());
}

/// The first byte a client sent on `socket`.
fn first_byte(socket: &mut LocalSocket) -> u8 {
    let mut byte = [0u8];
    socket.read_exact(&mut byte).unwrap();
    byte[0]
}

/// Connects a client to `name` and sends it one byte.
fn client_sending(name: &str, byte: u8) -> LocalSocket {
    let mut c = LocalSocket::connect(name).unwrap_or_else(|e| panic!("connect {name}: {e}"));
    c.write_all(&[byte]).unwrap();
    c
}

// ---- listen, names, close ------------------------------------------------------------

#[test]
fn listen_relative_name_is_in_temp_dir() {
    let _w = Watchdog::new(WATCHDOG);
    let name = unique_name("rel");
    let mut server = LocalServer::new();
    assert!(!server.is_listening());
    assert_eq!(server.server_name(), None);
    assert_eq!(server.full_server_name(), None);
    server.listen(&name).unwrap();
    let full = solo_instance::default_socket_dir().join(&name);
    assert!(server.is_listening());
    assert_eq!(server.server_name(), Some(name.as_str()));
    assert_eq!(server.full_server_name(), Some(full.as_path()));
    assert!(full.exists(), "{} was not created", full.display());
    // A client finds it by the plain name and by the path.
    assert_serves(&server, &name);
    assert_serves(&server, full.to_str().unwrap());
    server.close();
    assert!(!server.is_listening());
    assert_eq!(server.server_name(), None);
    assert_eq!(server.full_server_name(), None);
    assert!(!full.exists(), "close left {}", full.display());
}

#[test]
fn listen_absolute_path() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("abs");
    let path = dir.join("sock");
    let mut server = listening(&path);
    assert_eq!(server.server_name(), Some(path.as_str()));
    assert_eq!(server.full_server_name(), Some(Path::new(&path)));
    assert_serves(&server, &path);
    server.close();
    assert!(!Path::new(&path).exists(), "close left the socket file");
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn listen_again_after_close_and_drop_unlinks() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("again");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let mut server = listening(&a);
    server.close();
    server.close(); // a second close does nothing
    server.listen(&b).unwrap();
    assert_eq!(server.server_name(), Some(b.as_str()));
    assert_serves(&server, &b);
    assert_eq!(dir.entries(), vec!["b".to_owned()]);
    drop(server);
    assert_eq!(dir.entries(), Vec::<String>::new(), "drop left the socket file");
}

#[test]
fn listen_twice_is_an_operation_error() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("twice");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let mut server = listening(&a);
    let (kind, msg) = socket_err(server.listen(&b));
    assert_eq!(kind, LocalSocketError::Operation);
    assert!(msg.starts_with("QLocalServer::listen: "), "{msg}");
    // As Qt 6: a call refused for the server's state leaves the last error as it was.
    assert_eq!(server.server_error(), LocalSocketError::Unknown);
    assert_eq!(server.error_string(), "");
    // Still listening on the first name, and nothing was created at the second.
    assert!(server.is_listening());
    assert_eq!(server.server_name(), Some(a.as_str()));
    assert!(!Path::new(&b).exists());
    assert_serves(&server, &a);
}

#[test]
fn server_error_is_kept_by_a_good_listen_and_cleared_by_close() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("errstr");
    let mut server = LocalServer::new();
    assert_eq!(server.server_error(), LocalSocketError::Unknown);
    assert_eq!(server.error_string(), "");
    let missing = dir.join("no/such/dir/sock");
    let (kind, msg) = socket_err(server.listen(&missing));
    assert_eq!((kind, msg.as_str()), (LocalSocketError::ServerNotFound, "QLocalServer::listen: Name error"));
    assert_eq!(server.server_error(), LocalSocketError::ServerNotFound);
    assert_eq!(server.error_string(), "QLocalServer::listen: Name error");
    assert!(!server.is_listening());
    assert_eq!(server.server_name(), None);
    // As Qt 6: the last error stays through a successful listen (and a refused call)...
    server.listen(&dir.join("ok")).unwrap();
    assert_eq!(server.server_error(), LocalSocketError::ServerNotFound);
    assert_eq!(server.error_string(), "QLocalServer::listen: Name error");
    assert!(server.listen(&dir.join("again")).is_err());
    assert_eq!(server.server_error(), LocalSocketError::ServerNotFound);
    // ...until close clears it.
    server.close();
    assert_eq!(server.server_error(), LocalSocketError::Unknown);
    assert_eq!(server.error_string(), "");
}

/// What is at `path` and must stay there when a second `listen` fails.
enum Occupant {
    Live(LocalServer),
    StaleSocket,
    PlainFile,
}

fn occupy(path: &str, occupant: &str, options: SocketOptions) -> Occupant {
    match occupant {
        "live" => Occupant::Live(listening_with(path, options)),
        "stale" => {
            stale_socket(path);
            Occupant::StaleSocket
        }
        "file" => {
            std::fs::write(path, b"not a socket").unwrap();
            Occupant::PlainFile
        }
        _ => unreachable!(),
    }
}

#[test]
fn listen_on_a_name_in_use_is_address_in_use_and_removes_nothing() {
    let _w = Watchdog::new(WATCHDOG);
    let opts = [
        SocketOptions::empty(),
        SocketOptions::USER_ACCESS,
        SocketOptions::GROUP_ACCESS,
        SocketOptions::WORLD_ACCESS,
    ];
    for occupant in ["live", "stale", "file"] {
        for first in opts {
            if occupant != "live" && first != SocketOptions::empty() {
                continue;
            }
            for second in opts {
                let dir = TempDir::new("inuse");
                let path = dir.join("sock");
                let held = occupy(&path, occupant, first);
                let before = file_id(&path);
                let what = format!("{occupant} {first:?} then {second:?}");

                let mut server = LocalServer::new();
                server.set_socket_options(second);
                let (kind, msg) = socket_err(server.listen(&path));
                assert_eq!(kind, LocalSocketError::AddressInUse, "{what}");
                assert_eq!(msg, "QLocalServer::listen: Address in use", "{what}");
                assert_eq!(server.server_error(), LocalSocketError::AddressInUse, "{what}");
                assert!(!server.is_listening(), "{what}");
                drop(server);

                // Nothing was replaced or removed, and no private directory is left over.
                assert_eq!(file_id(&path), before, "{what}: the file at the name changed");
                assert_eq!(dir.entries(), vec!["sock".to_owned()], "{what}");
                match held {
                    Occupant::Live(first_server) => assert_serves(&first_server, &path),
                    Occupant::StaleSocket => {
                        let (kind, _) = socket_err(LocalSocket::connect(&path));
                        assert_eq!(kind, LocalSocketError::ConnectionRefused, "{what}");
                    }
                    Occupant::PlainFile => {
                        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket", "{what}")
                    }
                }
            }
        }
    }
}

#[test]
fn listen_in_a_missing_directory_is_a_name_error() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("nodir");
    for (path, opts) in [
        (dir.join("missing/sock"), SocketOptions::empty()),
        (dir.join("missing/sock"), SocketOptions::USER_ACCESS),
        ("/proc/solo-instance-test.sock".to_owned(), SocketOptions::empty()),
    ] {
        let mut server = LocalServer::new();
        server.set_socket_options(opts);
        let (kind, msg) = socket_err(server.listen(&path));
        assert_eq!(kind, LocalSocketError::ServerNotFound, "{path} {opts:?}");
        assert_eq!(msg, "QLocalServer::listen: Name error", "{path} {opts:?}");
        assert_eq!(kind.code(), 2);
    }
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn listen_in_an_unwritable_directory_is_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let _w = Watchdog::new(WATCHDOG);
    if util::my_uid_gid().0 == 0 {
        eprintln!("skipping: root may write to any directory");
        return;
    }
    let dir = TempDir::new("ro");
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    for opts in [SocketOptions::empty(), SocketOptions::USER_ACCESS] {
        let mut server = LocalServer::new();
        server.set_socket_options(opts);
        let (kind, msg) = socket_err(server.listen(ro.join("sock").to_str().unwrap()));
        assert_eq!(kind, LocalSocketError::SocketAccess, "{opts:?}");
        assert_eq!(msg, "QLocalServer::listen: Permission denied", "{opts:?}");
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn listen_on_a_too_long_name_says_the_limit() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("long");
    let base_len = dir.path().as_os_str().len() + 1;
    // Exactly one byte too long, and far too long; relative and absolute; with and
    // without access options (which bind a longer temporary path first).
    let just_over = "x".repeat(MAX_SOCKET_PATH + 1 - base_len);
    let names = [dir.join(&just_over), dir.join(&"y".repeat(300)), "z".repeat(200)];
    for name in &names {
        for opts in [SocketOptions::empty(), SocketOptions::USER_ACCESS] {
            let mut server = LocalServer::new();
            server.set_socket_options(opts);
            let (kind, msg) = socket_err(server.listen(name));
            assert_eq!(kind, LocalSocketError::ServerNotFound, "{} bytes {opts:?}", name.len());
            assert!(msg.starts_with("QLocalServer::listen: Name error"), "{msg}");
            assert!(msg.contains(&MAX_SOCKET_PATH.to_string()), "the limit is missing from {msg:?}");
            assert_eq!(server.error_string(), msg);
        }
    }
    assert_eq!(dir.entries(), Vec::<String>::new());

    // The longest path that fits works.
    let fits = dir.join(&"x".repeat(MAX_SOCKET_PATH - base_len));
    assert_eq!(fits.len(), MAX_SOCKET_PATH);
    let server = listening(&fits);
    assert_serves(&server, &fits);
}

#[test]
fn listen_on_an_empty_name_is_a_name_error() {
    let _w = Watchdog::new(WATCHDOG);
    let mut server = LocalServer::new();
    let (kind, msg) = socket_err(server.listen(""));
    assert_eq!((kind, msg.as_str()), (LocalSocketError::ServerNotFound, "QLocalServer::listen: Name error"));
    assert!(!server.is_listening());
}

// ---- connect errors ---------------------------------------------------------------------

#[test]
fn unix_connect_to_nothing_is_server_not_found() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("none");
    for name in [unique_name("nobody"), dir.join("nobody"), dir.join("no/dir/sock"), String::new()] {
        let (kind, msg) = socket_err(LocalSocket::connect(&name));
        assert_eq!(kind, LocalSocketError::ServerNotFound, "{name:?}");
        assert_eq!(msg, "QLocalSocket::connectToServer: Invalid name", "{name:?}");
    }
}

#[test]
fn connect_to_a_stale_socket_is_connection_refused() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("stale");
    let path = dir.join("sock");
    stale_socket(&path);
    let (kind, msg) = socket_err(LocalSocket::connect(&path));
    assert_eq!(kind, LocalSocketError::ConnectionRefused);
    assert_eq!(msg, "QLocalSocket::connectToServer: Connection refused");
    // With a timeout too: refused at once, not a timeout.
    let (kind, _) = socket_err(ConnectOptions::new().timeout(Some(SOON)).connect(&path));
    assert_eq!(kind, LocalSocketError::ConnectionRefused);
}

// ---- remove_server -----------------------------------------------------------------------

#[test]
fn remove_server_clears_a_stale_socket_then_listen_works() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("rm");
    let path = dir.join("sock");
    stale_socket(&path);
    let mut server = LocalServer::new();
    assert_eq!(socket_err(server.listen(&path)).0, LocalSocketError::AddressInUse);
    LocalServer::remove_server(&path).unwrap();
    assert!(!Path::new(&path).exists());
    server.listen(&path).unwrap();
    assert_serves(&server, &path);

    // By relative name, too; and a missing file is no error.
    let name = unique_name("rmrel");
    let full = solo_instance::default_socket_dir().join(&name);
    stale_socket(full.to_str().unwrap());
    LocalServer::remove_server(&name).unwrap();
    assert!(!full.exists());
    LocalServer::remove_server(&name).unwrap();
    LocalServer::remove_server("").unwrap();
}

// ---- close only unlinks its own file ---------------------------------------------------

#[test]
fn close_leaves_a_socket_that_replaced_ours() {
    let _w = Watchdog::new(WATCHDOG);
    for opts in [SocketOptions::empty(), SocketOptions::USER_ACCESS] {
        let dir = TempDir::new("repl");
        let path = dir.join("sock");
        let mut first = listening_with(&path, opts);
        std::fs::remove_file(&path).unwrap();
        let other = UnixListener::bind(&path).unwrap();
        let other_id = file_id(&path);
        first.close();
        assert!(Path::new(&path).exists(), "{opts:?}: close removed another server's socket");
        assert_eq!(file_id(&path), other_id);
        // And the other server is still reachable.
        let _c = UnixStream::connect(&path).unwrap();
        other.accept().unwrap();
    }
}

#[test]
fn close_with_the_acceptor_thread_running_returns_promptly() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("closecb");
    let path = dir.join("sock");
    let mut server = LocalServer::new();
    let (tx, rx) = mpsc::channel();
    server.on_new_connection(move |pending| {
        while let Some(s) = pending.next_pending_connection() {
            let _ = tx.send(s);
        }
    });
    server.listen(&path).unwrap();
    // The acceptor thread is up and serving...
    let _c = LocalSocket::connect(&path).unwrap();
    rx.recv_timeout(SOON).expect("the callback ran");
    // ...and blocked in poll when close comes: close must wake and join it.
    let started = Instant::now();
    server.close();
    assert!(started.elapsed() < SOON, "close took {:?}", started.elapsed());
    assert!(!server.is_listening());
    assert!(!Path::new(&path).exists());
    // The callback was dropped with the thread's work done: no more sockets come.
    assert!(rx.try_recv().is_err());
    // Closing a server whose acceptor never got a connection is prompt too.
    server.listen(&path).unwrap();
    server.close();
    assert!(!Path::new(&path).exists());
}

// ---- listen_fd ---------------------------------------------------------------------------

#[test]
fn listen_fd_adopts_a_bound_socket_and_never_unlinks_it() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("fd");
    let path = dir.join("adopted.sock");
    let std_listener = UnixListener::bind(&path).unwrap();
    let mut server = LocalServer::new();
    server.listen_fd(OwnedFd::from(std_listener)).unwrap();
    assert!(server.is_listening());
    assert_eq!(server.server_name(), Some("adopted.sock"));
    assert_eq!(server.full_server_name(), Some(Path::new(&path)));
    assert_serves(&server, &path);
    // listen_fd while listening fails like listen does.
    let again = UnixListener::bind(dir.join("second")).unwrap();
    assert_eq!(socket_err(server.listen_fd(OwnedFd::from(again))).0, LocalSocketError::Operation);
    server.close();
    assert!(!server.is_listening());
    assert!(Path::new(&path).exists(), "close unlinked an adopted socket's path");
    // The adopted descriptor was closed: nobody listens there any more.
    assert_eq!(socket_err(LocalSocket::connect(&path)).0, LocalSocketError::ConnectionRefused);
}

#[test]
fn listen_fd_refuses_sockets_qt_would_take_and_never_serve() {
    let _w = Watchdog::new(WATCHDOG);
    let mut server = LocalServer::new();
    // Qt's listen(qintptr) returns true for these and then accepts nothing.
    let (half, _other) = UnixStream::pair().unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for fd in [OwnedFd::from(half), OwnedFd::from(tcp)] {
        let (kind, msg) = socket_err(server.listen_fd(fd));
        assert_eq!(kind, LocalSocketError::UnsupportedSocketOperation);
        assert_eq!(msg, "QLocalServer::listen: The socket operation is not supported");
        assert_eq!(server.server_error(), LocalSocketError::UnsupportedSocketOperation);
        assert!(!server.is_listening());
        assert!(server.socket_descriptor().is_none());
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn listen_fd_on_an_abstract_socket_is_named_as_qt_6_names_it() {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let _w = Watchdog::new(WATCHDOG);
    let name = unique_name("fdabs");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let std_listener = UnixListener::bind_addr(&addr).unwrap();
    let mut server = LocalServer::new();
    server.listen_fd(OwnedFd::from(std_listener)).unwrap();
    // Qt 6: the name itself, no `@` (Qt 5 gave `@name`), and the abstract option set.
    assert_eq!(server.server_name(), Some(name.as_str()));
    assert_eq!(server.full_server_name(), Some(Path::new(&name)));
    assert!(server.socket_options().contains(SocketOptions::ABSTRACT_NAMESPACE));
    assert_serves_with(
        &server,
        &name,
        ConnectOptions::new().socket_options(SocketOptions::ABSTRACT_NAMESPACE),
    );
}

// ---- backlog and pending limits ----------------------------------------------------------

#[test]
fn defaults_and_setters() {
    let mut server = LocalServer::new();
    assert_eq!(server.max_pending_connections(), 30);
    assert_eq!(DEFAULT_MAX_PENDING_CONNECTIONS, 30);
    assert_eq!(server.listen_backlog_size(), 50);
    assert_eq!(DEFAULT_LISTEN_BACKLOG_SIZE, 50);
    assert_eq!(server.socket_options(), SocketOptions::empty());
    server.set_max_pending_connections(3);
    server.set_listen_backlog_size(7);
    server.set_socket_options(SocketOptions::GROUP_ACCESS | SocketOptions::USER_ACCESS);
    assert_eq!(server.max_pending_connections(), 3);
    assert_eq!(server.listen_backlog_size(), 7);
    assert_eq!(server.socket_options(), SocketOptions::USER_ACCESS | SocketOptions::GROUP_ACCESS);
    assert!(!server.has_pending_connections());
    assert!(server.next_pending_connection().is_none());
    // Not listening: nothing to wait for.
    assert_eq!(
        socket_err(server.wait_for_new_connection(Some(Duration::ZERO))).0,
        LocalSocketError::Operation
    );
    assert!(server.incoming().next().is_none());
}

/// How many clients connect (with a short timeout each) before the backlog is full.
fn connects_until_full(path: &str, at_most: usize) -> (Vec<LocalSocket>, Option<LocalSocketError>) {
    let mut clients = Vec::new();
    for _ in 0..at_most {
        match ConnectOptions::new().timeout(Some(Duration::from_millis(300))).connect(path) {
            Ok(c) => clients.push(c),
            Err(e) => return (clients, e.socket_error()),
        }
    }
    (clients, None)
}

#[test]
fn listen_backlog_size_reaches_listen() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("backlog");
    let path = dir.join("sock");
    let mut server = LocalServer::new();
    server.set_listen_backlog_size(1);
    server.listen(&path).unwrap();
    // Nobody accepts: the kernel queues at most backlog (+1 on Linux) clients.
    let (clients, err) = connects_until_full(&path, 10);
    assert!((1..=2).contains(&clients.len()), "{} clients fit a backlog of 1", clients.len());
    assert_eq!(err, Some(LocalSocketError::SocketTimeout));
    // Once one is accepted, there is room again.
    assert!(server.wait_for_new_connection(Some(SOON)).unwrap());
    ConnectOptions::new().timeout(Some(SOON)).connect(&path).unwrap();

    // The default backlog takes more.
    let path2 = dir.join("sock2");
    let _server2 = listening(&path2);
    let (clients, err) = connects_until_full(&path2, 10);
    assert_eq!((clients.len(), err), (10, None));
}

#[test]
fn pending_queue_stops_at_the_limit_in_fifo_order() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("max");
    let path = dir.join("sock");
    let mut server = listening(&path);
    server.set_max_pending_connections(2);
    // Four clients are in the backlog, each with its own byte, before the server looks.
    let _clients: Vec<LocalSocket> = (b'a'..=b'd').map(|b| client_sending(&path, b)).collect();

    assert!(server.wait_for_new_connection(Some(SOON)).unwrap());
    assert_eq!(server.pending_connections().len(), 2, "the queue went past its limit");
    // Full: waiting again accepts nothing more.
    assert!(server.wait_for_new_connection(Some(SOON)).unwrap());
    assert_eq!(server.pending_connections().len(), 2);

    let mut order = Vec::new();
    order.push(first_byte(&mut server.next_pending_connection().unwrap()));
    assert_eq!(server.pending_connections().len(), 1);
    // Room for one: the next wait brings the queue back to the limit.
    assert!(server.wait_for_new_connection(Some(SOON)).unwrap());
    assert_eq!(server.pending_connections().len(), 2, "the wait did not refill the queue");
    order.push(first_byte(&mut server.next_pending_connection().unwrap()));
    assert!(server.wait_for_new_connection(Some(SOON)).unwrap());
    assert_eq!(server.pending_connections().len(), 2);
    order.push(first_byte(&mut server.next_pending_connection().unwrap()));
    order.push(first_byte(&mut server.next_pending_connection().unwrap()));
    assert_eq!(order, b"abcd");
    assert!(!server.has_pending_connections());
    assert!(server.try_accept().unwrap().is_none());
}

#[test]
fn acceptor_thread_respects_the_pending_limit() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("maxcb");
    let path = dir.join("sock");
    // Four clients wait in the backlog of a socket before the server adopts it, so its
    // acceptor thread finds them all at once.
    let std_listener = UnixListener::bind(&path).unwrap();
    let _clients: Vec<LocalSocket> = (b'a'..=b'd').map(|b| client_sending(&path, b)).collect();

    let mut server = LocalServer::new();
    server.set_max_pending_connections(2);
    let most_seen = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let seen = Arc::clone(&most_seen);
    server.on_new_connection(move |pending| {
        seen.fetch_max(pending.len(), Ordering::SeqCst);
        let _ = tx.send(pending.len());
    });
    server.listen_fd(OwnedFd::from(std_listener)).unwrap();

    // Each announcement finds the queue at its limit, and the acceptor then waits for
    // room: taking one brings exactly one more in, and one more announcement.
    let mut order = Vec::new();
    for round in 0..3 {
        let len = rx.recv_timeout(SOON).expect("newConnection");
        assert_eq!(len, 2, "round {round}: the callback saw {len} pending");
        assert_eq!(server.pending_connections().len(), 2, "round {round}");
        order.push(first_byte(&mut server.next_pending_connection().unwrap()));
    }
    order.push(first_byte(&mut server.next_pending_connection().unwrap()));
    assert!(!server.has_pending_connections());
    assert_eq!(order, b"abcd");
    assert_eq!(most_seen.load(Ordering::SeqCst), 2, "the queue held more than its limit");
}

// ---- waiting -----------------------------------------------------------------------------

#[test]
fn wait_for_new_connection_times_out() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("wait");
    let path = dir.join("sock");
    let server = listening(&path);
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    assert!(!server.wait_for_new_connection(Some(timeout)).unwrap());
    assert!(started.elapsed() >= timeout, "returned after {:?}", started.elapsed());
    assert!(!server.wait_for_new_connection(Some(Duration::ZERO)).unwrap());
    assert!(!server.has_pending_connections());
    assert!(server.try_accept().unwrap().is_none());
}

#[test]
fn wait_for_new_connection_wakes_for_a_client_of_another_thread() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("waitok");
    let path = dir.join("sock");
    let server = listening(&path);
    let client = std::thread::spawn({
        let path = path.clone();
        move || {
            std::thread::sleep(Duration::from_millis(50));
            client_sending(&path, b'w')
        }
    });
    // No limit: only the client ends the wait (the watchdog catches a hang).
    assert!(server.wait_for_new_connection(None).unwrap());
    assert!(server.has_pending_connections());
    let mut accepted = server.next_pending_connection().unwrap();
    assert_eq!(first_byte(&mut accepted), b'w');
    client.join().unwrap();
    // A connection already pending: true at once.
    let _c2 = client_sending(&path, b'x');
    assert!(server.wait_for_new_connection(Some(SOON)).unwrap());
    assert!(server.wait_for_new_connection(Some(Duration::ZERO)).unwrap());
}

#[test]
fn wait_with_a_callback_registered_waits_for_the_acceptor() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("waitcb");
    let path = dir.join("sock");
    let mut server = listening(&path);
    let (tx, rx) = mpsc::channel();
    server.on_new_connection(move |pending| {
        let _ = tx.send(pending.len());
    });
    assert!(!server.wait_for_new_connection(Some(Duration::from_millis(100))).unwrap());
    let _c = client_sending(&path, b'k');
    assert!(server.wait_for_new_connection(Some(SOON)).unwrap());
    let mut s = server.next_pending_connection().unwrap();
    assert_eq!(first_byte(&mut s), b'k');
    // The callback is announced too (after the waiter woke, so the queue may be empty by
    // then), and only once.
    rx.recv_timeout(SOON).expect("newConnection");
    server.close();
    assert!(rx.try_recv().is_err(), "announced twice");
}

// ---- accept styles ----------------------------------------------------------------------

#[test]
fn try_accept_and_accept() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("try");
    let path = dir.join("sock");
    let server = listening(&path);
    assert!(server.try_accept().unwrap().is_none());
    let _c = client_sending(&path, b't');
    // connect returned, so the client is in the listener's queue: try_accept finds it.
    let got = server.try_accept().unwrap();
    assert_eq!(first_byte(&mut got.expect("try_accept found the client")), b't');
    assert!(server.try_accept().unwrap().is_none());
    let _c = client_sending(&path, b'u');
    assert_eq!(first_byte(&mut server.accept().unwrap()), b'u');
}

#[test]
fn incoming_yields_each_client_in_order() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("inc");
    let path = dir.join("sock");
    let server = listening(&path);
    let clients = std::thread::spawn({
        let path = path.clone();
        move || (b'1'..=b'5').map(|b| client_sending(&path, b)).collect::<Vec<_>>()
    });
    let got: Vec<u8> = server.incoming().take(5).map(|s| first_byte(&mut s.unwrap())).collect();
    assert_eq!(got, b"12345");
    drop(clients.join().unwrap());
}

#[test]
fn on_new_connection_fires_and_may_take_the_socket() {
    let _w = Watchdog::new(WATCHDOG);
    for register_before_listen in [true, false] {
        let dir = TempDir::new("cb");
        let path = dir.join("sock");
        let (tx, rx) = mpsc::channel();
        let mut server = LocalServer::new();
        let register = |server: &mut LocalServer| {
            server.on_new_connection(move |pending| {
                while let Some(s) = pending.next_pending_connection() {
                    tx.send(s).unwrap();
                }
            })
        };
        if register_before_listen {
            register(&mut server);
            server.listen(&path).unwrap();
        } else {
            server.listen(&path).unwrap();
            register(&mut server);
        }
        let mut client = client_sending(&path, b'c');
        let mut accepted = rx.recv_timeout(SOON).expect("the callback ran");
        assert_eq!(first_byte(&mut accepted), b'c');
        accepted.write_all(b"d").unwrap();
        assert_eq!(first_byte(&mut client), b'd');
        assert!(!server.has_pending_connections(), "the callback took it");
        // More clients, more calls.
        let _more: Vec<_> = (0..3).map(|_| client_sending(&path, b'm')).collect();
        for _ in 0..3 {
            assert_eq!(first_byte(&mut rx.recv_timeout(SOON).unwrap()), b'm');
        }
    }
}

#[test]
fn incoming_connection_hook_replaces_queueing() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("hook");
    let path = dir.join("sock");
    let mut server = LocalServer::new();
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    server.set_incoming_connection_hook(move |socket, pending| {
        // The queue is this hook's to fill, and it does not.
        let _ = tx.lock().unwrap().send((socket, pending.len()));
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    server.on_new_connection(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    server.listen(&path).unwrap();
    let _clients: Vec<_> = (b'p'..=b'r').map(|b| client_sending(&path, b)).collect();
    let mut got = Vec::new();
    for _ in 0..3 {
        let (mut s, queued) = rx.recv_timeout(SOON).expect("the hook ran");
        assert_eq!(queued, 0);
        got.push(first_byte(&mut s));
    }
    assert_eq!(got, b"pqr");
    assert!(!server.has_pending_connections());
    assert!(server.pending_connections().is_empty());
    server.close();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "newConnection announced sockets nobody queued");
}

#[test]
fn incoming_connection_hook_in_pull_style() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("hookpull");
    let path = dir.join("sock");
    let mut server = LocalServer::new();
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    server.set_incoming_connection_hook(move |socket, _| {
        let _ = tx.lock().unwrap().send(socket);
    });
    server.listen(&path).unwrap();
    let _c = client_sending(&path, b'h');
    // wait_for_new_connection accepts through the hook.
    server.wait_for_new_connection(Some(SOON)).unwrap();
    let mut got = rx.recv_timeout(SOON).expect("the hook got the socket");
    assert_eq!(first_byte(&mut got), b'h');
    assert!(!server.has_pending_connections());

    // Back to the default: queued.
    server.reset_incoming_connection_hook();
    let _c = client_sending(&path, b'i');
    assert!(server.wait_for_new_connection(Some(SOON)).unwrap());
    assert_eq!(first_byte(&mut server.next_pending_connection().unwrap()), b'i');
    assert!(rx.try_recv().is_err());
}

#[test]
fn incoming_connection_hook_that_pushes_queues_and_announces() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("hookpush");
    let path = dir.join("sock");
    let mut server = LocalServer::new();
    let hooked = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hooked);
    server.set_incoming_connection_hook(move |mut socket, pending| {
        h.fetch_add(1, Ordering::SeqCst);
        // Refuse 'x' clients, queue the rest.
        let mut byte = [0u8];
        socket.read_exact(&mut byte).unwrap();
        if byte[0] != b'x' {
            socket.write_all(&byte).unwrap(); // tell the test which one was kept
            pending.push(socket);
        }
    });
    let (tx, rx) = mpsc::channel();
    server.on_new_connection(move |pending| {
        while let Some(s) = pending.next_pending_connection() {
            tx.send(s).unwrap();
        }
    });
    server.listen(&path).unwrap();
    let _refused = client_sending(&path, b'x');
    let mut kept = client_sending(&path, b'k');
    let _s = rx.recv_timeout(SOON).expect("a pushed socket was announced");
    assert_eq!(first_byte(&mut kept), b'k');
    assert_eq!(hooked.load(Ordering::SeqCst), 2);
    assert!(rx.try_recv().is_err(), "the refused client was queued");
}

#[test]
fn pending_connections_handle_from_another_thread() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("handle");
    let path = dir.join("sock");
    let server = listening(&path);
    let pending = server.pending_connections();
    assert!(pending.is_empty());
    let _c = client_sending(&path, b'z');
    assert!(server.wait_for_new_connection(Some(SOON)).unwrap());
    let taker = std::thread::spawn(move || {
        assert!(pending.has_pending_connections());
        assert_eq!(pending.len(), 1);
        let mut s = pending.next_pending_connection().unwrap();
        assert!(pending.is_empty());
        first_byte(&mut s)
    });
    assert_eq!(taker.join().unwrap(), b'z');
    assert!(!server.has_pending_connections());
}

/// This thread's id, for [`wait_until_asleep`] (Linux; `None` elsewhere).
fn thread_id() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(link.file_name()?.to_str()?.to_owned())
}

/// Linux: returns once thread `tid` sleeps in the kernel (`S` in its stat), so that what
/// the test does next must wake it rather than find it not yet waiting. It polls the
/// thread's state, no timed sleep; the watchdog catches a thread that never sleeps.
fn wait_until_asleep(tid: Option<String>) {
    let Some(tid) = tid else { return };
    loop {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // `pid (comm) S ...`: the state follows the last parenthesis.
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]);
        if state == Some(b'S') {
            return;
        }
        std::thread::yield_now();
    }
}

#[test]
fn accept_in_another_thread_takes_a_socket_pushed_meanwhile() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("pushwake");
    let path = dir.join("sock");
    let server = listening(&path);
    // The socket to push: one a second server accepted.
    let other_path = dir.join("other");
    let other = listening(&other_path);
    let _client = client_sending(&other_path, b'p');
    let to_push = other.accept().unwrap();
    let server = &server;
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let acceptor = s.spawn(move || {
            tx.send(thread_id()).unwrap();
            // Sleeps (in accept4 on Linux, else in poll): nobody connects to `path`.
            first_byte(&mut server.accept().unwrap())
        });
        wait_until_asleep(rx.recv().unwrap());
        // A handle made after the accept began, from another thread: its push must wake it.
        server.pending_connections().push(to_push);
        assert_eq!(acceptor.join().unwrap(), b'p');
    });
    assert!(!server.has_pending_connections());
    // The server still accepts clients after such a wake-up (on Linux the kick that woke
    // the accept was its own connection: it is never handed out).
    let _c = client_sending(&path, b'n');
    assert_eq!(first_byte(&mut server.accept().unwrap()), b'n');
    assert!(server.try_accept().unwrap().is_none());
}

// ---- sockets -----------------------------------------------------------------------------

#[test]
fn read_write_round_trip_and_names() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("rw");
    let path = dir.join("sock");
    let server = listening(&path);
    let mut client = LocalSocket::connect(&path).unwrap();
    assert_eq!(client.server_name(), Some(path.as_str()));
    assert_eq!(client.full_server_name(), Some(Path::new(&path)));
    let mut accepted = server.accept().unwrap();
    // Qt 6: an accepted socket is named by the server's path and its last part.
    assert_eq!(accepted.server_name(), Some("sock"));
    assert_eq!(accepted.full_server_name(), Some(Path::new(&path)));

    // A megabyte each way, written from one thread while the other end reads.
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let writer = std::thread::spawn({
        let data = data.clone();
        move || {
            client.write_all(&data).unwrap();
            client.flush().unwrap();
            let mut back = vec![0u8; data.len()];
            client.read_exact(&mut back).unwrap();
            assert!(back == data, "the echo differs");
            // Closing the client: the server reads end of file.
            drop(client);
        }
    });
    let mut got = vec![0u8; data.len()];
    accepted.read_exact(&mut got).unwrap();
    assert!(got == data, "the server received different bytes");
    accepted.write_all(&got).unwrap();
    writer.join().unwrap();
    let mut rest = Vec::new();
    accepted.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn peer_credentials_are_this_process() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("cred");
    let path = dir.join("sock");
    let (uid, gid) = util::my_uid_gid();
    let server = listening(&path);
    let client = LocalSocket::connect(&path).unwrap();
    let accepted = server.accept().unwrap();
    for (side, socket) in [("accepted", &accepted), ("client", &client)] {
        let creds = socket.peer_credentials().unwrap();
        if cfg!(any(target_os = "linux", target_os = "android")) {
            assert_eq!(creds.pid, Some(std::process::id()), "{side}");
        }
        assert_eq!(creds.uid, Some(uid), "{side}");
        assert_eq!(creds.gid, Some(gid), "{side}");
    }
}

#[test]
fn peer_credentials_of_a_child_process() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("credp");
    let path = dir.join("sock");
    let server = listening(&path);
    // A client in another process: python or socat may be missing; a shell `nc -U` too.
    // So use this very test binary's sibling: the echo example's client.
    let echo = util::example("echo");
    let child = util::Proc::spawn(std::process::Command::new(echo).args(["client", &path, "hi"]));
    let mut accepted = server.accept().unwrap();
    let creds = accepted.peer_credentials().unwrap();
    if cfg!(any(target_os = "linux", target_os = "android")) {
        assert_eq!(creds.pid, Some(child.id()));
    }
    let mut line = [0u8; 3];
    accepted.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"hi\n");
    accepted.write_all(b"ok\n").unwrap();
    let (status, out) = child.finish();
    assert!(status.success());
    assert_eq!(out, vec!["ok".to_owned()]);
}

// ---- access options ----------------------------------------------------------------------

#[test]
fn socket_options_set_the_file_mode() {
    let _w = Watchdog::new(WATCHDOG);
    let cases = [
        (SocketOptions::USER_ACCESS, 0o700),
        (SocketOptions::GROUP_ACCESS, 0o070),
        (SocketOptions::OTHER_ACCESS, 0o007),
        (SocketOptions::WORLD_ACCESS, 0o777),
        (SocketOptions::USER_ACCESS | SocketOptions::GROUP_ACCESS, 0o770),
        (SocketOptions::USER_ACCESS | SocketOptions::OTHER_ACCESS, 0o707),
    ];
    for (opts, mode) in cases {
        let dir = TempDir::new("mode");
        let path = dir.join("sock");
        let mut server = listening_with(&path, opts);
        assert_eq!(server.socket_options(), opts);
        assert_eq!(mode_of(&path), mode, "{opts:?}");
        assert_eq!(opts.file_mode(), Some(mode));
        // No private directory is left beside the socket.
        assert_eq!(dir.entries(), vec!["sock".to_owned()], "{opts:?}");
        // Root ignores the mode, and so does this process's own uid for 0o700; a mode
        // without the user bits keeps the owner out unless we are root.
        if mode & 0o200 != 0 || util::my_uid_gid().0 == 0 {
            assert_serves(&server, &path);
        } else {
            assert_eq!(socket_err(LocalSocket::connect(&path)).0, LocalSocketError::SocketAccess, "{opts:?}");
        }
        server.close();
        assert_eq!(dir.entries(), Vec::<String>::new(), "{opts:?}");
    }
}

#[test]
fn no_options_leave_the_mode_to_the_umask() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("umask");
    let ours = dir.join("ours");
    let theirs = dir.join("std");
    let _server = listening(&ours);
    let _std = UnixListener::bind(&theirs).unwrap();
    assert_eq!(mode_of(&ours), mode_of(&theirs));
}

#[test]
fn access_options_with_a_relative_name() {
    let _w = Watchdog::new(WATCHDOG);
    let name = unique_name("relmode");
    let server = listening_with(&name, SocketOptions::GROUP_ACCESS);
    let full: PathBuf = solo_instance::default_socket_dir().join(&name);
    assert_eq!(server.full_server_name(), Some(full.as_path()));
    assert_eq!(mode_of(&full), 0o070);
    drop(server);
    assert!(!full.exists());
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn abstract_namespace() {
    let _w = Watchdog::new(WATCHDOG);
    let name = unique_name("abs");
    let abs = ConnectOptions::new().socket_options(SocketOptions::ABSTRACT_NAMESPACE);
    let mut server = LocalServer::new();
    // The access bits have no effect on an abstract socket.
    server.set_socket_options(SocketOptions::ABSTRACT_NAMESPACE | SocketOptions::USER_ACCESS);
    server.listen(&name).unwrap();
    assert_eq!(server.server_name(), Some(name.as_str()));
    assert_eq!(server.full_server_name(), Some(Path::new(&name)));
    // No file anywhere.
    assert!(!solo_instance::default_socket_dir().join(&name).exists());
    assert!(!Path::new(&name).exists());
    assert_serves_with(&server, &name, abs);
    // A plain client looks for a file, and finds none.
    assert_eq!(socket_err(LocalSocket::connect(&name)).0, LocalSocketError::ServerNotFound);
    // The name is taken while the server lives, and free after close.
    let mut second = LocalServer::new();
    second.set_socket_options(SocketOptions::ABSTRACT_NAMESPACE);
    assert_eq!(socket_err(second.listen(&name)).0, LocalSocketError::AddressInUse);
    server.close();
    assert_eq!(socket_err(LocalSocket::connect_with(&name, abs)).0, LocalSocketError::ConnectionRefused);
    second.listen(&name).unwrap();
    assert_serves_with(&second, &name, abs);
}

/// The acceptor thread, on which the `newConnection` callback runs, starts with the app's
/// asynchronous signals blocked, as every thread of the crate's: a process-directed
/// SIGINT or SIGTERM reaches the app's own handling thread (its `sigwait` thread, its
/// `signalfd`), never this one, even when the app blocks them only after `listen`.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn the_acceptor_thread_blocks_the_apps_signals() {
    let _w = Watchdog::new(WATCHDOG);
    let (blocked, int_term) = (util::blocked_signals, util::INT_TERM);
    let mine = blocked(&std::fs::read_to_string("/proc/thread-self/status").unwrap()).unwrap();
    assert_eq!(mine & int_term, 0, "the test thread blocks SIGINT or SIGTERM itself");
    let name = unique_name("acceptor-signals");
    let (tx, rx) = mpsc::channel();
    let mut server = LocalServer::new();
    server.on_new_connection(move |pending| {
        while pending.next_pending_connection().is_some() {}
        let _ = tx.send(std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default());
    });
    server.listen(&name).unwrap();
    let _client = LocalSocket::connect(&name).unwrap();
    let status = rx.recv_timeout(SOON).expect("the callback did not run");
    let mask = blocked(&status).expect("no SigBlk line");
    assert_eq!(mask & int_term, int_term, "the acceptor thread takes SIGINT or SIGTERM");
}

/// Socket errors name the path they tried (`SocketError::path`, and after Qt's text in
/// `Display`), while `message()` stays Qt's `errorString`: a listen in a missing
/// directory, a connect to nothing, a connect to a file nobody listens on.
#[test]
fn socket_errors_name_the_path_they_tried() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("errpath");
    let missing = dir.join("no/such/dir/sock");
    let e = LocalServer::new().listen(&missing).unwrap_err();
    let Error::Socket(socket) = &e else { panic!("{e:?}") };
    assert_eq!(socket.message(), "QLocalServer::listen: Name error");
    assert_eq!(socket.path(), Some(Path::new(&missing)));
    assert_eq!(e.to_string(), format!("QLocalServer::listen: Name error ({missing})"));

    let nobody = dir.join("nobody");
    let e = LocalSocket::connect(&nobody).unwrap_err();
    assert_eq!(e.to_string(), format!("QLocalSocket::connectToServer: Invalid name ({nobody})"));

    let plain = dir.join("plain-file");
    std::fs::write(&plain, "").unwrap();
    let e = LocalSocket::connect(&plain).unwrap_err();
    let Error::Socket(socket) = &e else { panic!("{e:?}") };
    assert_eq!(socket.path(), Some(Path::new(&plain)), "{e}");
    assert!(e.to_string().ends_with(&format!(" ({plain})")), "{e}");
}

/// `echo` reads its arguments with `args_os`: a NAME or MESSAGE that is not UTF-8 is an
/// `ERROR <code> <text>` line and exit 1 (DESIGN.md), not a panic (exit 101).
#[test]
fn echo_non_utf8_arguments_are_error_lines_not_panics() {
    use std::os::unix::ffi::OsStrExt;
    let _w = Watchdog::new(WATCHDOG);
    let bad = std::ffi::OsStr::from_bytes(b"/tmp/\xff-not-utf8");
    for (args, line) in [
        (
            vec![OsStr::new("client"), bad, OsStr::new("hi")],
            "ERROR 2 QLocalSocket::connectToServer: Invalid name",
        ),
        (vec![OsStr::new("client"), OsStr::new("/tmp/x"), bad], "ERROR -1 echo: argument 2 is not UTF-8"),
        (vec![OsStr::new("server"), bad], "ERROR 2 QLocalServer::listen: Name error"),
    ] {
        let (status, lines) = run(Command::new(example("echo")).args(&args));
        assert_eq!((status.code(), lines), (Some(1), vec![line.to_owned()]), "{args:?}");
    }
}
