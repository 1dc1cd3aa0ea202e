//! A client's connection at the primary's end of a pipe, for the serving engine
//! (`engine.rs`): non-blocking reads through mio, replies written with a deadline, and the
//! client's identity.

use std::io::{self, Read};
use std::os::windows::io::{AsRawHandle, FromRawHandle};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mio::windows::NamedPipe;
use windows_sys::Wdk::Storage::FileSystem::{
    FilePipeLocalInformation, NtQueryInformationFile, FILE_PIPE_CONNECTED_STATE, FILE_PIPE_LOCAL_INFORMATION,
};
use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_IO_PENDING, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED, HANDLE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::{RevertToSelf, TOKEN_IMPERSONATE};
use windows_sys::Win32::Storage::FileSystem::WriteFile;
use windows_sys::Win32::System::Pipes::{
    GetNamedPipeClientProcessId, ImpersonateNamedPipeClient, PeekNamedPipe,
};
use windows_sys::Win32::System::Threading::{CreateEventW, SetThreadToken, WaitForSingleObject};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, IO_STATUS_BLOCK, OVERLAPPED};

use super::engine::Port;
use super::token::{self, ClientIdentity};
use crate::{PeerCredentials, Sid};

/// A client's connection at the primary's end.
///
/// Its pipe instance keeps the pipe's name taken for as long as its handle is open, so
/// [`close`](Connection::close) closes it while the connection itself lives on (a request
/// the app holds across a release): later I/O finds it closed. Each call holds the pipe
/// for its own length (a reference of its own), so a close never waits for a call, and
/// the handle goes with the last of them.
pub(crate) struct Connection {
    /// `None` once closed (by `close`, or by the drop, before draining `port`).
    pipe: Mutex<Option<Arc<NamedPipe>>>,
    /// The completion port `pipe` is registered with (see `Port`).
    port: Arc<Port>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("pipe", &self.pipe()).finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The pipe cancels its read; the port gives its completion back (and with it the
        // handle) here if the poller is gone, else at the poller's next wait.
        drop(self.pipe.get_mut().unwrap_or_else(|p| p.into_inner()).take());
        self.port.drain_orphaned();
    }
}

/// A call on a closed connection: the client is gone as far as the primary can tell.
fn closed() -> io::Error {
    io::Error::from_raw_os_error(ERROR_PIPE_NOT_CONNECTED as i32)
}

impl Connection {
    /// Memory the connection holds in the process for as long as it lives, besides what
    /// the loop reads from it: its read in flight, of up to mio's 64 KiB (see
    /// [`read`](Self::read)). Counted in the weight of the request it carries.
    pub(crate) const PINNED: usize = 64 << 10;

    /// The connection on `pipe`, a connected instance registered with the engine's poller
    /// through `port`.
    pub(super) fn new(pipe: NamedPipe, port: Arc<Port>) -> Connection {
        Connection { pipe: Mutex::new(Some(Arc::new(pipe))), port }
    }

