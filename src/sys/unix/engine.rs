//! The serving engine's readiness on Unix: one `poll(2)` over the listening sockets, the
//! removal watch, the connections and a wake-up pipe. `poll(2)` is level-triggered, which
//! the engine's edge-triggered reading is right for too.
//!
//! The engine contract, the same names and signatures on every platform (the primary's
//! loop, `instance::serve`, is written against these alone):
//!
//! - [`poller`]`() -> (`[`Poller`]`, `[`PollWaker`]`)`: the readiness wait and what
//!   interrupts it from any thread ([`PollWaker::wake`], never blocking);
//! - [`Interest`]: what one [`Poller::wait`] is for, each source under a [`Token`]:
//!   [`listener`](Interest::listener), [`connection`](Interest::connection) (reading or
//!   paused), [`watch`](Interest::watch) (a [`WatchSource`]); then
//!   [`Poller::readiness`] per token (readable, closed). Readiness may be edge-triggered:
//!   the engine remembers it until a read or an accept finds nothing; [`Poller::settle`]
//!   at the end, so that what was closed is closed before the lock goes;
//! - [`Acceptor`]: the listening end; [`register`](Acceptor::register) with the poller,
//!   then non-blocking [`accept`](Acceptor::accept) of a [`Connection`] registered under
//!   its token; [`of_listener`](Acceptor::of_listener) for a `LocalServer`'s socket
//!   (none on Windows, where the primary makes its pipe's instances itself with
//!   `Acceptor::bind`);
//! - [`Connection`]: non-blocking `read`, `send` of a reply before a deadline (a client
//!   gone is `BrokenPipe`, one that does not read is `TimedOut`), `is_closed` (the
//!   client hung up: an abandoned request), `hang_up`, `close` (Windows: the pipe
//!   instance closed, freeing the pipe's name, while the value lives on), `peer`;
//!   `PINNED`, the memory it holds while it lives (a request's weight counts it);
//! - [`Owner`]: who a primary serves, and whether it [`admits`](Owner::admits) a client;
//! - [`read_until`]: a launch's
//!   read of its reply, bounded by a deadline.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::RecvFlags;

use super::poll::LazyPipe;
use super::Listener;
use crate::{LocalSocket, PeerCredentials};

/// Whether readiness is reported once per change (Windows) rather than for as long as it
/// lasts (`poll(2)`: level-triggered, so a client left waiting is reported again).
pub(crate) const EDGE_TRIGGERED: bool = false;

/// Names a source in a [`Poller`]'s readiness.
pub(crate) type Token = usize;

/// What a wait saw for one token.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Readiness {
    /// Something to take: bytes, an end of stream, an error (or for a listener, a client).
    pub(crate) readable: bool,
    /// The other end is gone (reported where the platform tells it without a read).
    pub(crate) closed: bool,
}

/// The readiness source: `poll(2)`, with the readiness of its last wait.
#[derive(Debug)]
pub(crate) struct Poller {
    wake: Arc<LazyPipe>,
    ready: Vec<(Token, Readiness)>,
}

/// Interrupts a [`Poller::wait`] from any thread: its wake-up pipe (made by the first
/// wait: a loop that never waits makes none).
#[derive(Debug)]
pub(crate) struct PollWaker(Arc<LazyPipe>);

/// A poller and its waker.
pub(crate) fn poller() -> io::Result<(Poller, PollWaker)> {
    let wake = Arc::new(LazyPipe::default());
    Ok((Poller { wake: Arc::clone(&wake), ready: Vec::new() }, PollWaker(wake)))
}

impl PollWaker {
    /// Makes the current or next [`Poller::wait`] return. Never blocks: the pipe is
    /// non-blocking, and a full pipe has a wake-up pending already.
    pub(crate) fn wake(&self) {
        self.0.wake();
    }
}

/// What one [`Poller::wait`] is for: the descriptors, borrowed for the wait.
pub(crate) struct Interest<'a> {
    fds: Vec<PollFd<'a>>,
    tokens: Vec<Token>,
}

