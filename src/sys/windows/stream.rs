//! A launch's streams (protocol version 2) on Windows: a launch's reads and writes, each
//! an overlapped operation of its own on the pipe (opened overlapped by `pipe::connect`),
//! so that a read of output frames and a write of stdin frames are in flight at once on
//! two threads. Each waits on its own event and cancels only itself (`CancelIoEx` with its
//! `OVERLAPPED`): a cancelled read consumes nothing, and a write is never cancelled while
//! its bytes still count.
//!
//! A primary reads a launch's stdin through the serving loop (see [`STDIN_THROUGH_LOOP`]).

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_IO_PENDING, ERROR_NO_DATA, ERROR_OPERATION_ABORTED, ERROR_PIPE_NOT_CONNECTED,
    HANDLE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Threading::{CreateEventW, WaitForSingleObject};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::Connection;
use crate::LocalSocket;

/// Whether a primary reads a launch's stdin through its serving loop: yes here. The
/// connection's reads complete on the loop's completion port and are handed out only once
/// a turn of the loop has seen them, so a reader waits for turns (and runs them when no
/// other thread does) instead of waiting on the connection.
pub(crate) const STDIN_THROUGH_LOOP: bool = true;

/// Reads what has arrived at a launch's pipe before `deadline`, at most `max` bytes, onto
/// the end of `buf`: `Ok(0)` at the end, `TimedOut` when the deadline passed first (the
/// read is cancelled, having taken nothing).
pub(crate) fn recv_some(
    socket: &LocalSocket,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> io::Result<usize> {
    let handle = handle_of(socket);
    buf.reserve(max);
    let len = max.min(u32::MAX as usize) as u32;
    // The spare capacity: ReadFile writes what it reads, so it need not be zeroed first.
    let ptr = buf.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    let r = overlapped(
        handle,
        |ov, n| {
            // SAFETY: the handle is open (borrowed from `socket`); `buf` and `ov` outlive the
            // read, which `overlapped` waits for (done, or cancelled and then done).
            unsafe { ReadFile(handle, ptr, len, n, ov) }
        },
        || Some(deadline_left(deadline)).filter(|left| !left.is_zero()),
    );
    match r {
        Err(e) if is_end(&e) => Ok(0),
        Err(e) if e.raw_os_error() == Some(ERROR_OPERATION_ABORTED as i32) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, e))
        }
        Ok(n) => {
            let n = n.min(max);
            // SAFETY: the read wrote `n` bytes (at most `len`, within the spare capacity
            // reserved above) at the start of the spare capacity: they are initialised.
            unsafe { buf.set_len(buf.len() + n) };
            Ok(n)
        }
        r => r,
    }
}

/// Writes `buf` to a launch's pipe: the bytes taken (all of them, as a pipe write ends
/// when the primary has taken it whole). While the primary takes nothing the write stays
/// in flight, never cancelled while its bytes count: it looks at `stop` every span from
/// now to `deadline`, and once that is set cancels the write (`TimedOut`: what it carried
/// no longer matters).
pub(crate) fn send_some(
    socket: &LocalSocket,
    buf: &[u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> io::Result<usize> {
    let handle = handle_of(socket);
    let len = buf.len().min(u32::MAX as usize) as u32;
    let tick = deadline_left(deadline).max(Duration::from_millis(1));
    let r = overlapped(
        handle,
        |ov, n| {
            // SAFETY: the handle is open (borrowed from `socket`); `buf` and `ov` outlive the
            // write, which `overlapped` waits for (done, or cancelled and then done).
            unsafe { WriteFile(handle, buf.as_ptr(), len, n, ov) }
        },
        || (!stop.load(Ordering::SeqCst)).then_some(tick),
    );
    match r {
        Err(e) if is_end(&e) => Err(io::Error::new(io::ErrorKind::BrokenPipe, e)),
        Err(e) if e.raw_os_error() == Some(ERROR_OPERATION_ABORTED as i32) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, e))
        }
        r => r,
    }
}

/// The primary waits for a launch's stdin through its loop here (see
/// [`STDIN_THROUGH_LOOP`]): not by waiting on the connection.
pub(crate) fn wait_readable(_conn: &Connection, _timeout: Option<Duration>) -> io::Result<bool> {
    Err(io::ErrorKind::Unsupported.into())
}

fn handle_of(socket: &LocalSocket) -> HANDLE {
    super::pipe(socket.as_stream()).as_handle().as_raw_handle() as HANDLE
}

fn deadline_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A pipe that ended: the other end closed or disconnected.
fn is_end(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == ERROR_BROKEN_PIPE as i32
        || c == ERROR_PIPE_NOT_CONNECTED as i32
        || c == ERROR_NO_DATA as i32)
}

/// Runs one overlapped operation on `handle` with an event of its own: `start` begins it
/// (`ReadFile` or `WriteFile` with the `OVERLAPPED` and the count it is given). While it
/// is in flight, `next()` says how long to wait for it next, or `None` to cancel it (then
/// it is waited for until it is done, cancelled or not). The bytes it moved, or its error
/// (`ERROR_OPERATION_ABORTED` when cancelled before it was done).
fn overlapped(
    handle: HANDLE,
    start: impl FnOnce(*mut OVERLAPPED, *mut u32) -> i32,
    mut next: impl FnMut() -> Option<Duration>,
) -> io::Result<usize> {
    // SAFETY: no security attributes or name: a manual-reset event, not signalled.
    let event = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
    if event.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a handle just created, owned by nobody else; closed after the operation is
    // done (it is waited for below before this returns).
    let _event = unsafe { OwnedHandle::from_raw_handle(event as _) };
    // SAFETY: all-zero is a valid OVERLAPPED (offsets and status words).
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    ov.hEvent = event;
    let mut n = 0u32;
    if start(&mut ov, &mut n) != 0 {
        return Ok(n as usize);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(ERROR_IO_PENDING as i32) {
        return Err(e);
    }
    loop {
        let Some(wait) = next() else {
            // SAFETY: the handle is open; `ov` names this operation only.
            unsafe { CancelIoEx(handle, &ov) };
            break;
        };
        let ms = wait.as_millis().clamp(1, u128::from(u32::MAX - 1)) as u32;
        // SAFETY: the event is open.
        if unsafe { WaitForSingleObject(event, ms) } == WAIT_OBJECT_0 {
            break;
        }
    }
    // SAFETY: the handle and `ov` are this operation's; waits until it is done.
    if unsafe { GetOverlappedResult(handle, &ov, &mut n, 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Whether a process with this pid runs (one this process may not open too: another
/// user's, an elevated one).
pub(crate) fn process_exists(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, STILL_ACTIVE};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: no handle is inherited; a null handle is checked before use.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        // No such process: `ERROR_INVALID_PARAMETER`. Refused: it runs.
        const ERROR_ACCESS_DENIED: i32 = 5;
        return io::Error::last_os_error().raw_os_error() == Some(ERROR_ACCESS_DENIED);
    }
    let mut code = 0u32;
    // SAFETY: `handle` is open (checked above); `code` is a valid out pointer.
    let ok = unsafe { GetExitCodeProcess(handle, &mut code) } != 0;
    // SAFETY: `handle` is open, ours, and closed once.
    unsafe { CloseHandle(handle) };
    ok && code == STILL_ACTIVE as u32
}