    /// The pipe, held for one call; `None` once closed.
    fn pipe(&self) -> Option<Arc<NamedPipe>> {
        self.pipe.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes what has arrived, without waiting: `WouldBlock` when nothing has, `Ok(0)` at
    /// the end. A fresh connection's first read is in flight from the moment its client
    /// connected; what it read is handed out once the poller has seen it complete (the
    /// next wait reports the connection), so the engine's read at accept finds nothing
    /// here, where on Unix it usually finds the whole request.
    ///
    /// Memory: each connection keeps one read in flight, as large as the caller's last
    /// buffer (4 KiB until the first read, at most mio's 64 KiB), so the loop's 512 held
    /// connections hold at most 32 MiB of such buffers besides its own byte budget.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(pipe) = self.pipe() else { return Ok(0) };
        match (&mut &*pipe).read(buf) {
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_NOT_CONNECTED as i32) => Ok(0),
            r => r,
        }
    }

    /// Writes all of `bytes`, waiting until `deadline` at most for room in the pipe; then
    /// the write is cancelled (`TimedOut`): the client does not read.
    ///
    /// The write is overlapped on the connection's own handle, with an event whose low bit
    /// is set, so its completion is not queued to the completion port (mio's, which owns
    /// every completion it receives).
    ///
    /// A client gone (the pipe closing, not connected, broken) is `BrokenPipe`.
    pub(crate) fn send(&self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        self.send_inner(bytes, deadline).map_err(|e| match e.raw_os_error() {
            Some(c)
                if c == ERROR_NO_DATA as i32
                    || c == ERROR_PIPE_NOT_CONNECTED as i32
                    || c == ERROR_BROKEN_PIPE as i32 =>
            {
                io::Error::new(io::ErrorKind::BrokenPipe, e)
            }
            _ => e,
        })
    }

    fn send_inner(&self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        let pipe = self.pipe().ok_or_else(closed)?;
        let handle = pipe.as_raw_handle() as HANDLE;
        // SAFETY: no security attributes or name: a manual-reset event, not signalled.
        let event = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
        if event.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a handle just created, owned by nobody else.
        let _event = unsafe { std::os::windows::io::OwnedHandle::from_raw_handle(event as _) };
        let mut sent = 0usize;
        while sent < bytes.len() {
            // SAFETY: all-zero is a valid OVERLAPPED (offsets and status words).
            let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
            ov.hEvent = (event as usize | 1) as HANDLE;
            let chunk = &bytes[sent..];
            let len = chunk.len().min(u32::MAX as usize) as u32;
            let mut n = 0u32;
            // SAFETY: the handle is open (`pipe` holds it); `chunk` and `ov` outlive the
            // write, which is waited for below (completed, or cancelled and then completed)
            // before either goes.
            let ok = unsafe { WriteFile(handle, chunk.as_ptr(), len, &mut n, &mut ov) };
            if ok == 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(ERROR_IO_PENDING as i32) {
                    return Err(e);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = left.as_millis().min(u128::from(u32::MAX - 1)) as u32;
                // SAFETY: the event is open.
                let waited = unsafe { WaitForSingleObject(event, ms) };
                if waited != WAIT_OBJECT_0 {
                    // SAFETY: the handle is open; `ov` names this write.
                    unsafe { CancelIoEx(handle, &ov) };
                }
                // SAFETY: the handle and `ov` are this write's; waits until it is done.
                let done = unsafe { GetOverlappedResult(handle, &ov, &mut n, 1) };
                if done == 0 {
                    let e = io::Error::last_os_error();
                    if waited != WAIT_OBJECT_0 {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, e));
                    }
                    return Err(e);
                }
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            sent += n as usize;
        }
        Ok(())
    }

    /// Whether the client has closed its end (a reply would reach nobody), or the
    /// connection was [closed](Self::close) or hung up.
    ///
    /// Told by the pipe's state, as `POLLHUP` tells it on Unix, not by a read: a client
    /// that left bytes unread behind it (its stdin, which the app does not read) is gone
    /// too, though a read (or `PeekNamedPipe`) would still find them.
    pub(crate) fn is_closed(&self) -> bool {
        let Some(pipe) = self.pipe() else { return true };
        match pipe_state(pipe.as_raw_handle() as HANDLE) {
            Some(state) => state != FILE_PIPE_CONNECTED_STATE,
            None => peek_finds_the_end(pipe.as_raw_handle() as HANDLE),
        }
    }

    /// Ends the connection for the client now: it reads the end.
    pub(crate) fn hang_up(&self) {
        if let Some(pipe) = self.pipe() {
            let _ = pipe.disconnect();
        }
    }

    /// Closes the connection's pipe instance while the value lives on (a request the app
    /// holds across a release), which frees the pipe's name once no call holds it and the
    /// poller has seen its read cancelled. What was written stays for the client to read
    /// (a disconnect would discard it): [`hang_up`](Self::hang_up) first to end the
    /// connection now, which also makes a call under way fail at once. Reads then find the
    /// end, sends `BrokenPipe`, and [`is_closed`](Self::is_closed) is true.
    pub(crate) fn close(&self) {
        drop(self.pipe.lock().unwrap_or_else(|p| p.into_inner()).take());
        self.port.drain_orphaned();
    }

    /// The client's user and integrity level as it connected (read by impersonating it at
    /// the identification level): `None` when it cannot be told.
    pub(crate) fn client_identity(&self) -> Option<ClientIdentity> {
        let pipe = self.pipe()?;
        // The calling thread may impersonate someone already: its token is put back.
        let saved = token::thread_token(TOKEN_IMPERSONATE);
        // SAFETY: the handle is open (`pipe` holds it), the server end of a pipe.
        let id = if unsafe { ImpersonateNamedPipeClient(pipe.as_raw_handle() as HANDLE) } != 0 {
            let id = token::impersonated_identity();
            // SAFETY: ends the impersonation just made.
            unsafe { RevertToSelf() };
            id
        } else {
            None
        };
        if let Some(t) = saved {
            // SAFETY: a null thread is the current one; `t` is an impersonation token
            // opened with TOKEN_IMPERSONATE, open for the call.
            unsafe { SetThreadToken(std::ptr::null(), t.as_raw_handle() as HANDLE) };
        }
        id
    }

    /// The client as the OS reports it: its user (see [`client_identity`]) and the pid it
    /// reports (which it can set: it proves nothing).
    ///
    /// [`client_identity`]: Self::client_identity
    pub(crate) fn peer(&self) -> Option<PeerCredentials> {
        let pipe = self.pipe()?;
        let mut pid = 0u32;
        let handle = pipe.as_raw_handle() as HANDLE;
        // SAFETY: the handle is open (`pipe` holds it); `pid` is a valid out pointer.
        let pid = (unsafe { GetNamedPipeClientProcessId(handle, &mut pid) } != 0).then_some(pid);
        let sid: Option<Sid> = self.client_identity().map(|c| c.user);
        Some(PeerCredentials { pid, uid: None, gid: None, sid })
    }
}

