//! One turn of the primary's loop: a readiness wait, then accepting, reading, answering
//! the deadlines passed and shedding past the bounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::request::{busy, respond};
use super::super::Reply;
use super::context::FAST_PATH_BYTES;
use super::Context;
use super::{watch, Conn, State, MAX_HELD, READ_BUDGET};
use crate::sys::{Acceptor, Interest, Token};

/// The listening end's token, the rebound socket's (Unix, see `watch`) and the removal
/// watch's; connections count up from [`FIRST_CONN`].
pub(super) const LISTEN: Token = 0;
const REBOUND: Token = 1;
const WATCH: Token = 2;
pub(super) const FIRST_CONN: Token = 16;

/// Bytes read from one connection per turn: the rest waits for the next turn, so every
/// connection is read in turn.
const CHUNK: usize = 64 << 10;

/// Most connections accepted per turn: then the held ones are read, and the next turn
/// accepts more.
const ACCEPT_BATCH: usize = 64;

/// How long accepting pauses after an accept failed for want of resources (out of
/// descriptors or handles, memory): the listening end stays ready meanwhile, so waiting
/// for it would spin. A held connection let go ends the pause early.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

enum Outcome {
    Pending,
    Line(Vec<u8>),
    TooLarge,
    Closed,
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
    // Unix: the socket bound again after its file was removed (see `watch`).
    let mut rebound = st.replacement.as_ref().and_then(|s| s.sys_listener()).and_then(Acceptor::of_listener);
    if st.accept_after.is_some_and(|t| Instant::now() >= t) {
        st.accept_after = None;
    }
    // Accepting paused (see `ACCEPT_BACKOFF`): the listening ends are not waited for.
    let accepting = st.accept_after.is_none();
    // Over the budget, wait only for deadlines and hang-ups.
    let full = st.buffered > budget;
    // A connection reported readable and not read empty yet is read without a wait; so is
    // a client reported at the listening end and not accepted yet.
    let pending = !full && st.conns.iter().any(|c| c.ready) || accepting && st.listen_ready;
    {
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
            .map(|d| if pending { Duration::ZERO } else { d.saturating_duration_since(Instant::now()) })
            .or(pending.then_some(Duration::ZERO));
        let State { poller, acceptor, conns, watch, .. } = &mut *st;
        let mut interest = Interest::new();
        if accepting {
            if let Some(a) = acceptor.as_ref() {
                interest.listener(LISTEN, a);
            }
            if let Some(a) = rebound.as_ref() {
                interest.listener(REBOUND, a);
            }
        }
        if let Some(w) = watch.as_ref() {
            interest.watch(WATCH, w.source());
        }
        for c in conns.iter() {
            interest.connection(c.token, &c.conn, !full);
        }
        #[cfg(test)]
        if timeout.is_none() {
            if let Some(tx) = mux.endless_wait.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                let _ = tx.send(());
            }
        }
        match poller.wait(interest, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(_) => {
                // Out of memory, or more descriptors than the limit allows: shed
                // everything held (each launch is told to retry), pause, and go on.
                for c in st.conns.drain(..) {
                    busy(&c.conn);
                }
                st.buffered = 0;
                std::thread::sleep(Duration::from_millis(10));
                return;
            }
        }
    }
    // The watch, before new connections join the list.
    if let Some(w) = st.watch.as_ref() {
        let r = st.poller.readiness(WATCH);
        if r.closed {
            // A watch the wait cannot wait on would wake every turn: looked at
            // periodically instead.
            watch::unusable(ctx, st);
        } else if r.readable
            && watch::concerns_us(w, &mux.socket, mux.lock_path.as_deref().unwrap_or(&mux.socket))
        {
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
        return;
    }
    let held = st.conns.len();
    read_conns(ctx, st, budget);
    if st.conns.len() < held {
        // Descriptors were freed: accept again at once.
        st.accept_after = None;
    }
    // Readiness may be edge-triggered: a client reported while accepting pauses is
    // remembered until an accept finds none.
    st.listen_ready |= st.poller.readiness(LISTEN).readable;
    if st.accept_after.is_none() && st.listen_ready {
        if let Some(mut a) = st.acceptor.take() {
            // Level-triggered readiness (Unix) reports a client still waiting at the next
            // wait: no accept that finds nothing is needed to know it.
            if accept(ctx, st, &mut a) || !crate::sys::EDGE_TRIGGERED {
                st.listen_ready = false;
            }
            st.acceptor = Some(a);
        }
    }
    if let Some(a) = rebound.as_mut().filter(|_| st.accept_after.is_none()) {
        // Unix only, where readiness is level-triggered.
        if st.poller.readiness(REBOUND).readable {
            accept(ctx, st, a);
        }
    }
    // Too many held: shed the oldest silent ones (else the oldest), telling them to retry.
    while st.conns.len() > MAX_HELD {
        let i = st.conns.iter().position(|c| c.buf.is_empty()).unwrap_or(0);
        if let Some(c) = st.conns.remove(i) {
            st.buffered -= c.buf.len();
            busy(&c.conn);
        }
    }
    // Over the byte budget: shed the oldest partial requests (one request may always grow
    // to the limit).
    while st.buffered > budget {
        let Some(i) = st.conns.iter().position(|c| !c.buf.is_empty()) else { break };
        if let Some(c) = st.conns.remove(i) {
            st.buffered -= c.buf.len();
            busy(&c.conn);
        }
    }
}

