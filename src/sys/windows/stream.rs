//! A launch's streams (protocol version 2) on Windows: a launch's reads with a deadline.
//! A primary here does not read a launch's stdin: its pipe is read through the serving
//! loop's completion port only, so a request that asks for stdin is refused, and a
//! launch here does not ask for it.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use super::Connection;
use crate::LocalSocket;

/// Whether a primary reads a launch's stdin here (it does not on Windows).
pub(crate) const STDIN_STREAMS: bool = false;

/// Reads what has arrived at a launch's pipe before `deadline`: `Ok(0)` at the end,
/// `TimedOut` when the deadline passed first (the read is cancelled).
pub(crate) fn recv_some(socket: &LocalSocket, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let _deadline = super::IoDeadline::arm(socket.as_stream(), deadline);
    (&*socket).read(buf)
}

/// Not offered here (see [`STDIN_STREAMS`]).
pub(crate) fn send_some(_socket: &LocalSocket, _buf: &[u8], _deadline: Instant) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Not offered here (see [`STDIN_STREAMS`]).
pub(crate) fn wait_readable(_conn: &Connection, _timeout: Option<Duration>) -> io::Result<bool> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Whether a process with this pid runs.
pub(crate) fn process_exists(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, STILL_ACTIVE};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: no handle is inherited; a null handle is checked before use.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        return false;
    }
    let mut code = 0u32;
    // SAFETY: `handle` is open (checked above); `code` is a valid out pointer.
    let ok = unsafe { GetExitCodeProcess(handle, &mut code) } != 0;
    // SAFETY: `handle` is open, ours, and closed once.
    unsafe { CloseHandle(handle) };
    ok && code == STILL_ACTIVE as u32
}
