//! The serving engine's readiness contract on Windows: overlapped named-pipe I/O on one
//! I/O completion port, through mio (`Poll`, `Waker` and `NamedPipe`, the pieces Tokio's
//! named pipes stand on). mio turns the port's completions into readiness: a
//! [`Connection`] always has a read in flight, and its completion makes it readable.
//!
//! The same items, with the same signatures, as the Unix half (`sys/unix/engine.rs`):
//!
//! - [`poller`]: a [`Poller`] and the [`PollWaker`] that interrupts its wait from any
//!   thread;
//! - [`Interest`]: what one wait is for (the listener, the removal watch, the
//!   connections, each under a [`Token`]); [`Poller::wait`], then
//!   [`Poller::readiness`] per token;
//! - [`Acceptor`]: the listening end, non-blocking [`accept`](Acceptor::accept) of a
//!   checked [`Connection`];
//! - [`Connection`]: a non-blocking [`read`](Connection::read), a reply written with a
//!   deadline ([`send`](Connection::send)), whether its client hung up
//!   ([`is_closed`](Connection::is_closed)), and the client's identity.
//!
//! Readiness here is edge-triggered (one event per completed read): the engine reads a
//! connection reported ready until a read returns less than asked or `WouldBlock`.
//!
//! The listener keeps one instance of the pipe listening (an overlapped
//! `ConnectNamedPipe`), created here with the same flags and security descriptor as
//! `LocalServer`'s: `FILE_FLAG_FIRST_PIPE_INSTANCE` on the first (a pipe someone else
//! holds is `AddressInUse`), `PIPE_REJECT_REMOTE_CLIENTS` on all. Once a client connects,
//! that instance becomes its connection and a fresh one listens.

use std::io::{self, Read};
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle};
use std::path::Path;
use std::time::{Duration, Instant};

use mio::windows::NamedPipe;
use windows_sys::Win32::Foundation::{
    LocalFree, ERROR_BROKEN_PIPE, ERROR_IO_PENDING, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    RevertToSelf, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_IMPERSONATE,
};
use windows_sys::Win32::Storage::FileSystem::{
    WriteFile, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Pipes::{
    CreateNamedPipeW, GetNamedPipeClientProcessId, ImpersonateNamedPipeClient, PeekNamedPipe,
    PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{CreateEventW, SetThreadToken, WaitForSingleObject};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::token::{self, ClientIdentity};
use crate::{PeerCredentials, Sid};

/// Names a source in a [`Poller`]'s readiness.
pub(crate) type Token = usize;

/// The waker's token: never one the engine hands out (it counts up from small numbers).
const WAKE: mio::Token = mio::Token(usize::MAX);

/// Each pipe instance's buffer sizes, in and out: a reply that does not fit waits for the
/// client to read (up to the reply's deadline).
const BUFFER: u32 = 64 << 10;

/// What a wait saw for one token.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Readiness {
    /// Something to take: bytes, an end of stream, an error (or for a listener, a client).
    pub(crate) readable: bool,
    /// The other end is gone (reported where the platform tells it without a read).
    pub(crate) closed: bool,
}

/// The readiness source: an I/O completion port, with the readiness of its last wait.
pub(crate) struct Poller {
    poll: mio::Poll,
    events: mio::Events,
    ready: Vec<(Token, Readiness)>,
}

/// Interrupts a [`Poller::wait`] from any thread.
pub(crate) struct PollWaker(mio::Waker);

/// A poller and its waker.
pub(crate) fn poller() -> io::Result<(Poller, PollWaker)> {
    let poll = mio::Poll::new()?;
    let waker = mio::Waker::new(poll.registry(), WAKE)?;
    Ok((Poller { poll, events: mio::Events::with_capacity(256), ready: Vec::new() }, PollWaker(waker)))
}

impl PollWaker {
    /// Makes the current or next [`Poller::wait`] return. Never blocks.
    pub(crate) fn wake(&self) {
        let _ = self.0.wake();
    }
}

/// What one [`Poller::wait`] is for. Here only a listener with a client connected already
/// counts (it makes the wait return at once): registrations live with their sources.
pub(crate) struct Interest<'a> {
    now: Vec<Token>,
    _sources: std::marker::PhantomData<&'a ()>,
}

impl<'a> Interest<'a> {
    /// An empty interest, for one [`Poller::wait`].
    pub(crate) fn new() -> Interest<'a> {
        Interest { now: Vec::new(), _sources: std::marker::PhantomData }
    }

    /// Waits for a client at `acceptor`.
    pub(crate) fn listener(&mut self, token: Token, acceptor: &'a Acceptor) {
        if acceptor.connected {
            self.now.push(token);
        }
    }

    /// Waits for bytes (`read`), or only for the end (not `read`: reading is paused), on
    /// `conn`. Here the completion of the read in flight is reported either way.
    pub(crate) fn connection(&mut self, _token: Token, _conn: &'a Connection, _read: bool) {}

    /// Waits for the removal watch: Windows has none (a pipe cannot be removed).
    pub(crate) fn watch(&mut self, _token: Token, watch: &'a WatchSource) {
        match *watch {}
    }
}