/// Accepts what waits (at most [`ACCEPT_BATCH`], and up to the first request delivered):
/// checks each peer, then delivers a request that is there whole already, and holds the
/// others. Returns whether it found no more clients waiting.
fn accept(ctx: &Arc<Context>, st: &mut State, acceptor: &mut Acceptor) -> bool {
    // A launch writes its request right after connecting, so it is usually here already:
    // then it is delivered at once. At most `limit + 1` bytes are looked at, so a line over
    // the limit is never taken here: it is held, and refused when read.
    let fast_max = FAST_PATH_BYTES.min(ctx.limit.saturating_add(1));
    for _ in 0..ACCEPT_BATCH {
        let token = st.next_token;
        let conn = match acceptor.accept(&st.poller, token) {
            Ok(Some(conn)) => conn,
            // Nothing more: the next turn accepts what comes.
            Ok(None) => return true,
            // Out of descriptors and the like (what waits stays in the backlog): the
            // listening end is still ready, so pause rather than spin.
            Err(_) => {
                st.accept_after = Some(Instant::now() + ACCEPT_BACKOFF);
                return false;
            }
        };
        st.next_token += 1;
        let peer = conn.peer();
        if !ctx.admits(&conn, peer.as_ref()) {
            // A stranger: dropped before a byte is read.
            continue;
        }
        // One read of what is there already; what it took of an incomplete line is held
        // for the rest.
        let n = match conn.read(&mut st.chunk[..fast_max]) {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => continue,
        };
        if st.chunk[..n].contains(&b'\n') {
            // A request for the app: it gets it now, and the next turn accepts the rest
            // instead of an accept that finds nothing. A line refused (malformed, the app
            // busy) does not end the batch. What followed the line goes with it: a
            // version-2 launch's stdin (`deliver` splits them).
            if ctx.deliver(conn, peer, st.chunk[..n].to_vec()) {
                return false;
            }
            continue;
        }
        let buf = st.chunk[..n].to_vec();
        st.buffered += buf.len();
        let deadline = Instant::now() + ctx.timeout;
        // Read again at once when the read filled what it was given.
        let ready = n == fast_max;
        st.conns.push_back(Conn { conn, token, ready, peer, buf, deadline, held_off: false });
    }
    false
}

/// Reads the held connections that are ready, answers those done or out of time, oldest
/// first.
fn read_conns(ctx: &Arc<Context>, st: &mut State, budget: usize) {
    let limit = ctx.limit;
    let now = Instant::now();
    let mut finished: Vec<(usize, Outcome)> = Vec::new();
    // Bytes of complete lines found this turn, not yet delivered.
    let mut fresh = 0usize;
    let State { conns, buffered, chunk, poller, .. } = st;
    for (i, c) in conns.iter_mut().enumerate() {
        // Over the budget, nothing more is read this turn (partial requests are shed
        // after).
        let full = *buffered + fresh > budget;
        let r = poller.readiness(c.token);
        c.ready |= r.readable;
        c.held_off |= full;
        let outcome = if c.ready && !full {
            read_some(c, chunk, limit, buffered)
        } else if r.closed {
            // Gone while reading is paused: nobody waits for it (and the wait would
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
            *buffered -= c.buf.len();
            done.push((c, outcome));
        }
    }
    // Decoding runs on the loop's thread: the time it takes is not the held clients', so
    // it moves their deadlines on (as the time the app is away from its loop does).
    let decode_start = Instant::now();
    let mut decoded = false;
    for (c, outcome) in done.into_iter().rev() {
        match outcome {
            Outcome::Line(line) => {
                decoded |= line.len() > FAST_PATH_BYTES;
                ctx.deliver(c.conn, c.peer, line);
            }
            Outcome::TooLarge => {
                respond(&c.conn, &Reply::error(format!("message too large (limit {limit} bytes)")));
            }
            Outcome::Pending if c.held_off => busy(&c.conn),
            Outcome::Pending => {
                let msg = format!("no request within {:.1}s", ctx.timeout.as_secs_f64());
                respond(&c.conn, &Reply::error(msg));
            }
            Outcome::Closed => {}
        }
    }
    if decoded {
        let took = decode_start.elapsed();
        for c in conns.iter_mut() {
            c.deadline += took;
        }
    }
}

/// One non-blocking read of what fits within the limit.
fn read_some(c: &mut Conn, chunk: &mut [u8], limit: usize, buffered: &mut usize) -> Outcome {
    // `limit` may be `usize::MAX` (no limit).
    let room = limit.saturating_add(1).saturating_sub(c.buf.len()).clamp(1, chunk.len());
    let n = match c.conn.read(&mut chunk[..room]) {
        Ok(0) => return Outcome::Closed,
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            c.ready = false;
            return Outcome::Pending;
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Outcome::Pending,
        Err(_) => return Outcome::Closed,
    };
    // Less than asked: what had arrived is taken (a new arrival is reported again).
    c.ready = n == room;
    if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
        if c.buf.len() + i > limit {
            return Outcome::TooLarge;
        }
        let mut line = std::mem::take(&mut c.buf);
        *buffered -= line.len();
        // With what followed the line: a version-2 launch's stdin (`deliver` splits them).
        line.extend_from_slice(&chunk[..n]);
        return Outcome::Line(line);
    }
    if c.buf.len() + n > limit {
        return Outcome::TooLarge;
    }
    c.buf.extend_from_slice(&chunk[..n]);
    *buffered += n;
    Outcome::Pending
}
