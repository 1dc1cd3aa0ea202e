//! The primary's reader on Unix: one thread multiplexes every connection whose request
//! has not arrived whole, with poll(2), a deadline per connection and one byte budget.
//!
//! The accept thread never waits for it (it hands a connection over and goes back to
//! accepting), so silent or trickling clients cannot keep a launch in the OS backlog:
//! past [`MAX_HELD`] connections the oldest silent one is shed, and past
//! [`READ_BUDGET`] buffered bytes the oldest partial request is. Each is told to retry.
//! Windows keeps a reader thread per connection (`Pool` in `mod.rs`): named pipes have
//! no poll(2).
//!
//! On Linux the same thread watches the socket's directory (inotify): when the socket
//! file is removed under the running primary (a cleaner of `$XDG_RUNTIME_DIR` or `/tmp`),
//! it binds a new one at the same path at once, so launches keep reaching the primary.
//! The watch is set [`WATCH_DELAY`] after the start (the socket is checked then too):
//! closing an inotify descriptor that has a watch waits for an RCU grace period, 1.5 to
//! 14 ms on a busy machine, and a process pays it at exit; a primary that lives less than
//! that delay (`solo run APP --count 0`, an app that forwards and quits) never pays it.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::RecvFlags;

use super::primary::Context;
use super::transport::send_reply;
use super::Reply;
use crate::{LocalServer, LocalSocket, PeerCredentials, PendingConnections, SocketOptions};

/// Most connections held unread at once; the oldest silent one is shed for a new one.
/// (Below the usual soft limit of 1024 open files, leaving the app its share.)
pub(super) const MAX_HELD: usize = 512;

/// Most bytes of partial requests held at once (one request may always grow to the
/// message limit, shedding the oldest others).
pub(super) const READ_BUDGET: usize = 8 << 20;

/// How long after the start the removal watch is set (see the module docs): one wake-up,
/// then none while idle.
const WATCH_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// Bytes read from one connection per turn: the rest waits for the next turn, so every
/// connection is read in turn.
const CHUNK: usize = 64 << 10;

pub(super) struct Mux {
    inbox: Mutex<Inbox>,
    wake_rx: OwnedFd,
    wake_tx: OwnedFd,
    /// The socket to keep in place, and how to bind it again.
    socket: PathBuf,
    options: SocketOptions,
    /// Whether to watch the socket's directory (Linux, a socket file).
    watch: bool,
    /// The socket bound again after its file was removed, if it was.
    replacement: Mutex<Option<LocalServer>>,
    /// Complete request lines for the decoder thread, so that decoding a large request
    /// never holds up reading the others (their deadlines run meanwhile).
    lines: Mutex<Lines>,
    lines_ready: Condvar,
    /// Bytes in `lines` and in the line being decoded: part of the read budget.
    decoding: AtomicUsize,
}

#[derive(Default)]
struct Lines {
    queue: VecDeque<(LocalSocket, Option<PeerCredentials>, Vec<u8>)>,
    shutdown: bool,
    /// The decoder thread runs: it starts with the first line the reader queues, so a
    /// primary whose launches all arrive whole (the accept thread delivers those) never
    /// starts it.
    decoder: bool,
}

#[derive(Default)]
struct Inbox {
    /// New connections, with what the accept thread read of their request already.
    new: Vec<(LocalSocket, Option<PeerCredentials>, Vec<u8>)>,
    running: bool,
    shutdown: bool,
}

struct Conn {
    socket: LocalSocket,
    peer: Option<PeerCredentials>,
    buf: Vec<u8>,
    deadline: Instant,
    /// The primary stopped reading (over its byte budget) while this connection waited: a
    /// deadline that passes then is the primary's lateness, answered with "busy" (retry),
    /// not the client's.
    held_off: bool,
}

enum Outcome {
    Pending,
    Line(Vec<u8>),
    TooLarge,
    Closed,
}

impl Mux {
    pub(super) fn new(socket: &Path, options: SocketOptions) -> std::io::Result<Mux> {
        let (wake_rx, wake_tx) = crate::sys::pipe()?;
        Ok(Mux {
            inbox: Mutex::new(Inbox::default()),
            wake_rx,
            wake_tx,
            socket: socket.to_path_buf(),
            options,
            // An abstract name has no file to lose.
            watch: cfg!(any(target_os = "linux", target_os = "android"))
                && !options.contains(SocketOptions::ABSTRACT_NAMESPACE)
                && socket.parent().is_some_and(|d| !d.as_os_str().is_empty()),
            replacement: Mutex::new(None),
            lines: Mutex::new(Lines::default()),
            lines_ready: Condvar::new(),
            decoding: AtomicUsize::new(0),
        })
    }

