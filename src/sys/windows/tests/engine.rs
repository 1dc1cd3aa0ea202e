//! The serving engine's completion port at shutdown: `Poller::settle` (the primary's,
//! before the lock is let go) closes every pipe dropped before it.

use std::os::windows::io::AsRawHandle;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Pipes::PeekNamedPipe;

use super::watchdog;
use crate::sys::{poller, random_pipe_name, Acceptor, Interest};
use crate::LocalSocket;

/// Whether the server end of `client`'s pipe is gone: a peek fails (a broken pipe).
fn server_gone(client: &LocalSocket) -> bool {
    let mut avail = 0u32;
    // SAFETY: the handle is open for the call; no buffer, only the count asked for.
    let ok = unsafe {
        PeekNamedPipe(
            client.as_raw_handle() as HANDLE,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            &mut avail,
            std::ptr::null_mut(),
        )
    };
    ok == 0
}

/// The most connections the loop holds (512), and more: dropped at once, then the
/// poller settles, and every client sees its pipe closed (each pipe stays open until its
/// cancelled read's completion is dequeued, behind what the accepts queued).
#[test]
fn settling_closes_every_dropped_pipe() {
    let _w = watchdog(120);
    const N: usize = 600;
    let name = random_pipe_name().unwrap();
    let sddl = super::super::private_pipe_sddl().unwrap();
    let (mut poller, _waker) = poller().unwrap();
    let mut acceptor = Acceptor::bind(&name, &sddl).unwrap();
    acceptor.register(&poller, 0).unwrap();
    let path = name.to_string_lossy().into_owned();
    let clients =
        std::thread::spawn(move || (0..N).map(|_| LocalSocket::connect(&path).unwrap()).collect::<Vec<_>>());
    let mut conns = Vec::new();
    let mut token = 16;
    while conns.len() < N {
        let mut interest = Interest::new();
        interest.listener(0, &acceptor);
        poller.wait(interest, None).unwrap();
        while let Some(c) = acceptor.accept(&poller, token).unwrap() {
            token += 1;
            conns.push(c);
        }
    }
    let clients = clients.join().unwrap();
    // What the accepts queued (their connects' and reads' completions) is still queued.
    drop(conns);
    drop(acceptor);
    poller.settle();
    let open = clients.iter().filter(|c| !server_gone(c)).count();
    assert_eq!(open, 0, "{open} of {N} pipes still open after the poller settled");
}

/// One client accepted at a fresh pipe, connected by `connect`: the poller, the acceptor
/// (listening under token 0), the client's connection (token 16), the client's end and
/// the pipe's name.
fn one_client<C>(
    connect: impl FnOnce(&std::path::Path) -> C,
) -> (crate::sys::Poller, Acceptor, crate::sys::Connection, C, std::path::PathBuf) {
    let name = random_pipe_name().unwrap();
    let sddl = super::super::private_pipe_sddl().unwrap();
    let (mut poller, _waker) = poller().unwrap();
    let mut acceptor = Acceptor::bind(&name, &sddl).unwrap();
    acceptor.register(&poller, 0).unwrap();
    let client = connect(&name);
    loop {
        let mut interest = Interest::new();
        interest.listener(0, &acceptor);
        poller.wait(interest, None).unwrap();
        if let Some(conn) = acceptor.accept(&poller, 16).unwrap() {
            return (poller, acceptor, conn, client, name);
        }
    }
}

/// A client that closes its end with bytes left unread in the pipe is gone: the pipe's
/// state says so, where a peek would still find the bytes.
#[test]
fn a_client_gone_with_bytes_unread_is_closed() {
    use std::io::Write;
    let _w = watchdog(60);
    // A plain file: its drop closes its handle at once (a `LocalSocket`'s waits, on a
    // thread of its own, until the server has read everything).
    let (_poller, _acceptor, conn, mut client, _name) =
        one_client(|path| std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap());
    assert!(!conn.is_closed());
    // More than the connection's read in flight takes (4 KiB until a larger read): the rest
    // stays in the pipe. Within the pipe's buffer, so the write does not wait.
    client.write_all(&[7u8; 32 << 10]).unwrap();
    assert!(!conn.is_closed());
    drop(client);
    assert!(conn.is_closed(), "a client gone with bytes unread is not seen gone");
}

/// A connection closed while it lives holds no instance of its pipe once the poller has
/// settled: the name binds again (a first instance), and the connection reads the end,
/// fails to send, and is closed.
#[test]
fn a_closed_connection_frees_the_pipe_name() {
    let _w = watchdog(60);
    let (mut poller, acceptor, conn, client, name) =
        one_client(|path| LocalSocket::connect(&path.to_string_lossy()).unwrap());
    drop(acceptor);
    // As a release ends a launch waiting for its reply: hung up, then closed.
    conn.hang_up();
    conn.close();
    poller.settle();
    let sddl = super::super::private_pipe_sddl().unwrap();
    let again = Acceptor::bind(&name, &sddl);
    assert!(again.is_ok(), "the closed connection still holds the name: {:?}", again.err());
    assert!(conn.is_closed());
    assert_eq!(conn.read(&mut [0u8; 16]).unwrap(), 0);
    let sent = conn.send(b"late\n", std::time::Instant::now() + std::time::Duration::from_secs(1));
    assert_eq!(sent.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
    assert!(server_gone(&client));
}
