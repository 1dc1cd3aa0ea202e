//! The loop's turns, counted for a reader of a launch's stdin where the connection's
//! reads complete on the loop's completion port (`sys::STDIN_THROUGH_LOOP`: Windows). Its
//! bytes are handed out only once a turn has seen the read complete, so the reader, after
//! a read that found nothing, waits for the next turn to end: run by the driver thread or
//! by the app's receive call, or by the reader itself when no other thread runs the loop,
//! or when the reader is the driver thread (a waker that reads stdin: the driver calls it
//! between its turns, so a wait for the next would never end).
//! Where the reader waits on the connection itself (Unix) nothing here runs.
//!
//! A reader that runs a turn runs a whole one (accepting and delivering launches, as a
//! receive call does), waiting until something happens; a thread that wants the loop
//! meanwhile (a receive call, the driver) wakes that turn and goes first: the reader then
//! waits for the turns it runs.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use super::{turn, Context, Mux, State};

/// How long a reader waits for a turn before it looks again whether it may run one (a
/// thread holding the loop's state for something other than a turn ends nothing).
const RECHECK: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(super) struct Turns {
    /// Turns ended so far.
    count: AtomicU64,
    /// Readers waiting for a turn to end.
    waiters: AtomicUsize,
    /// Threads waiting for the loop's state to run a turn of their own.
    wanted: AtomicUsize,
    lock: Mutex<()>,
    ended: Condvar,
}

impl Turns {
    /// A turn ended (or the loop stopped): readers waiting look again.
    pub(super) fn ended(&self) {
        if !crate::sys::STDIN_THROUGH_LOOP {
            return;
        }
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.ended.notify_all();
        }
    }
}

impl Mux {
    /// The loop's state, for a turn: a reader running a turn of its own (which may wait
    /// until something happens) is woken, and lets this thread go first.
    pub(super) fn state_for_turn(&self) -> MutexGuard<'_, State> {
        if !crate::sys::STDIN_THROUGH_LOOP {
            return self.state();
        }
        let turns = &self.turns;
        turns.wanted.fetch_add(1, Ordering::SeqCst);
        let st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.wake();
                self.state()
            }
        };
        turns.wanted.fetch_sub(1, Ordering::SeqCst);
        st
    }
}

impl Context {
    /// Whether this thread is the driver, running the app's waker between two turns (a
    /// waker that waits for a request or reads stdin): the loop's turns are this thread's
    /// to run, as no other thread would.
    pub(super) fn on_driver(&self) -> bool {
        self.mux.is_driven()
            && self.inbox.driver_id.get().is_some_and(|&id| id == std::thread::current().id())
    }

    /// The number of the loop's turns ended so far: read before a read of a launch's
    /// stdin, for [`await_turn`](Self::await_turn).
    pub(in crate::instance) fn turns(&self) -> u64 {
        self.mux.turns.count.load(Ordering::SeqCst)
    }

    /// Waits until a turn of the loop has ended since `seen` (see the module): runs one
    /// itself when no other thread runs the loop, or when this is the driver thread.
    /// `ConnectionAborted` once the primary is dropped.
    pub(in crate::instance) fn await_turn(self: &Arc<Self>, seen: u64) -> io::Result<()> {
        let mux = &self.mux;
        let turns = &mux.turns;
        loop {
            if mux.shut.load(Ordering::SeqCst) {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the primary instance was released before the end of the launch's stdin",
                ));
            }
            if turns.count.load(Ordering::SeqCst) != seen {
                return Ok(());
            }
            // Run a turn here while no other thread runs the loop, and on the driver
            // thread itself (a waker that reads stdin): no other thread would run one.
            if self.on_driver() || !mux.is_driven() && turns.wanted.load(Ordering::SeqCst) == 0 {
                let st = match mux.state.try_lock() {
                    Ok(st) => Some(st),
                    Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(TryLockError::WouldBlock) => None,
                };
                if let Some(mut st) = st {
                    if !mux.shut.load(Ordering::SeqCst) {
                        turn::turn(self, &mut st, None);
                    }
                    drop(st);
                    turns.ended();
                    continue;
                }
            }
            turns.waiters.fetch_add(1, Ordering::SeqCst);
            let g = turns.lock.lock().unwrap_or_else(|p| p.into_inner());
            if turns.count.load(Ordering::SeqCst) == seen && !mux.shut.load(Ordering::SeqCst) {
                let _ = turns.ended.wait_timeout(g, RECHECK);
            }
            turns.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
