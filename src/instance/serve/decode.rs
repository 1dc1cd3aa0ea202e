//! The decoder thread: complete request lines larger than the fast path's are decoded
//! there, one at a time, so that decoding a large request never holds up the loop (other
//! connections' deadlines run meanwhile). It starts with the first such line, so a
//! primary whose launches are all small never starts it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::super::request::busy;
use super::Context;
use crate::sys::Connection;
use crate::PeerCredentials;

#[derive(Default)]
pub(super) struct Lines {
    pub(super) queue: VecDeque<(Connection, Option<PeerCredentials>, Vec<u8>)>,
    pub(super) shutdown: bool,
    /// The decoder thread runs.
    pub(super) decoder: bool,
}

/// Queues a complete line for the decoder thread, starting it on first use.
pub(super) fn queue_line(
    ctx: &Arc<Context>,
    socket: Connection,
    peer: Option<PeerCredentials>,
    line: Vec<u8>,
) {
    let mux = &ctx.mux;
    let n = line.len();
    mux.decoding.fetch_add(n, Ordering::SeqCst);
    let mut lines = mux.lines.lock().unwrap_or_else(|p| p.into_inner());
    if lines.shutdown {
        drop(lines);
        mux.decoding.fetch_sub(n, Ordering::SeqCst);
        return;
    }
    lines.queue.push_back((socket, peer, line));
    let start = !lines.decoder;
    lines.decoder = true;
    drop(lines);
    if !start {
        mux.lines_ready.notify_one();
        return;
    }
    let decoder = Arc::clone(ctx);
    let thread = std::thread::Builder::new()
        .name("solo-instance decoder".into())
        // serde_json recurses up to 128 levels on nested input: a debug build needs about
        // 224 KiB for that (ASan 256 KiB), and 128 KiB let one request abort the primary
        // (found by fuzz/). Untouched stack pages cost no memory.
        .stack_size(512 * 1024);
    let spawned = crate::sys::with_signals_blocked(|| thread.spawn(move || decode_loop(&decoder)));
    if spawned.is_err() {
        // No thread: tell what waits to retry, and try again with the next line.
        let mut lines = mux.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.decoder = false;
        let waiting: Vec<_> = lines.queue.drain(..).collect();
        drop(lines);
        for (socket, _, line) in waiting {
            mux.decoding.fetch_sub(line.len(), Ordering::SeqCst);
            busy(&socket);
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
        // The loop may be waiting for the request (an app's `recv`) or for these bytes of
        // budget.
        mux.wake();
        lines = mux.lines.lock().unwrap_or_else(|p| p.into_inner());
    }
}