/// The removal watch's source: none on Windows.
pub(crate) enum WatchSource {}

impl Poller {
    /// Waits until something in `interest` is ready, the waker is called, or `timeout`
    /// passes (`None`: no limit). `Interrupted` is not an error to act on.
    pub(crate) fn wait(&mut self, interest: Interest<'_>, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = if interest.now.is_empty() { timeout } else { Some(Duration::ZERO) };
        self.ready.clear();
        self.poll.poll(&mut self.events, timeout)?;
        for e in self.events.iter() {
            if e.token() == WAKE {
                continue;
            }
            let closed = e.is_read_closed() || e.is_error();
            // A connect that completed makes a pipe writable; a read, readable.
            let readable = e.is_readable() || e.is_writable() || closed;
            self.ready.push((e.token().0, Readiness { readable, closed }));
        }
        self.ready.extend(interest.now.iter().map(|&t| (t, Readiness { readable: true, closed: false })));
        self.ready.sort_unstable_by_key(|&(t, _)| t);
        Ok(())
    }

    /// What the last wait saw for `token`.
    pub(crate) fn readiness(&self, token: Token) -> Readiness {
        match self.ready.binary_search_by_key(&token, |&(t, _)| t) {
            Ok(i) => {
                // Several events for one token: merged.
                let mut r = Readiness::default();
                let first = self.ready[..=i].iter().rposition(|&(t, _)| t != token).map_or(0, |p| p + 1);
                for &(t, x) in self.ready[first..].iter().take_while(|&&(t, _)| t == token) {
                    debug_assert_eq!(t, token);
                    r.readable |= x.readable;
                    r.closed |= x.closed;
                }
                r
            }
            Err(_) => Readiness::default(),
        }
    }
}

/// A security descriptor converted from SDDL, freed on drop.
struct Descriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is plain memory this value owns alone; Windows only reads it.
unsafe impl Send for Descriptor {}

impl Descriptor {
    fn from_sddl(sddl: &str) -> io::Result<Descriptor> {
        let wide: Vec<u16> = sddl.encode_utf16().chain([0]).collect();
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated; on success `sd` receives a LocalAlloc'd
        // self-relative descriptor, freed on drop.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Descriptor(sd))
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by the conversion in `from_sddl`, not used after this.
        unsafe { LocalFree(self.0) };
    }
}

/// The listening end of a primary's pipe: one instance waits for a client at a time.
pub(crate) struct Acceptor {
    name: Vec<u16>,
    descriptor: Descriptor,
    /// The instance that listens, once registered.
    pending: Option<NamedPipe>,
    token: Token,
    /// A client connected to `pending` already (the wait returns at once).
    connected: bool,
}

impl Acceptor {
    /// Creates the pipe `path`'s first instance, under the security descriptor `sddl`,
    /// failing with `AddressInUse` (`ERROR_ACCESS_DENIED`) while any instance of it
    /// exists. It listens once [registered](Self::register).
    pub(crate) fn bind(path: &Path, sddl: &str) -> io::Result<Acceptor> {
        let name: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
        if name[..name.len() - 1].contains(&0) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a pipe name cannot hold a NUL"));
        }
        let descriptor = Descriptor::from_sddl(sddl)?;
        let mut acceptor = Acceptor { name, descriptor, pending: None, token: 0, connected: false };
        acceptor.pending = Some(acceptor.instance(true)?);
        Ok(acceptor)
    }

    /// A new instance of the pipe, overlapped (for the completion port).
    fn instance(&self, first: bool) -> io::Result<NamedPipe> {
        let sa = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.descriptor.0,
            bInheritHandle: 0,
        };
        let first = if first { FILE_FLAG_FIRST_PIPE_INSTANCE } else { 0 };
        // SAFETY: `name` is NUL-terminated; `sa` and the descriptor it points to live for
        // the call (Windows copies the descriptor).
        let h = unsafe {
            CreateNamedPipeW(
                self.name.as_ptr(),
                PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | first,
                PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                PIPE_UNLIMITED_INSTANCES,
                BUFFER,
                BUFFER,
                0,
                &sa,
            )
        };
        if h == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a pipe handle just created, owned by nobody else, not yet associated
        // with a completion port.
        Ok(unsafe { NamedPipe::from_raw_handle(h as _) })
    }

    /// Starts listening, reporting clients to `poller` under `token`.
    pub(crate) fn register(&mut self, poller: &Poller, token: Token) -> io::Result<()> {
        self.token = token;
        let pipe = match self.pending.as_mut() {
            Some(p) => p,
            None => return Ok(()),
        };
        poller.poll.registry().register(pipe, mio::Token(token), mio::Interest::READABLE)?;
        self.listen();
        Ok(())
    }

    /// Starts the overlapped connect of the instance that listens.
    fn listen(&mut self) {
        self.connected = match self.pending.as_ref().map(NamedPipe::connect) {
            Some(Ok(())) => true,
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => false,
            // A client that came and went already: the instance is replaced on the next
            // accept.
            Some(Err(_)) => true,
            None => false,
        };
    }

    /// The client that connected, if one did, registered with `poller` under `token`;
    /// a fresh instance listens in its place. Never blocks.
    pub(crate) fn accept(&mut self, poller: &Poller, token: Token) -> io::Result<Option<Connection>> {
        let Some(pipe) = self.pending.as_ref() else { return Ok(None) };
        let connected = match pipe.connect() {
            Ok(()) => pipe.take_error()?.is_none(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.connected = false;
                return Ok(None);
            }
            // The client went before it was accepted (ERROR_NO_DATA): the instance is
            // replaced.
            Err(_) => false,
        };
        let fresh = self.instance(false)?;
        let mut taken = self.pending.replace(fresh).expect("an instance listens");
        if let Some(p) = self.pending.as_mut() {
            poller.poll.registry().register(p, mio::Token(self.token), mio::Interest::READABLE)?;
        }
        self.listen();
        if !connected {
            return Ok(None);
        }
        poller.poll.registry().reregister(&mut taken, mio::Token(token), mio::Interest::READABLE)?;
        Ok(Some(Connection { pipe: taken }))
    }

    /// The Unix engine takes a rebound `LocalServer`'s listener; a pipe is never bound
    /// again (nothing can remove it).
    pub(crate) fn of_listener(_listener: &std::sync::Arc<super::Listener>) -> Option<Acceptor> {
        None
    }
}