    /// Starts the reader thread now when it has a directory to watch (it sets the watch
    /// [`WATCH_DELAY`] later, then sleeps in poll(2) until something happens); otherwise
    /// it starts with the first connection.
    pub(super) fn start(ctx: &Arc<Context>) {
        if ctx.mux.watch {
            let mut inbox = ctx.mux.inbox.lock().unwrap_or_else(|p| p.into_inner());
            if !inbox.running {
                inbox.running = true;
                drop(inbox);
                spawn(ctx);
            }
        }
    }

    fn wake(&self) {
        let _ = rustix::io::write(&self.wake_tx, &[1u8]);
    }

    /// Hands a connection to the reader thread, starting it on first use. Never blocks
    /// for long: the accept thread goes straight back to accepting.
    pub(super) fn add(ctx: &Arc<Context>, socket: LocalSocket, peer: Option<PeerCredentials>, part: Vec<u8>) {
        let mux = &ctx.mux;
        let mut inbox = mux.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if inbox.shutdown {
            return;
        }
        inbox.new.push((socket, peer, part));
        let start = !inbox.running;
        inbox.running = true;
        drop(inbox);
        if !start {
            mux.wake();
            return;
        }
        spawn(ctx);
    }

    pub(super) fn shutdown(&self) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.shutdown = true;
        inbox.new.clear();
        drop(inbox);
        self.wake();
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.shutdown = true;
        lines.queue.clear();
        drop(lines);
        self.lines_ready.notify_all();
        // A replacement socket goes now, before the caller frees the lock.
        let replacement = self.replacement.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(replacement);
    }

    fn is_shut_down(&self) -> bool {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner()).shutdown
    }
}

fn spawn(ctx: &Arc<Context>) {
    let worker = Arc::clone(ctx);
    let spawned = std::thread::Builder::new().name("solo-instance reader".into()).spawn(move || run(&worker));
    if spawned.is_err() {
        // No thread: drop what waits (each launch sees a close and starts over) and
        // try again with the next connection.
        let mut inbox = ctx.mux.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.new.clear();
        inbox.running = false;
    }
}

/// Queues a complete line for the decoder thread, starting it on first use.
fn queue_line(ctx: &Arc<Context>, socket: LocalSocket, peer: Option<PeerCredentials>, line: Vec<u8>) {
    let mux = &ctx.mux;
    let n = line.len();
    mux.decoding.fetch_add(n, Ordering::SeqCst);
    let mut lines = mux.lines.lock().unwrap_or_else(|p| p.into_inner());
    lines.queue.push_back((socket, peer, line));
    let start = !lines.decoder;
    lines.decoder = true;
    drop(lines);
    if !start {
        mux.lines_ready.notify_one();
        return;
    }
    let decoder = Arc::clone(ctx);
    let spawned = std::thread::Builder::new()
        .name("solo-instance decoder".into())
        // serde_json recurses up to 128 levels on nested input: a debug build needs about
        // 224 KiB for that (ASan 256 KiB), and 128 KiB let one request abort the primary
        // (found by fuzz/). Untouched stack pages cost no memory.
        .stack_size(512 * 1024)
        .spawn(move || decode_loop(&decoder));
    if spawned.is_err() {
        // No thread: tell what waits to retry, and try again with the next line.
        let mut lines = mux.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.decoder = false;
        let waiting: Vec<_> = lines.queue.drain(..).collect();
        drop(lines);
        for (socket, _, line) in waiting {
            mux.decoding.fetch_sub(line.len(), Ordering::SeqCst);
            let _ = send_reply(&socket, &Reply::retry("the primary instance is busy"));
        }
    }
}

/// Decodes complete request lines one at a time and hands them to the app.
fn decode_loop(ctx: &Arc<Context>) {
    let mux = &ctx.mux;
    let mut lines = mux.lines.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if lines.shutdown {
            return;
        }
        let Some((socket, peer, line)) = lines.queue.pop_front() else {
            lines = mux.lines_ready.wait(lines).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        drop(lines);
        let n = line.len();
        ctx.deliver(socket, peer, line);
        mux.decoding.fetch_sub(n, Ordering::SeqCst);
        // The reader may be waiting for these bytes of budget.
        mux.wake();
        lines = mux.lines.lock().unwrap_or_else(|p| p.into_inner());
    }
}