/// The state of the pipe instance `handle` (`FILE_PIPE_CONNECTED_STATE`, or closing once
/// the client closed its end, disconnected, listening), or `None` if it cannot be read.
fn pipe_state(handle: HANDLE) -> Option<u32> {
    // SAFETY: all-zero is a valid value of this plain structure (a status and a count).
    let mut status: IO_STATUS_BLOCK = unsafe { std::mem::zeroed() };
    let mut info = FILE_PIPE_LOCAL_INFORMATION::default();
    // SAFETY: the handle is open (the caller holds it); `info` is writable for the length
    // given, and `status` for the call.
    let r = unsafe {
        NtQueryInformationFile(
            handle,
            &mut status,
            (&mut info as *mut FILE_PIPE_LOCAL_INFORMATION).cast(),
            std::mem::size_of::<FILE_PIPE_LOCAL_INFORMATION>() as u32,
            FilePipeLocalInformation,
        )
    };
    (r >= 0).then_some(info.NamedPipeState)
}

/// Whether `PeekNamedPipe` on the open `handle` finds the client gone (it does only once
/// no byte is left to read).
fn peek_finds_the_end(handle: HANDLE) -> bool {
    let mut avail = 0u32;
    // SAFETY: the handle is open (the caller holds it); no buffer, only the count asked
    // for.
    let ok = unsafe {
        PeekNamedPipe(handle, std::ptr::null_mut(), 0, std::ptr::null_mut(), &mut avail, std::ptr::null_mut())
    };
    ok == 0
        && matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(e) if e == ERROR_BROKEN_PIPE as i32 || e == ERROR_PIPE_NOT_CONNECTED as i32
        )
}

/// Who a primary serves: the user and integrity level its launches must have.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner {
    pub(crate) user: Sid,
    pub(crate) integrity: u32,
}

impl Owner {
    /// This process's user and integrity level.
    pub(crate) fn current() -> io::Result<Owner> {
        Ok(Owner { user: token::current_user()?, integrity: token::own_integrity()? })
    }

    /// Whether the client at `conn` is this user, at this integrity level or above (a
    /// less trusted process driving a more trusted primary would be a silent elevation).
    /// One that cannot be read is a stranger. (`_peer`: its credentials, which name the
    /// user but not the integrity level.)
    pub(crate) fn admits(&self, conn: &Connection, _peer: Option<&PeerCredentials>) -> bool {
        conn.client_identity().is_some_and(|c| c.user == self.user && c.integrity >= self.integrity)
    }
}
