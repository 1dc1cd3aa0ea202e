//! The primary's loop, one design for every platform: one readiness wait (`sys::Poller`:
//! poll(2) on Unix, an I/O completion port on Windows) over the listening end, every
//! connection whose request has not arrived whole, the removal watch and a waker; with a
//! deadline per connection and one byte budget.
//!
//! No thread runs it until one is needed. The app's own thread runs it while it waits in
//! [`Primary::recv`](super::Primary::recv) (and for one non-blocking turn in
//! `try_recv`), as Qt's event loop serves a `QLocalServer`: a launch is accepted, read and
//! answered by the thread that handles it, with no hop between threads. A thread of its
//! own (the driver) runs it from the first [`set_waker`](super::Primary::set_waker) or
//! `recv_async` on, since then the app sleeps elsewhere. Until the loop first runs,
//! launches wait in the listening socket's backlog (a full backlog makes them retry until
//! their timeout), as they wait for any app that has not reached its event loop yet.
//!
//! The loop never waits for a client: past [`MAX_HELD`] connections the oldest silent one
//! is shed, and past [`READ_BUDGET`] buffered bytes the oldest partial request is. Each is
//! told to retry.

mod context;
mod health;
#[cfg(test)]
mod tests;
mod turn;
mod turns;
// Windows has no removal watch (a pipe cannot be removed): its stand-in keeps the same
// items.
mod watch;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(super) use context::Context;
pub use health::Health;

use super::lock::LockFile;
use crate::sys::{Connection, Token};
use crate::{LocalServer, PeerCredentials, SocketOptions};

/// The listening socket's backlog: launches that wait for the loop to accept them (one
/// that finds it full retries until its timeout). A pipe has one instance listening.
pub(super) const BACKLOG: usize = 64;

/// Most connections held unread at once; the oldest silent one is shed for a new one.
/// (Below the usual soft limit of 1024 open files, leaving the app its share.)
pub(super) const MAX_HELD: usize = 512;

/// Most bytes of partial requests held at once (one request may always grow to the
/// message limit, shedding the oldest others).
pub(super) const READ_BUDGET: usize = 8 << 20;