/// An inotify watch for files removed from (or moved out of) `socket`'s directory.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn watch_removal(socket: &Path) -> Option<OwnedFd> {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let dir = socket.parent().filter(|d| !d.as_os_str().is_empty())?;
    let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok()?;
    inotify::add_watch(&fd, dir, WatchFlags::DELETE | WatchFlags::MOVED_FROM | WatchFlags::ONLYDIR).ok()?;
    Some(fd)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn watch_removal(_socket: &Path) -> Option<OwnedFd> {
    None
}

/// Reads the pending inotify events: whether one names the socket file.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn socket_removed(fd: &OwnedFd, socket: &Path) -> bool {
    use rustix::fs::inotify::{ReadFlags, Reader};
    use std::os::unix::ffi::OsStrExt;
    let name = socket.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    let mut removed = false;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut events = Reader::new(fd, &mut buf);
    // Until the queue is empty (EAGAIN) or fails.
    while let Ok(event) = events.next() {
        // An overflowed queue lost events: the caller looks at the file itself.
        removed |= event.file_name().is_some_and(|n| n.to_bytes() == name)
            || event.events().contains(ReadFlags::QUEUE_OVERFLOW);
    }
    removed
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn socket_removed(_fd: &OwnedFd, _socket: &Path) -> bool {
    false
}

/// Binds the socket again after its file was removed under the running primary.
fn bind_again(ctx: &Arc<Context>) {
    let mux = &ctx.mux;
    let mut server = LocalServer::new();
    server.set_socket_options(mux.options);
    let weak = Arc::downgrade(ctx);
    server.set_incoming_connection_hook(move |socket, _: &PendingConnections| {
        if let Some(ctx) = weak.upgrade() {
            Context::incoming(&ctx, socket);
        }
    });
    server.on_new_connection(|_| {});
    // AddressInUse: something is there again already; leave it.
    if server.listen(&mux.socket.to_string_lossy()).is_err() {
        return;
    }
    let mut slot = mux.replacement.lock().unwrap_or_else(|p| p.into_inner());
    if !mux.is_shut_down() {
        // The one it replaces (removed as well) goes.
        let old = slot.replace(server);
        drop(slot);
        drop(old);
    }
}

fn busy(conn: Conn) {
    let _ = send_reply(&conn.socket, &Reply::retry("the primary instance is busy"));
}

