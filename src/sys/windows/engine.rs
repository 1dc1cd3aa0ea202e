//! The serving engine's readiness contract on Windows: overlapped named-pipe I/O on one
//! I/O completion port, through mio (`Poll`, `Waker` and `NamedPipe`, the pieces Tokio's
//! named pipes stand on). mio turns the port's completions into readiness: a
//! [`Connection`] always has a read in flight, and its completion makes it readable.
//!
//! The same items as the Unix half (`sys/unix/engine.rs`, which lists them), with the
//! same signatures; [`Connection`] and [`Owner`] are in `connection.rs`.
//!
//! Readiness here is edge-triggered (one event per completed read): the engine reads a
//! connection reported ready until a read returns less than asked or `WouldBlock`.
//!
//! The listener keeps one instance of the pipe listening (an overlapped
//! `ConnectNamedPipe`), created here with the same flags and security descriptor as
//! `LocalServer`'s: `FILE_FLAG_FIRST_PIPE_INSTANCE` on the first (a pipe someone else
//! holds is `AddressInUse`), `PIPE_REJECT_REMOTE_CLIENTS` on all. Once a client connects,
//! that instance becomes its connection and a fresh one listens.

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::FromRawHandle;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::windows::NamedPipe;
use windows_sys::Win32::Foundation::{LocalFree, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Pipes::{
    CreateNamedPipeW, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE,
    PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};

pub(crate) use super::connection::{Connection, Owner};

/// Whether readiness is reported once per change (here: a completion is seen once) rather
/// than for as long as it lasts.
pub(crate) const EDGE_TRIGGERED: bool = true;

/// Names a source in a [`Poller`]'s readiness.
pub(crate) type Token = usize;

/// The waker's token: never one the engine hands out (it counts up from small numbers).
const WAKE: mio::Token = mio::Token(usize::MAX);

/// Most non-blocking waits one [`Poller::settle`] makes (of 256 completions each).
const SETTLE_ROUNDS: usize = 64;

/// Each pipe instance's buffer sizes, in and out: a reply that does not fit waits for the
/// client to read (up to the reply's deadline).
const BUFFER: u32 = 64 << 10;

/// What a wait saw for one token.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Readiness {
    /// Something to take: bytes, an end of stream, an error (or for a listener, a client).
    pub(crate) readable: bool,
    /// The other end is gone (reported where the platform tells it without a read). Here
    /// a completion tells only that the read in flight finished (with bytes, or with the
    /// end): the loop sees the end when it reads, and `Connection::is_closed` tells it
    /// without a read, from the pipe's state.
    pub(crate) closed: bool,
}

/// The readiness source: an I/O completion port, with the readiness of its last wait.
pub(crate) struct Poller {
    port: Arc<Port>,
    /// The waker, whose wake-ups [`Poller::settle`] counts.
    wakes: Arc<Wakes>,
    events: mio::Events,
    ready: Vec<(Token, Readiness)>,
}

/// The completion port, shared by the [`Poller`] with every [`Connection`] it accepted.
///
/// A pipe closes only once the completion of the read it had in flight is dequeued (mio
/// keeps the handle and the read's buffer until then). While the poller lives its waits
/// dequeue them; once it is gone (the primary dropped), a connection that outlives it (a
/// request the app keeps) dequeues its own, and so closes its pipe when dropped.
pub(super) struct Port {
    poll: Mutex<mio::Poll>,
    registry: mio::Registry,
    /// The poller is gone: nothing else dequeues completions.
    orphaned: AtomicBool,
}

impl Port {
    /// Dequeues what has completed, without waiting, once the poller is gone (its events
    /// went to nobody then anyway).
    pub(super) fn drain_orphaned(&self) {
        if !self.orphaned.load(Ordering::SeqCst) {
            return;
        }
        let mut poll = self.poll.lock().unwrap_or_else(|p| p.into_inner());
        // Up to 64 completions: each orphaned connection dequeues its own as it goes (a
        // cancelled read yields no event, so an empty `events` says nothing of what is
        // left); the last one's drop drops the port, which dequeues all that remain.
        let mut events = mio::Events::with_capacity(64);
        let _ = poll.poll(&mut events, Some(Duration::ZERO));
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.port.orphaned.store(true, Ordering::SeqCst);
        self.port.drain_orphaned();
    }
}

/// Interrupts a [`Poller::wait`] from any thread.
pub(crate) struct PollWaker(Arc<Wakes>);

/// The port's waker (mio allows one), and how many of its wake-ups are queued: each is
/// one completion, taken in order with every other.
struct Wakes {
    waker: mio::Waker,
    queued: AtomicUsize,
}

impl Wakes {
    fn wake(&self) -> io::Result<()> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.waker.wake().inspect_err(|_| {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        })
    }

    /// Counts the wake-ups `events` took in; whether none is left queued.
    fn taken(&self, events: &mio::Events) -> bool {
        let n = events.iter().filter(|e| e.token() == WAKE).count();
        let before =
            self.queued.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| Some(q.saturating_sub(n)));
        before.unwrap_or(0) <= n
    }
}

/// A poller and its waker.
pub(crate) fn poller() -> io::Result<(Poller, PollWaker)> {
    let poll = mio::Poll::new()?;
    let waker = mio::Waker::new(poll.registry(), WAKE)?;
    let wakes = Arc::new(Wakes { waker, queued: AtomicUsize::new(0) });
    let registry = poll.registry().try_clone()?;
    let port = Arc::new(Port { poll: Mutex::new(poll), registry, orphaned: AtomicBool::new(false) });
    let events = mio::Events::with_capacity(256);
    Ok((Poller { port, wakes: Arc::clone(&wakes), events, ready: Vec::new() }, PollWaker(wakes)))
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
        // Locked by this wait alone while the poller lives (see `Port`).
        self.port.poll.lock().unwrap_or_else(|p| p.into_inner()).poll(&mut self.events, timeout)?;
        self.wakes.taken(&self.events);
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

    /// Takes in, without blocking, every completion queued before the call: the I/O of
    /// the connections and listeners closed until then is seen finished, which closes
    /// their pipes (mio keeps a pipe open until then). A wake-up posted now comes out
    /// after all of them, in order: the waits stop once every wake-up queued is taken in
    /// (or after [`SETTLE_ROUNDS`]). Their readiness is dropped: for the end of the loop.
    pub(crate) fn settle(&mut self) {
        if self.wakes.wake().is_err() {
            return;
        }
        let mut poll = self.port.poll.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..SETTLE_ROUNDS {
            if poll.poll(&mut self.events, Some(Duration::ZERO)).is_err() || self.wakes.taken(&self.events) {
                break;
            }
        }
        self.ready.clear();
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
        poller.port.registry.register(pipe, mio::Token(token), mio::Interest::READABLE)?;
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
            poller.port.registry.register(p, mio::Token(self.token), mio::Interest::READABLE)?;
        }
        self.listen();
        if !connected {
            return Ok(None);
        }
        poller.port.registry.reregister(&mut taken, mio::Token(token), mio::Interest::READABLE)?;
        Ok(Some(Connection::new(taken, Arc::clone(&poller.port))))
    }

    /// The Unix engine takes a rebound `LocalServer`'s listener; a pipe is never bound
    /// again (nothing can remove it).
    pub(crate) fn of_listener(_listener: &std::sync::Arc<super::Listener>) -> Option<Acceptor> {
        None
    }
}