/// A client's connection at the primary's end.
#[derive(Debug)]
pub(crate) struct Connection {
    pipe: NamedPipe,
}

impl Connection {
    fn handle(&self) -> HANDLE {
        self.pipe.as_raw_handle() as HANDLE
    }

    /// Takes what has arrived, without waiting: `WouldBlock` when nothing has, `Ok(0)` at
    /// the end.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match (&self.pipe).read(buf) {
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_NOT_CONNECTED as i32) => Ok(0),
            r => r,
        }
    }

    /// What a fresh connection holds already, without waiting: nothing here (the first
    /// read is in flight when it is accepted); the engine reads it when it is reported.
    pub(crate) fn read_now(&self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
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
            // SAFETY: the handle is open; `chunk` and `ov` outlive the write, which is
            // waited for below (completed, or cancelled and then completed) before
            // either goes.
            let ok = unsafe { WriteFile(self.handle(), chunk.as_ptr(), len, &mut n, &mut ov) };
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
                    unsafe { CancelIoEx(self.handle(), &ov) };
                }
                // SAFETY: the handle and `ov` are this write's; waits until it is done.
                let done = unsafe { GetOverlappedResult(self.handle(), &ov, &mut n, 1) };
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

    /// Whether the client has closed its end (a reply would reach nobody).
    pub(crate) fn is_closed(&self) -> bool {
        let mut avail = 0u32;
        // SAFETY: the handle is open; no buffer, only the count asked for.
        let ok = unsafe {
            PeekNamedPipe(
                self.handle(),
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                &mut avail,
                std::ptr::null_mut(),
            )
        };
        ok == 0
            && matches!(
                io::Error::last_os_error().raw_os_error(),
                Some(e) if e == ERROR_BROKEN_PIPE as i32 || e == ERROR_PIPE_NOT_CONNECTED as i32
            )
    }

    /// Ends the connection for the client now: it reads the end.
    pub(crate) fn hang_up(&self) {
        let _ = self.pipe.disconnect();
    }

    /// The client's user and integrity level as it connected (read by impersonating it at
    /// the identification level): `None` when it cannot be told.
    pub(crate) fn client_identity(&self) -> Option<ClientIdentity> {
        // The calling thread may impersonate someone already: its token is put back.
        let saved = token::thread_token(TOKEN_IMPERSONATE);
        // SAFETY: the handle is open, the server end of a pipe.
        let id = if unsafe { ImpersonateNamedPipeClient(self.handle()) } != 0 {
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
        let mut pid = 0u32;
        // SAFETY: the handle is open; `pid` is a valid out pointer.
        let pid = (unsafe { GetNamedPipeClientProcessId(self.handle(), &mut pid) } != 0).then_some(pid);
        let sid: Option<Sid> = self.client_identity().map(|c| c.user);
        Some(PeerCredentials { pid, uid: None, gid: None, sid })
    }

    /// The connection's handle, for the checks in `sys`.
    #[allow(dead_code)]
    pub(crate) fn as_handle(&self) -> BorrowedHandle<'_> {
        // SAFETY: the handle is open for as long as `self`.
        unsafe { BorrowedHandle::borrow_raw(self.pipe.as_raw_handle()) }
    }
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