impl<'a> Interest<'a> {
    /// An empty interest, for one [`Poller::wait`].
    pub(crate) fn new() -> Interest<'a> {
        Interest { fds: Vec::with_capacity(8), tokens: Vec::with_capacity(8) }
    }

    /// Waits for a client at `acceptor`.
    pub(crate) fn listener(&mut self, token: Token, acceptor: &'a Acceptor) {
        self.fds.push(PollFd::from_borrowed_fd(acceptor.0.fd(), PollFlags::IN));
        self.tokens.push(token);
    }

    /// Waits for bytes (`read`), or only for the end (not `read`: reading is paused), on
    /// `conn`.
    pub(crate) fn connection(&mut self, token: Token, conn: &'a Connection, read: bool) {
        let flags = if read { PollFlags::IN } else { PollFlags::empty() };
        self.fds.push(PollFd::new(&conn.0, flags));
        self.tokens.push(token);
    }

    /// Waits for the removal watch's events.
    pub(crate) fn watch(&mut self, token: Token, watch: &'a WatchSource) {
        self.fds.push(PollFd::new(watch, PollFlags::IN));
        self.tokens.push(token);
    }
}

/// The removal watch's source: an inotify instance or a kqueue.
pub(crate) type WatchSource = OwnedFd;

impl Poller {
    /// Waits until something in `interest` is ready, the waker is called, or `timeout`
    /// passes (`None`: no limit). `Interrupted` is not an error to act on.
    pub(crate) fn wait(&mut self, interest: Interest<'_>, timeout: Option<Duration>) -> io::Result<()> {
        self.ready.clear();
        let timeout = timeout.map(|t| Timespec { tv_sec: t.as_secs() as _, tv_nsec: t.subsec_nanos() as _ });
        // The wake-up pipe first, then the interest's descriptors. Woken before the pipe
        // was made: only a look, without waiting.
        let (rx, early) = self.wake.read_end()?;
        let timeout = if early { Some(Timespec { tv_sec: 0, tv_nsec: 0 }) } else { timeout };
        let mut fds = interest.fds;
        fds.insert(0, PollFd::new(rx, PollFlags::IN));
        rustix::event::poll(&mut fds, timeout.as_ref())?;
        let woken = !fds[0].revents().is_empty();
        for (fd, &token) in fds[1..].iter().zip(&interest.tokens) {
            let r = fd.revents();
            if !r.is_empty() {
                let closed = r.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL);
                self.ready.push((token, Readiness { readable: true, closed }));
            }
        }
        drop(fds);
        if woken {
            self.wake.drain();
        }
        // Tokens come in the order they were added, not sorted.
        self.ready.sort_unstable_by_key(|&(t, _)| t);
        Ok(())
    }

    /// Lets closed connections and listeners finish what they had under way: nothing
    /// here (a closed descriptor is gone at once; Windows has cancelled I/O to see
    /// complete). Never waits.
    pub(crate) fn settle(&mut self) {}

    /// What the last wait saw for `token`.
    pub(crate) fn readiness(&self, token: Token) -> Readiness {
        match self.ready.binary_search_by_key(&token, |&(t, _)| t) {
            Ok(i) => self.ready[i].1,
            Err(_) => Readiness::default(),
        }
    }
}

/// The listening end of a primary's socket (shared with the `LocalServer` that bound it).
#[derive(Debug, Clone)]
pub(crate) struct Acceptor(Arc<Listener>);

impl Acceptor {
    /// The engine's side of a `LocalServer`'s listening socket.
    pub(crate) fn of_listener(listener: &Arc<Listener>) -> Option<Acceptor> {
        Some(Acceptor(Arc::clone(listener)))
    }

    /// Reports clients to `poller` under `token`: nothing to do here (each wait names its
    /// descriptors).
    pub(crate) fn register(&mut self, _poller: &Poller, _token: Token) -> io::Result<()> {
        Ok(())
    }

