//! One turn of the primary's loop: a poll(2), then accepting, reading, answering the
//! deadlines passed and shedding past the bounds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::RecvFlags;

use super::super::context::{Context, FAST_PATH_BYTES};
use super::super::transport::send_reply;
use super::super::Reply;
use super::{decode, watch, Conn, State, MAX_HELD, READ_BUDGET};
use crate::LocalSocket;

/// Bytes read from one connection per turn: the rest waits for the next turn, so every
/// connection is read in turn.
const CHUNK: usize = 64 << 10;

/// Most connections accepted per turn: then the held ones are read, and the next turn
/// accepts more.
const ACCEPT_BATCH: usize = 64;

/// How long accepting pauses after accept(2) failed for want of resources (out of
/// descriptors, memory): the listening socket stays readable meanwhile, so polling it
/// would spin. A held connection let go ends the pause early.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

enum Outcome {
    Pending,
    Line(Vec<u8>),
    TooLarge,
    Closed,
}

fn busy(conn: Conn) {
    let _ = send_reply(&conn.socket, &Reply::busy());
}

/// Runs one turn: waits (at most until `until`, the nearest connection deadline and the
/// watch's time) for something to happen, then handles it.
pub(super) fn turn(ctx: &Arc<Context>, st: &mut State, until: Option<Instant>) {
    // A connection's deadline bounds the client, so it runs only while the loop serves:
    // the time since the last turn (the app away from its loop, handling a request between
    // two receive calls) is added to it. What the client sent meanwhile waited unread;
    // "no request within" for it would fail a launch that was on time.
    let start = Instant::now();
    if let Some(end) = st.turn_end.take() {
        let away = start.saturating_duration_since(end);
        for c in &mut st.conns {
            c.deadline += away;
        }
    }
    serve_once(ctx, st, until);
    st.turn_end = Some(Instant::now());
}

fn serve_once(ctx: &Arc<Context>, st: &mut State, until: Option<Instant>) {
    let mux = &ctx.mux;
    let limit = ctx.limit;
    if st.chunk.is_empty() {
        st.chunk = vec![0u8; CHUNK.min(limit.saturating_add(1))];
    }
    let budget = READ_BUDGET.max(limit);
    let listener = st.listener.clone();
    let replacement = st.replacement.as_ref().and_then(|s| s.sys_listener()).cloned();
    let listeners: Vec<_> = listener.iter().chain(replacement.iter()).collect();
    if st.accept_after.is_some_and(|t| Instant::now() >= t) {
        st.accept_after = None;
    }
    // Accepting paused (see `ACCEPT_BACKOFF`): the listening sockets are not waited for.
    let accepting = st.accept_after.is_none();
    {
        // The wake-up pipe, the listening sockets, the removal watch (if any), then each
        // connection.
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(st.conns.len() + 4);
        fds.push(PollFd::new(&mux.wake_rx, PollFlags::IN));
        let listen_for = if accepting { PollFlags::IN } else { PollFlags::empty() };
        fds.extend(listeners.iter().map(|l| PollFd::from_borrowed_fd(l.fd(), listen_for)));
        if let Some(w) = &st.watch {
            fds.push(PollFd::new(&w.fd, PollFlags::IN));
        }
        // Over the budget, wait only for deadlines, hang-ups and the decoder's wake-up.
        let full = st.buffered + mux.decoding.load(Ordering::SeqCst) > budget;
        let events = if full { PollFlags::empty() } else { PollFlags::IN };
        fds.extend(st.conns.iter().map(|c| PollFd::new(&c.socket, events)));
        // Until the nearest deadline (never woken before it), or for ever.
        let timeout = st
            .conns
            .iter()
            .map(|c| c.deadline)
            .chain(st.watch_at)
            .chain(st.check_at)
            .chain(st.accept_after)
            .chain(until)
            .min()
            .map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                Timespec { tv_sec: left.as_secs() as _, tv_nsec: left.subsec_nanos() as _ }
            });
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return,
            Err(_) => {
                // Out of memory, or more descriptors than the limit allows: shed
                // everything held (each launch is told to retry), pause, and go on.
                drop(fds);
                for c in st.conns.drain(..) {
                    busy(c);
                }
                st.buffered = 0;
                std::thread::sleep(std::time::Duration::from_millis(10));
                return;
            }
        }
        st.revents.clear();
        st.revents.extend(fds.iter().map(PollFd::revents));
    }
    let revents = std::mem::take(&mut st.revents);
    if !revents[0].is_empty() {
        let mut buf = [0u8; 64];
        while matches!(rustix::io::read(&mux.wake_rx, &mut buf), Ok(n) if n > 0) {}
    }
    let first_watch = 1 + listeners.len();
    let first_conn = first_watch + usize::from(st.watch.is_some());
    // The watch, before new connections join the list (the indices of `revents` are
    // those of this turn's descriptors).
    if let Some(w) = st.watch.as_ref().filter(|_| !revents[first_watch].is_empty()) {
        if revents[first_watch].intersects(PollFlags::ERR | PollFlags::NVAL) {
            // A watch poll(2) cannot wait on would wake every turn: looked at periodically
            // instead.
            watch::unusable(ctx, st);
        } else if watch::concerns_us(w, &mux.socket, mux.lock_path.as_deref().unwrap_or(&mux.socket)) {
            watch::check_soon(st);
        }
    }
    let now = Instant::now();
    if st.watch_at.is_some_and(|at| now >= at) {
        watch::start(ctx, st);
    } else if st.check_at.is_some_and(|at| now >= at) {
        watch::upkeep(ctx, st);
    }
    if mux.stepped_down() {
        // Nothing left to serve: the connections were hung up, the listeners shut down.
        st.revents = revents;
        return;
    }
    let held = st.conns.len();
    read_conns(ctx, st, &revents[first_conn..], budget);
    if st.conns.len() < held {
        // Descriptors were freed: accept again at once.
        st.accept_after = None;
    }
    for (i, l) in listeners.iter().enumerate() {
        if st.accept_after.is_none() && !revents[1 + i].is_empty() {
            accept(ctx, st, l);
        }
    }
    st.revents = revents;
    // Too many held: shed the oldest silent ones (else the oldest), telling them to retry.
    while st.conns.len() > MAX_HELD {
        let i = st.conns.iter().position(|c| c.buf.is_empty()).unwrap_or(0);
        if let Some(c) = st.conns.remove(i) {
            st.buffered -= c.buf.len();
            busy(c);
        }
    }
    // Over the byte budget (partial requests, and complete ones waiting to be decoded):
    // shed the oldest partial requests (one request may always grow to the limit).
    while st.buffered + mux.decoding.load(Ordering::SeqCst) > budget {
        let Some(i) = st.conns.iter().position(|c| !c.buf.is_empty()) else { break };
        if let Some(c) = st.conns.remove(i) {
            st.buffered -= c.buf.len();
            busy(c);
        }
    }
}