fn run(ctx: &Arc<Context>) {
    let mux = &ctx.mux;
    let limit = ctx.limit;
    // Oldest first.
    let mut conns: VecDeque<Conn> = VecDeque::new();
    let mut buffered = 0usize;
    let mut chunk = vec![0u8; CHUNK.min(limit.saturating_add(1))];
    // What poll(2) reported for each descriptor of the last turn.
    let mut revents: Vec<PollFlags> = Vec::new();
    let budget = READ_BUDGET.max(limit);
    // The removal watch, set once `watch_at` has passed.
    let mut notify: Option<OwnedFd> = None;
    let mut watch_at = mux.watch.then(|| Instant::now() + WATCH_DELAY);
    loop {
        {
            let mut inbox = mux.inbox.lock().unwrap_or_else(|p| p.into_inner());
            if inbox.shutdown {
                return;
            }
            let deadline = Instant::now() + ctx.timeout;
            for (socket, peer, buf) in inbox.new.drain(..) {
                buffered += buf.len();
                conns.push_back(Conn { socket, peer, buf, deadline, held_off: false });
            }
        }
        // Too many held: shed the oldest silent ones (else the oldest), telling them to retry.
        while conns.len() > MAX_HELD {
            let i = conns.iter().position(|c| c.buf.is_empty()).unwrap_or(0);
            if let Some(c) = conns.remove(i) {
                buffered -= c.buf.len();
                busy(c);
            }
        }
        {
            // The wake-up pipe, the removal watch (if any), then each connection.
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(conns.len() + 2);
            fds.push(PollFd::new(&mux.wake_rx, PollFlags::IN));
            if let Some(notify) = &notify {
                fds.push(PollFd::new(notify, PollFlags::IN));
            }
            // Over the budget, wait only for deadlines, hang-ups and the decoder's wake-up.
            let full = buffered + mux.decoding.load(Ordering::SeqCst) > budget;
            let events = if full { PollFlags::empty() } else { PollFlags::IN };
            fds.extend(conns.iter().map(|c| PollFd::new(&c.socket, events)));
            // Until the nearest deadline (never woken before it), or for ever.
            let timeout = conns.iter().map(|c| c.deadline).chain(watch_at).min().map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                Timespec { tv_sec: left.as_secs() as _, tv_nsec: left.subsec_nanos() as _ }
            });
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    // Out of memory, or more descriptors than the limit allows: shed
                    // everything held (each launch is told to retry), pause, and go on.
                    drop(fds);
                    for c in conns.drain(..) {
                        busy(c);
                    }
                    buffered = 0;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            }
            revents.clear();
            revents.extend(fds.iter().map(PollFd::revents));
        }
        let first_conn = 1 + usize::from(notify.is_some());
        if !revents[0].is_empty() {
            let mut buf = [0u8; 64];
            while matches!(rustix::io::read(&mux.wake_rx, &mut buf), Ok(n) if n > 0) {}
        }
        if watch_at.is_some_and(|at| Instant::now() >= at) {
            watch_at = None;
            notify = watch_removal(&mux.socket);
            // Removed before the watch was set: bound again now.
            if std::fs::symlink_metadata(&mux.socket).is_err() && !ctx.closing.load(Ordering::SeqCst) {
                bind_again(ctx);
            }
        }
        if first_conn == 2 && !revents[1].is_empty() {
            if let Some(fd) = &notify {
                if socket_removed(fd, &mux.socket)
                    && std::fs::symlink_metadata(&mux.socket).is_err()
                    && !ctx.closing.load(Ordering::SeqCst)
                {
                    bind_again(ctx);
                }
            }
        }
        let now = Instant::now();
        let mut finished: Vec<(usize, Outcome)> = Vec::new();
        // Bytes of complete lines found this turn, not yet in `decoding`.
        let mut fresh = 0usize;
        for (i, c) in conns.iter_mut().enumerate() {
            // Over the budget, nothing more is read this turn (the decoder frees bytes
            // and wakes this thread; partial requests are shed below).
            let full = buffered + fresh + mux.decoding.load(Ordering::SeqCst) > budget;
            let ready = revents[i + first_conn];
            c.held_off |= full;
            let outcome = if !ready.is_empty() && !full {
                read_some(c, &mut chunk, limit, &mut buffered)
            } else if ready.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) {
                // Gone while reading is paused: nobody waits for it (and poll would
                // report it again at once).
                Outcome::Closed
            } else {
                Outcome::Pending
            };
            if let Outcome::Line(line) = &outcome {
                fresh += line.len();
            }
            match outcome {
                Outcome::Pending if now >= c.deadline => finished.push((i, Outcome::Pending)),
                Outcome::Pending => {}
                other => finished.push((i, other)),
            }
        }
        // Remove from the back so the indices stay right; then act, oldest first.
        let mut done: Vec<(Conn, Outcome)> = Vec::with_capacity(finished.len());
        for (i, outcome) in finished.into_iter().rev() {
            if let Some(c) = conns.remove(i) {
                buffered -= c.buf.len();
                done.push((c, outcome));
            }
        }
        for (c, outcome) in done.into_iter().rev() {
            match outcome {
                Outcome::Line(line) => queue_line(ctx, c.socket, c.peer, line),
                Outcome::TooLarge => {
                    let _ = send_reply(
                        &c.socket,
                        &Reply::error(format!("message too large (limit {limit} bytes)")),
                    );
                }
                Outcome::Pending if c.held_off => busy(c),
                Outcome::Pending => {
                    let msg = format!("no request within {:.1}s", ctx.timeout.as_secs_f64());
                    let _ = send_reply(&c.socket, &Reply::error(msg));
                }
                Outcome::Closed => {}
            }
        }
        // Over the byte budget (partial requests, and complete ones waiting to be decoded):
        // shed the oldest partial requests (one request may always grow to the limit).
        while buffered + mux.decoding.load(Ordering::SeqCst) > budget {
            let Some(i) = conns.iter().position(|c| !c.buf.is_empty()) else { break };
            if let Some(c) = conns.remove(i) {
                buffered -= c.buf.len();
                busy(c);
            }
        }
    }
}

/// One non-blocking read of what fits within the limit.
fn read_some(c: &mut Conn, chunk: &mut [u8], limit: usize, buffered: &mut usize) -> Outcome {
    let room = (limit + 1).saturating_sub(c.buf.len()).clamp(1, chunk.len());
    let n = match rustix::net::recv(&c.socket, &mut chunk[..room], RecvFlags::DONTWAIT) {
        Ok((0, _)) => return Outcome::Closed,
        Ok((n, _)) => n,
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return Outcome::Pending,
        Err(_) => return Outcome::Closed,
    };
    if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
        if c.buf.len() + i > limit {
            return Outcome::TooLarge;
        }
        let mut line = std::mem::take(&mut c.buf);
        *buffered -= line.len();
        line.extend_from_slice(&chunk[..i]);
        return Outcome::Line(line);
    }
    if c.buf.len() + n > limit {
        return Outcome::TooLarge;
    }
    c.buf.extend_from_slice(&chunk[..n]);
    *buffered += n;
    Outcome::Pending
}
