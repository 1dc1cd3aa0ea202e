//! Windows: the reader threads of a primary. Named pipes have no readiness to poll, so
//! each unread connection is read by a thread of a bounded pool (on Unix one thread reads
//! them all: `serve.rs`).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::context::Context;
use super::transport::{read_line, send_reply, ReadError};
use super::{Reply, MAX_READERS};
use crate::{LocalSocket, PeerCredentials};

/// The reader threads: at most [`MAX_READERS`], kept for a while when idle so a burst of
/// launches does not pay a thread start each. When all are busy and as many connections
/// wait for one, the acceptor waits too, so a flood waits in the OS backlog.
#[derive(Default)]
pub(super) struct Pool {
    pub(super) state: Mutex<PoolState>,
    pub(super) work: Condvar,
    pub(super) freed: Condvar,
}

#[derive(Default)]
pub(super) struct PoolState {
    pub(super) jobs: std::collections::VecDeque<(LocalSocket, Option<PeerCredentials>)>,
    pub(super) threads: usize,
    pub(super) idle: usize,
    pub(super) acceptor_waiting: bool,
    pub(super) shutdown: bool,
}

/// How long an idle reader thread stays for the next launch.
pub(super) const READER_IDLE: Duration = Duration::from_secs(30);

impl Context {
    /// Queues the socket for a reader thread, starting one if none is idle.
    pub(super) fn pool_add(ctx: &Arc<Context>, socket: LocalSocket, peer: Option<PeerCredentials>) {
        let pool = &ctx.pool;
        let mut st = pool.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.jobs.len() >= MAX_READERS && !st.shutdown {
            st.acceptor_waiting = true;
            st = pool.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.acceptor_waiting = false;
        st.jobs.push_back((socket, peer));
        if st.idle > 0 {
            drop(st);
            pool.work.notify_one();
            return;
        }
        if st.threads >= MAX_READERS {
            return;
        }
        st.threads += 1;
        drop(st);
        let worker = Arc::clone(ctx);
        let spawned = std::thread::Builder::new()
            .name("solo-instance request".into())
            // serde_json recurses up to 128 levels on nested input: a debug build needs
            // about 224 KiB for that (ASan 256 KiB), and 128 KiB let one request abort the
            // primary (found by fuzz/). Untouched stack pages cost no memory.
            .stack_size(512 * 1024)
            .spawn(move || worker.reader_loop());
        if spawned.is_err() {
            // No thread: read it here rather than leave the launch waiting.
            let mut st = pool.state.lock().unwrap_or_else(|p| p.into_inner());
            st.threads -= 1;
            let job = st.jobs.pop_back();
            drop(st);
            if let Some((socket, peer)) = job {
                ctx.read_request(socket, peer);
            }
        }
    }

    pub(super) fn reader_loop(&self) {
        let pool = &self.pool;
        let mut st = pool.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some((socket, peer)) = st.jobs.pop_front() {
                let wake_acceptor = st.acceptor_waiting;
                drop(st);
                if wake_acceptor {
                    pool.freed.notify_one();
                }
                self.read_request(socket, peer);
                st = pool.state.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let (next, timeout) = pool.work.wait_timeout(st, READER_IDLE).unwrap_or_else(|p| p.into_inner());
            st = next;
            st.idle -= 1;
            if timeout.timed_out() && st.jobs.is_empty() {
                break;
            }
        }
        st.threads -= 1;
    }

    pub(super) fn shutdown(&self) {
        let mut st = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        st.shutdown = true;
        drop(st);
        self.pool.work.notify_all();
        self.pool.freed.notify_all();
    }

    pub(super) fn read_request(&self, socket: LocalSocket, peer: Option<PeerCredentials>) {
        let deadline = Instant::now() + self.timeout;
        let line = match read_line(&socket, deadline, self.limit) {
            Ok(line) => line,
            Err(ReadError::TooLarge) => {
                let _ = send_reply(
                    &socket,
                    &Reply::error(format!("message too large (limit {} bytes)", self.limit)),
                );
                return;
            }
            Err(ReadError::TimedOut) => {
                let msg = format!("no request within {:.1}s", self.timeout.as_secs_f64());
                let _ = send_reply(&socket, &Reply::error(msg));
                return;
            }
            Err(ReadError::Closed | ReadError::Io(_)) => return,
        };
        self.deliver(socket, peer, line);
    }
}
