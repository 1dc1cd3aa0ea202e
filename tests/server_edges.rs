//! Edge cases found in review: wake-ups from other threads, closing from the callback,
//! panicking callbacks and hooks, a zero queue limit, huge timeouts, NUL bytes, adopted
//! sockets that cannot accept, and access options on long paths.
#![cfg(unix)]

mod util;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use solo_instance::{ConnectOptions, Error, LocalServer, LocalSocket, LocalSocketError, SocketOptions};
use util::{TempDir, Watchdog};

const WATCHDOG: Duration = Duration::from_secs(30);

fn kind<T: std::fmt::Debug>(r: Result<T, Error>) -> LocalSocketError {
    match r {
        Err(e) => e.socket_error().unwrap_or_else(|| panic!("not a socket error: {e}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// A socket a hook hands to a worker, which queues it later, wakes a waiter in poll.
#[test]
fn a_push_from_another_thread_wakes_a_pull_waiter() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("push");
    let name = dir.join("s");
    let mut server = LocalServer::new();
    server.set_incoming_connection_hook(|socket, pending| {
        let pending = pending.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            pending.push(socket);
        });
    });
    server.listen(&name).unwrap();
    let _client = LocalSocket::connect(&name).unwrap();
    // The first wait accepts and hands the socket away: nothing pending yet.
    assert!(!server.wait_for_new_connection(Some(Duration::from_secs(5))).unwrap());
    let start = Instant::now();
    assert!(server.wait_for_new_connection(Some(Duration::from_secs(20))).unwrap());
    assert!(start.elapsed() < Duration::from_secs(5), "woken only after {:?}", start.elapsed());
    assert!(server.next_pending_connection().is_some());
}

#[test]
fn close_from_the_callback_neither_panics_nor_leaves_the_file() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("selfclose");
    let name = dir.join("s");
    let slot: Arc<Mutex<Option<LocalServer>>> = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel();
    let mut server = LocalServer::new();
    let in_callback = Arc::clone(&slot);
    server.on_new_connection(move |_| {
        // The app quits from its newConnection handler: the server is dropped here.
        let taken = in_callback.lock().unwrap().take();
        drop(taken);
        tx.send(()).unwrap();
    });
    server.listen(&name).unwrap();
    *slot.lock().unwrap() = Some(server);
    let _client = LocalSocket::connect(&name).unwrap();
    rx.recv_timeout(Duration::from_secs(10)).expect("the callback did not finish");
    assert!(std::fs::symlink_metadata(&name).is_err(), "the socket file was left behind");
}

#[test]
fn a_panicking_callback_does_not_stop_the_server() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("panic");
    let name = dir.join("s");
    let (tx, rx) = mpsc::channel();
    let mut server = LocalServer::new();
    let mut calls = 0;
    server.on_new_connection(move |pending| {
        calls += 1;
        while let Some(s) = pending.next_pending_connection() {
            tx.send(s).unwrap();
        }
        if calls == 1 {
            panic!("a bug in the app's callback");
        }
    });
    server.listen(&name).unwrap();
    let _a = LocalSocket::connect(&name).unwrap();
    rx.recv_timeout(Duration::from_secs(10)).expect("first connection");
    let _b = LocalSocket::connect(&name).unwrap();
    rx.recv_timeout(Duration::from_secs(10)).expect("the server stopped after the callback panicked");
    assert!(server.error_string().contains("panicked"), "{}", server.error_string());
}

#[test]
fn a_zero_queue_limit_waits_instead_of_spinning() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("zero");
    let name = dir.join("s");
    let mut server = LocalServer::new();
    server.set_max_pending_connections(0);
    server.listen(&name).unwrap();
    let _client = LocalSocket::connect(&name).unwrap();
    let start = Instant::now();
    assert!(!server.wait_for_new_connection(Some(Duration::from_millis(300))).unwrap());
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(!server.has_pending_connections(), "a limit of 0 accepts nothing");
    server.set_max_pending_connections(1);
    assert!(server.wait_for_new_connection(Some(Duration::from_secs(10))).unwrap());
}

#[test]
fn huge_timeouts_do_not_overflow() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("huge");
    let name = dir.join("s");
    let mut server = LocalServer::new();
    server.listen(&name).unwrap();
    let _client = ConnectOptions::new().timeout(Some(Duration::MAX)).connect(&name).unwrap();
    assert!(server.wait_for_new_connection(Some(Duration::MAX)).unwrap());
}

#[test]
fn a_nul_in_a_client_name_reaches_no_server() {
    let dir = TempDir::new("nul");
    let name = dir.join("s");
    let mut server = LocalServer::new();
    server.listen(&name).unwrap();
    assert_eq!(kind(LocalSocket::connect(&format!("{name}\0other"))), LocalSocketError::ServerNotFound);
}

#[test]
fn listen_fd_refuses_sockets_that_cannot_accept() {
    let dir = TempDir::new("adopt");
    let datagram = UnixDatagram::bind(dir.path().join("d")).unwrap();
    let mut server = LocalServer::new();
    assert!(server.listen_fd(OwnedFd::from(datagram)).is_err());
    // A stream socket that never listened (one half of a connected pair).
    let (half, _other) = std::os::unix::net::UnixStream::pair().unwrap();
    assert!(server.listen_fd(OwnedFd::from(half)).is_err());
    assert!(!server.is_listening());
    let listener = UnixListener::bind(dir.path().join("l")).unwrap();
    server.listen_fd(OwnedFd::from(listener)).unwrap();
}

#[test]
fn access_options_fit_paths_qt_fits() {
    let dir = TempDir::new("long");
    // A path of 98 bytes: its private directory path (dir + 9) still fits 107.
    let base = dir.path().to_str().unwrap().len() + 1;
    let name = dir.join(&"n".repeat(98 - base));
    assert_eq!(name.len(), 98);
    let mut server = LocalServer::new();
    server.set_socket_options(SocketOptions::USER_ACCESS);
    server.listen(&name).unwrap();
    let mut c = LocalSocket::connect(&name).unwrap();
    c.write_all(b"x").unwrap();
    // A short name in a deep directory cannot: the message says why.
    drop(server);
    let deep = format!("{}/{}", dir.path().display(), "d".repeat(100 - base));
    std::fs::create_dir(&deep).unwrap();
    let mut server = LocalServer::new();
    server.set_socket_options(SocketOptions::USER_ACCESS);
    let e = server.listen(&format!("{deep}/s")).unwrap_err();
    assert!(e.to_string().contains("private directory"), "{e}");
}