    /// A client that connected, if one did. Never blocks.
    pub(crate) fn accept(&mut self, _poller: &Poller, _token: Token) -> io::Result<Option<Connection>> {
        Ok(self.0.try_accept()?.map(|s| Connection(LocalSocket::from_stream(s))))
    }
}

/// A client's connection at the primary's end.
#[derive(Debug)]
pub(crate) struct Connection(LocalSocket);

impl Connection {
    /// Memory the connection holds in the process for as long as it lives, besides what
    /// the loop reads from it: none (a socket's buffers are the kernel's). Counted in the
    /// weight of the request it carries.
    pub(crate) const PINNED: usize = 0;

    /// Takes what has arrived, without waiting: `WouldBlock` when nothing has, `Ok(0)` at
    /// the end.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            return match rustix::net::recv(&self.0, &mut *buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => Ok(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => Err(e.into()),
            };
        }
    }

    /// Writes all of `bytes` before `deadline` (`TimedOut`: the client does not read). A
    /// reply usually fits the socket's buffer: sent at once, with no wait.
    pub(crate) fn send(&self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        let sent = super::send_now(&self.0, bytes)?;
        if sent == bytes.len() {
            return Ok(());
        }
        super::write_all_until(&self.0, &bytes[sent..], deadline)
    }

    /// Whether the client has closed its end (a reply would reach nobody). `POLLHUP`: both
    /// directions are shut, which a close by the peer does (a half-close only shuts our
    /// reading side, and the client still waits).
    pub(crate) fn is_closed(&self) -> bool {
        let mut pfd = [PollFd::new(&self.0, PollFlags::empty())];
        let now = Timespec { tv_sec: 0, tv_nsec: 0 };
        rustix::event::poll(&mut pfd, Some(&now)) == Ok(1)
            && pfd[0].revents().intersects(PollFlags::HUP | PollFlags::ERR)
    }

    /// Ends the connection for the client now, however many processes hold it (a child
    /// forked without exec keeps a copy that closing ours would not end).
    pub(crate) fn hang_up(&self) {
        super::hang_up(&self.0);
    }

    /// Lets go of the connection's hold on the primary's name while the value lives on:
    /// nothing to do here (a socket's connection holds no name a successor needs, unlike
    /// a pipe instance on Windows); the descriptor closes with the value.
    pub(crate) fn close(&self) {}

    /// The client as the OS reports it, taken when it connected.
    pub(crate) fn peer(&self) -> Option<PeerCredentials> {
        self.0.peer_credentials().ok()
    }

    /// The connection's descriptor.
    #[allow(dead_code)]
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Who a primary serves: the user its launches must be.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner {
    uid: u32,
}

impl Owner {
    /// This process's effective user.
    pub(crate) fn current() -> io::Result<Owner> {
        Ok(Owner { uid: super::super::euid() })
    }

    /// Whether the client at `conn`, whose credentials are `peer`, is this user (the
    /// socket file is this user's, mode 0600: no other could connect through it anyway).
    pub(crate) fn admits(&self, _conn: &Connection, peer: Option<&PeerCredentials>) -> bool {
        peer.and_then(|p| p.uid) == Some(self.uid)
    }
}

/// Reads what a launch's connection has before `deadline`, at most `max` bytes, onto the
/// end of `line` (never zeroed first: the kernel writes what it reads): a `poll(2)` for
/// the time left, then a non-blocking read (no `SO_RCVTIMEO`). `Ok(0)` at the end,
/// `TimedOut` past the deadline.
pub(crate) fn read_until(
    socket: &LocalSocket,
    line: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> io::Result<usize> {
    line.reserve(max);
    let n = super::recv_until(socket, &mut line.spare_capacity_mut()[..max], deadline)?;
    // SAFETY: `recv_until` read `n` bytes into the first `n` of the spare capacity, so they
    // are initialised, and `n <= max <= capacity - len`.
    unsafe { line.set_len(line.len() + n) };
    Ok(n)
}
