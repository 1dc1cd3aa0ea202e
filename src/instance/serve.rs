//! The primary's reader on Unix: one thread multiplexes every connection whose request
//! has not arrived whole, with poll(2), a deadline per connection and one byte budget.
//!
//! The accept thread never waits for it (it hands a connection over and goes back to
//! accepting), so silent or trickling clients cannot keep a launch in the OS backlog:
//! past [`MAX_HELD`] connections the oldest silent one is shed, and past
//! [`READ_BUDGET`] buffered bytes the oldest partial request is. Each is told to retry.
//! Windows keeps a reader thread per connection (`Pool` in `mod.rs`): named pipes have
//! no poll(2).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{send_reply, Context, Reply};
use crate::{LocalSocket, PeerCredentials};

/// Most connections held unread at once; the oldest silent one is shed for a new one.
/// (Below the usual soft limit of 1024 open files, leaving the app its share.)
pub(super) const MAX_HELD: usize = 512;

/// Most bytes of partial requests held at once (one request may always grow to the
/// message limit, shedding the oldest others).
pub(super) const READ_BUDGET: usize = 8 << 20;

/// Bytes read from one connection per turn: the rest waits for the next turn, so every
/// connection is read in turn.
const CHUNK: usize = 64 << 10;

pub(super) struct Mux {
    inbox: Mutex<Inbox>,
    wake_rx: OwnedFd,
    wake_tx: OwnedFd,
}

#[derive(Default)]
struct Inbox {
    new: Vec<(LocalSocket, Option<PeerCredentials>)>,
    running: bool,
    shutdown: bool,
}

struct Conn {
    socket: LocalSocket,
    peer: Option<PeerCredentials>,
    buf: Vec<u8>,
    deadline: Instant,
}

enum Outcome {
    Pending,
    Line(Vec<u8>),
    TooLarge,
    Closed,
}

impl Mux {
    pub(super) fn new() -> std::io::Result<Mux> {
        let (wake_rx, wake_tx) = crate::sys::pipe()?;
        Ok(Mux { inbox: Mutex::new(Inbox::default()), wake_rx, wake_tx })
    }

    fn wake(&self) {
        let _ = unsafe { libc::write(self.wake_tx.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }

    /// Hands a connection to the reader thread, starting it on first use. Never blocks
    /// for long: the accept thread goes straight back to accepting.
    pub(super) fn add(ctx: &Arc<Context>, socket: LocalSocket, peer: Option<PeerCredentials>) {
        let mux = &ctx.mux;
        let mut inbox = mux.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if inbox.shutdown {
            return;
        }
        inbox.new.push((socket, peer));
        let start = !inbox.running;
        inbox.running = true;
        drop(inbox);
        if !start {
            mux.wake();
            return;
        }
        let worker = Arc::clone(ctx);
        let spawned = std::thread::Builder::new()
            .name("solo-instance reader".into())
            // serde_json recurses up to 128 levels on nested input: a debug build needs
            // about 224 KiB for that (ASan 256 KiB), and 128 KiB let one request abort the
            // primary (found by fuzz/). Untouched stack pages cost no memory.
            .stack_size(512 * 1024)
            .spawn(move || run(&worker));
        if spawned.is_err() {
            // No thread: drop what waits (each launch sees a close and starts over) and
            // try again with the next connection.
            let mut inbox = mux.inbox.lock().unwrap_or_else(|p| p.into_inner());
            inbox.new.clear();
            inbox.running = false;
        }
    }

    pub(super) fn shutdown(&self) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.shutdown = true;
        inbox.new.clear();
        drop(inbox);
        self.wake();
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
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        {
            let mut inbox = mux.inbox.lock().unwrap_or_else(|p| p.into_inner());
            if inbox.shutdown {
                return;
            }
            let deadline = Instant::now() + ctx.timeout;
            for (socket, peer) in inbox.new.drain(..) {
                conns.push_back(Conn { socket, peer, buf: Vec::new(), deadline });
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
        fds.clear();
        fds.push(libc::pollfd { fd: mux.wake_rx.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        fds.extend(conns.iter().map(|c| libc::pollfd {
            fd: c.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        let ms = match conns.iter().map(|c| c.deadline).min() {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up, so a wait never ends before its deadline.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // Nothing sensible left to wait on: give every launch a close (they start over).
            return;
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 64];
            while unsafe { libc::read(mux.wake_rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        }
        let now = Instant::now();
        let mut finished: Vec<(usize, Outcome)> = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            let outcome = if fds[i + 1].revents != 0 {
                read_some(c, &mut chunk, limit, &mut buffered)
            } else {
                Outcome::Pending
            };
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
                Outcome::Line(line) => ctx.deliver(c.socket, c.peer, line),
                Outcome::TooLarge => {
                    let _ = send_reply(
                        &c.socket,
                        &Reply::error(format!("message too large (limit {limit} bytes)")),
                    );
                }
                Outcome::Pending => {
                    let msg = format!("no request within {:.1}s", ctx.timeout.as_secs_f64());
                    let _ = send_reply(&c.socket, &Reply::error(msg));
                }
                Outcome::Closed => {}
            }
        }
        // Over the byte budget: shed the oldest partial requests (one request may always
        // grow to the limit on its own).
        let budget = READ_BUDGET.max(limit);
        while buffered > budget {
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
    let n = unsafe { libc::recv(c.socket.as_raw_fd(), chunk.as_mut_ptr().cast(), room, libc::MSG_DONTWAIT) };
    let n = match n {
        0 => return Outcome::Closed,
        n if n < 0 => {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Outcome::Pending,
                _ => Outcome::Closed,
            };
        }
        n => n as usize,
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