/// Accepts what waits (at most [`ACCEPT_BATCH`], and up to the first request delivered):
/// checks each peer, then delivers a request that is there whole already, and holds the
/// others.
fn accept(ctx: &Arc<Context>, st: &mut State, listener: &crate::sys::Listener) {
    // A launch writes its request right after connecting, so it is usually here already:
    // then it is delivered at once. At most `limit + 1` bytes are looked at, so a line over
    // the limit is never taken here: it is held, and refused when read.
    let fast_max = FAST_PATH_BYTES.min(ctx.limit.saturating_add(1));
    for _ in 0..ACCEPT_BATCH {
        let stream = match listener.try_accept() {
            Ok(Some(stream)) => stream,
            // Nothing more: the next turn accepts what comes.
            Ok(None) => return,
            // Out of descriptors and the like (what waits stays in the backlog): the
            // listening socket is still readable, so pause rather than spin.
            Err(_) => {
                st.accept_after = Some(Instant::now() + ACCEPT_BACKOFF);
                return;
            }
        };
        let socket = LocalSocket::from_stream(stream);
        let peer = socket.peer_credentials().ok();
        if ctx.check_uid && peer.and_then(|p| p.uid) != Some(ctx.euid) {
            // A stranger: dropped before a byte is read.
            continue;
        }
        // Unix: one recv; what it took of an incomplete line is held for the rest.
        match crate::sys::recv_ready(&socket, &mut st.chunk[..fast_max]) {
            crate::sys::Arrived::Line(line) => {
                // A request for the app: it gets it now, and the next turn accepts the
                // rest (poll(2) reports them at once) instead of an accept(2) that finds
                // nothing. A line refused (malformed, the app busy) does not end the batch.
                if ctx.deliver(socket, peer, line) {
                    return;
                }
            }
            crate::sys::Arrived::Part(buf) => {
                st.buffered += buf.len();
                let deadline = Instant::now() + ctx.timeout;
                st.conns.push_back(Conn { socket, peer, buf, deadline, held_off: false });
            }
            crate::sys::Arrived::Gone => {}
        }
    }
}

/// Reads the held connections that poll(2) reported (`revents`, in order), answers those
/// done or out of time, oldest first.
fn read_conns(ctx: &Arc<Context>, st: &mut State, revents: &[PollFlags], budget: usize) {
    let mux = &ctx.mux;
    let limit = ctx.limit;
    let now = Instant::now();
    let mut finished: Vec<(usize, Outcome)> = Vec::new();
    // Bytes of complete lines found this turn, not yet in `decoding`.
    let mut fresh = 0usize;
    let State { conns, buffered, chunk, .. } = st;
    for (i, c) in conns.iter_mut().enumerate() {
        // Over the budget, nothing more is read this turn (the decoder frees bytes and
        // wakes the loop; partial requests are shed after).
        let full = *buffered + fresh + mux.decoding.load(Ordering::SeqCst) > budget;
        let ready = revents.get(i).copied().unwrap_or(PollFlags::empty());
        c.held_off |= full;
        let outcome = if !ready.is_empty() && !full {
            read_some(c, chunk, limit, buffered)
        } else if ready.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) {
            // Gone while reading is paused: nobody waits for it (and poll would report it
            // again at once).
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
            *buffered -= c.buf.len();
            done.push((c, outcome));
        }
    }
    for (c, outcome) in done.into_iter().rev() {
        match outcome {
            // A small line is decoded here; a large one on the decoder thread, so that it
            // does not hold up the others.
            Outcome::Line(line) if line.len() <= FAST_PATH_BYTES => {
                ctx.deliver(c.socket, c.peer, line);
            }
            Outcome::Line(line) => decode::queue_line(ctx, c.socket, c.peer, line),
            Outcome::TooLarge => {
                let _ =
                    send_reply(&c.socket, &Reply::error(format!("message too large (limit {limit} bytes)")));
            }
            Outcome::Pending if c.held_off => busy(c),
            Outcome::Pending => {
                let msg = format!("no request within {:.1}s", ctx.timeout.as_secs_f64());
                let _ = send_reply(&c.socket, &Reply::error(msg));
            }
            Outcome::Closed => {}
        }
    }
}

/// One non-blocking read of what fits within the limit.
fn read_some(c: &mut Conn, chunk: &mut [u8], limit: usize, buffered: &mut usize) -> Outcome {
    // `limit` may be `usize::MAX` (no limit).
    let room = limit.saturating_add(1).saturating_sub(c.buf.len()).clamp(1, chunk.len());
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
