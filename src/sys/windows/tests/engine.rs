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