pub(super) struct Mux {
    /// The loop's state, locked by the thread that runs a turn.
    state: Mutex<State>,
    /// Interrupts the loop's wait from any thread (shared with the inbox).
    waker: Arc<crate::sys::PollWaker>,
    /// The socket to keep in place, and how to bind it again.
    socket: PathBuf,
    #[allow(dead_code)] // read by the removal watch (none on Windows)
    options: SocketOptions,
    /// The lock file to keep in place (for an abstract name, the System scope's in `/tmp`),
    /// and whether it is in a directory shared with other users (the System scope's).
    lock_path: Option<PathBuf>,
    #[allow(dead_code)] // read by the removal watch (none on Windows)
    shared: bool,
    /// Linux's System scope: the socket is an abstract name, which nothing can remove, and
    /// only its lock file (in `/tmp`) is kept in place, watched itself (see `watch`).
    #[allow(dead_code)] // read by the removal watch (none on Windows)
    lock_only: bool,
    /// What `Primary::health` says (see `watch`).
    health: Mutex<Health>,
    /// The primary stepped down (`Health::SteppedDown`): read without the lock.
    stepped_down: AtomicBool,
    /// The primary's process (see `close_all`).
    pid: u32,
    /// Set once the primary is dropped: no turn runs after it.
    shut: AtomicBool,
    /// A driver thread runs the loop: the app's calls only take from the queue.
    driven: AtomicBool,
    driver: Mutex<Option<JoinHandle<()>>>,
    /// The turns that a reader of a launch's stdin waits for (Windows: see `turns`).
    turns: turns::Turns,
    /// The tests: told each time a turn waits with no deadline, which only an event (a
    /// client, a wake-up) ends. The thread has then looked at the stop flag and the queue
    /// for the last time before it wakes.
    #[cfg(test)]
    endless_wait: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

pub(super) struct State {
    /// The readiness wait.
    poller: crate::sys::Poller,
    /// The listening end the loop accepts on (taken at shutdown, with `listener`).
    acceptor: Option<crate::sys::Acceptor>,
    /// Unix: the listening socket, as the removal watch compares it (taken at shutdown:
    /// its descriptor must close before the lock is freed, as an abstract name lives as
    /// long as it).
    listener: Option<Arc<crate::sys::Listener>>,
    /// Keeps `replacement`'s listening socket from children forked without exec (see
    /// `sys::ForkGuard`: Linux). Declared before it, so dropped before it closes.
    replacement_guard: Option<crate::sys::ForkGuard>,
    /// The socket bound again after its file was removed, if it was.
    replacement: Option<LocalServer>,
    /// Oldest first.
    conns: VecDeque<Conn>,
    /// Bytes of partial requests in `conns`.
    buffered: usize,
    chunk: Vec<u8>,
    /// A client was reported at the listening end and not accepted yet.
    listen_ready: bool,
    /// The token the next connection gets (counts up: `conns` is in token order).
    next_token: Token,
    /// The lock held (none for an abstract name): the one taken at the start, or a fresh
    /// one after a cleaner removed its file (see `watch`). Let go last, at shutdown.
    lock: Option<LockFile>,
    /// The removal watch, set once `watch_at` has passed (Linux, a socket file).
    watch: Option<watch::Watch>,
    watch_at: Option<Instant>,
    /// When to look at the files next: soon after a removal, every `CHECK_PERIOD`
    /// without a watch, or to try a busy lock again (see `watch`).
    check_at: Option<Instant>,
    /// How long the last wait for a busy fresh lock file was.
    #[allow(dead_code)] // read by the removal watch (none on Windows)
    retry: Duration,
    /// poll(2) reported the watch unusable: it is not tried again.
    #[allow(dead_code)] // read by the removal watch (none on Windows)
    watch_failed: bool,
    /// Accepting pauses until then: accept(2) failed for want of resources.
    accept_after: Option<Instant>,
    /// When the last turn ended: until the next starts nobody reads (the app is away from
    /// its loop), and the connections' deadlines move on by that time.
    turn_end: Option<Instant>,
}

struct Conn {
    conn: Connection,
    token: Token,
    /// Reported readable and not read empty since: read on the next turn (readiness may be
    /// edge-triggered).
    ready: bool,
    peer: Option<PeerCredentials>,
    buf: Vec<u8>,
    deadline: Instant,
    /// The primary stopped reading (over its byte budget) while this connection waited: a
    /// deadline that passes then is the primary's lateness, answered with "busy" (retry),
    /// not the client's.
    held_off: bool,
}

impl Mux {
    /// `lock`: the lock file's path (for an abstract name too: the System scope's, in
    /// `/tmp`); `shared`: in a directory shared with other users.
    pub(super) fn new(
        socket: &Path,
        options: SocketOptions,
        lock: Option<&Path>,
        shared: bool,
    ) -> std::io::Result<Mux> {
        let (poller, waker) = crate::sys::poller()?;
        // An abstract name has no file to lose, but its lock file (the System scope's, in
        // `/tmp`) has: that file alone is watched then.
        let abstract_ns = options.contains(SocketOptions::ABSTRACT_NAMESPACE);
        let lock_only = crate::sys::watch::WATCHES_FILES && abstract_ns && lock.is_some();
        let watch = lock_only
            || crate::sys::watch::WATCHES_DIRECTORIES
                && !abstract_ns
                && lock.is_some()
                && socket.parent().is_some_and(|d| !d.as_os_str().is_empty());
        Ok(Mux {
            state: Mutex::new(State {
                poller,
                acceptor: None,
                listener: None,
                replacement_guard: None,
                replacement: None,
                conns: VecDeque::new(),
                buffered: 0,
                chunk: Vec::new(),
                listen_ready: false,
                next_token: turn::FIRST_CONN,
                lock: None,
                watch: None,
                // The System scope's lock file is watched from the first turn: a launch in
                // another network namespace could lock a fresh one in any delay.
                watch_at: watch
                    .then(|| Instant::now() + if lock_only { Duration::ZERO } else { watch::WATCH_DELAY }),
                check_at: None,
                retry: Duration::ZERO,
                watch_failed: false,
                accept_after: None,
                turn_end: None,
            }),
            waker: Arc::new(waker),
            socket: socket.to_path_buf(),
            options,
            lock_path: lock.map(Path::to_path_buf),
            shared,
            lock_only,
            health: Mutex::new(if watch { Health::Watched } else { Health::Unwatched }),
            stepped_down: AtomicBool::new(false),
            pid: crate::sys::own_pid(),
            shut: AtomicBool::new(false),
            driven: AtomicBool::new(false),
            driver: Mutex::new(None),
            turns: turns::Turns::default(),
            #[cfg(test)]
            endless_wait: Mutex::new(None),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the loop the listening end it accepts on, once it listens (and on Unix the
    /// socket it keeps in place), and the lock it holds.
    pub(super) fn attach(
        &self,
        acceptor: Option<crate::sys::Acceptor>,
        listener: Option<Arc<crate::sys::Listener>>,
        lock: Option<LockFile>,
    ) -> std::io::Result<()> {
        let mut st = self.state();
        let State { poller, acceptor: slot, .. } = &mut *st;
        if let Some(mut a) = acceptor {
            a.register(poller, turn::LISTEN)?;
            *slot = Some(a);
        }
        st.listener = listener;
        st.lock = lock;
        Ok(())
    }

    /// The lock, taken at shutdown to be let go last (after the socket).
    pub(super) fn take_lock(&self) -> Option<LockFile> {
        self.state().lock.take()
    }

    /// What `Primary::health` says.
    pub(super) fn health(&self) -> Health {
        self.health.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records the primary's health; a step-down is final.
    #[allow(dead_code)] // called by the removal watch (none on Windows)
    fn set_health(&self, health: Health) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(*h, Health::SteppedDown(_)) {
            if matches!(health, Health::SteppedDown(_)) {
                self.stepped_down.store(true, Ordering::SeqCst);
            }
            *h = health;
        }
    }

    /// Whether the primary stepped down (see `watch`).
    pub(super) fn stepped_down(&self) -> bool {
        self.stepped_down.load(Ordering::SeqCst)
    }

    /// Makes a turn in progress return (a stop, a request queued by another thread, bytes
    /// of budget freed). Never blocks: the pipe is non-blocking, and a full pipe has a
    /// wake-up pending already.
    pub(super) fn wake(&self) {
        self.waker.wake();
    }

    /// What wakes the loop, for the inbox.
    pub(super) fn waker(&self) -> Arc<crate::sys::PollWaker> {
        Arc::clone(&self.waker)
    }

    /// Whether a driver thread runs the loop.
    pub(super) fn is_driven(&self) -> bool {
        self.driven.load(Ordering::SeqCst)
    }

    /// Stops the loop for good: the driver thread is joined, and the listening sockets,
    /// the connections held and the watch are closed, before the caller frees the lock.
    pub(super) fn shutdown(&self) {
        self.shut.store(true, Ordering::SeqCst);
        self.turns.ended();
        self.wake();
        let driver = self.driver.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = driver {
            // Dropped from the driver itself (a waker that owned the primary): that thread
            // ends after this turn.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        let mut st = self.state();
        self.close_all(&mut st);
        st.watch = None;
        drop(st);
        self.settle();
    }

    /// Lets the poller see what closed connections and listeners still had under way: on
    /// Windows a pipe instance stays open until its cancelled I/O is seen complete, and
    /// the pipe's name with it. Called before the lock is let go, so a successor finds the
    /// name free. Never waits.
    pub(super) fn settle(&self) {
        self.state().poller.settle();
    }

    /// Closes the listening sockets (the original one only here: the `LocalServer` that
    /// holds it closes it too) and the connections held, each hung up, not only closed: a
    /// child forked without exec holds copies, and the launch must see the end now to
    /// start over.
    fn close_all(&self, st: &mut State) {
        // In a child forked without exec, the connections are the parent's to end.
        let hang_up = |conn: &Connection| {
            if self.pid == crate::sys::own_pid() {
                conn.hang_up();
            }
        };
        st.acceptor = None;
        st.listener = None;
        if let Some(l) = st.replacement.as_ref().and_then(|s| s.sys_listener()) {
            l.shut_down();
        }
        st.replacement_guard = None;
        st.replacement = None;
        for c in st.conns.drain(..) {
            hang_up(&c.conn);
        }
        st.buffered = 0;
    }
}

impl Context {
    /// Runs one turn of the loop on this thread, waiting at most until `until` (`None`:
    /// until something happens). Returns `false`, doing nothing, when a driver thread
    /// runs the loop and this is another thread.
    pub(super) fn drive(self: &Arc<Self>, until: Option<Instant>) -> bool {
        if self.mux.is_driven() && !self.on_driver() {
            return false;
        }
        let mut st = self.mux.state_for_turn();
        if !self.mux.shut.load(Ordering::SeqCst) {
            turn::turn(self, &mut st, until);
        }
        drop(st);
        self.mux.turns.ended();
        true
    }

    /// Starts the driver thread, if none runs: from now on it runs the loop. On failure
    /// (no thread could be started) the app's calls go on running it, and the next call
    /// tries again.
    pub(super) fn start_driver(self: &Arc<Self>) {
        let mux = &self.mux;
        // Called by every `recv_async` and by `try_recv` with a waker set: no lock once a
        // driver runs.
        if mux.is_driven() {
            return;
        }
        let mut slot = mux.driver.lock().unwrap_or_else(|p| p.into_inner());
        if mux.is_driven() || mux.shut.load(Ordering::SeqCst) {
            return;
        }
        // Weak: a driver must not keep the primary's state alive (the primary's drop
        // joins it).
        let weak = Arc::downgrade(self);
        mux.driven.store(true, Ordering::SeqCst);
        let thread = std::thread::Builder::new().name("solo-instance serve".into());
        let spawned = crate::sys::with_signals_blocked(|| {
            thread.spawn(move || {
                while let Some(ctx) = weak.upgrade() {
                    let _ = ctx.inbox.driver_id.set(std::thread::current().id());
                    if ctx.mux.shut.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut st = ctx.mux.state_for_turn();
                    turn::turn(&ctx, &mut st, None);
                    drop(st);
                    ctx.mux.turns.ended();
                    // The waker runs outside the turn: it may take the requests, or drop
                    // the primary (whose shutdown locks the loop's state). It may run turns
                    // itself (a wait for a request, a read of stdin): what they delivered
                    // is announced before the next wait.
                    'announce: loop {
                        let owed = ctx.inbox.unannounced.swap(0, Ordering::SeqCst);
                        if owed == 0 {
                            break;
                        }
                        for _ in 0..owed {
                            if ctx.mux.shut.load(Ordering::SeqCst) {
                                break 'announce;
                            }
                            ctx.inbox.call_waker();
                        }
                    }
                }
            })
        });
        match spawned {
            Ok(t) => *slot = Some(t),
            Err(_) => mux.driven.store(false, Ordering::SeqCst),
        }
    }
}
