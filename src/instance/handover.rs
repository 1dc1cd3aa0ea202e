//! Replacing a running primary: a launch asks it to hand over and becomes the primary once
//! it has gone; and the updater's variant, which waits for the primary to exit without
//! asking it anything.

use std::io;
use std::time::{Duration, Instant};

use super::launch::{far_deadline, socket_is_live};
use super::lock::{read_pid, LockFile};
use super::remote::Wait;
use super::{Primary, Scope, SingleInstance, Start};
use crate::{Error, LocalSocketError, Result};

/// How long after a hand-over launches that find the lock free wait for the process it
/// went to (it takes the lock within milliseconds unless it died).
const HANDOVER_GRACE: Duration = Duration::from_secs(10);

/// The word after the pid in a hand-over record.
const HANDOVER: &str = "handover";

/// What a primary that hands over to the process `pid` records in place of its own pid
/// (`LockFile::hand_over`), until that process has taken the lock and written its own.
pub(super) fn record(pid: u32) -> String {
    format!("{pid} {HANDOVER}")
}

/// The process the last primary handed over to, if its record says so and was written
/// within the grace (a record left by a process that died before it took the lock
/// expires, so a reused pid cannot keep launches waiting).
fn handed_over_to(lock: &LockFile) -> Option<u32> {
    let (record, written) = lock.read_record()?;
    if written.elapsed().unwrap_or_default() > HANDOVER_GRACE {
        return None;
    }
    record.trim().strip_suffix(HANDOVER)?.trim().parse().ok()
}

/// The process the last primary handed over to, if it still runs and has not taken the
/// lock yet: launches wait for it rather than become the primary, or report none. Not in
/// the System scope, whose lock file another user may own and write.
pub(super) fn pending(lock: &LockFile, scope: Scope) -> Option<u32> {
    if scope == Scope::System {
        return None;
    }
    handed_over_to(lock).filter(|&pid| pid != std::process::id() && crate::sys::process_exists(pid))
}

impl SingleInstance {
    /// Asks a running primary to hand over to this launch, when [`start`](Self::start)
    /// finds one: its app sees [`Request::is_replace`](crate::Request::is_replace), and
    /// either refuses (`start` fails with [`Error::Rejected`] and its message) or
    /// [accepts](crate::Request::accept_replace) and releases; then this launch becomes
    /// the primary. It waits for the old primary to go within the
    /// [timeout](Self::timeout), or as [`reply_timeout`](Self::reply_timeout) says
    /// ([`Error::NotReleased`] when it has not).
    /// Launches that arrive meanwhile reach the old primary or the new one: requests the
    /// old one had not taken are told to start over. With no primary running, `start`
    /// simply becomes the primary. [`send`](Self::send), which never becomes the primary,
    /// does not ask. Default: `false`.
    pub fn replace(mut self, yes: bool) -> Self {
        self.remote.replace = yes;
        self
    }

    /// The updater's way in: waits until the running primary (if any) has exited or
    /// released, then becomes the primary. Nothing is forwarded, and the running primary
    /// is not asked anything. `timeout`: how long to wait (`None`: for as long as it runs).
    ///
    /// # Errors
    /// [`Error::StillRunning`] when a primary still runs at the timeout; as
    /// [`start`](Self::start) otherwise.
    ///
    /// ```
    /// use std::time::Duration;
    /// use solo_instance::SingleInstance;
    /// # let dir = std::env::temp_dir().join(format!("doc-exit-{}", std::process::id()));
    /// let app = || SingleInstance::new("org.example.Updater").unwrap().directory(&dir);
    /// let old = app().wait_for_exit(None)?; // nobody runs: this one is the primary
    /// let update = app();
    /// let new = std::thread::spawn(move || update.wait_for_exit(Some(Duration::from_secs(10))));
    /// old.release(); // the old version exits
    /// let primary = new.join().unwrap()?;
    /// # drop(primary); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), solo_instance::Error>(())
    /// ```
    pub fn wait_for_exit(self, timeout: Option<Duration>) -> Result<Primary> {
        let waited = timeout.unwrap_or(Duration::MAX);
        loop {
            if let Some(primary) =
                self.take_over(timeout.map(far_deadline), waited, None, Error::StillRunning)?
            {
                return Ok(primary);
            }
        }
    }

    /// [`start`](Self::start) with [`replace`](Self::replace).
    pub(super) fn start_replacing(self) -> Result<Start> {
        loop {
            let old = self.location().ok().and_then(|loc| read_pid(&loc.lock));
            match self.clone().run(true)? {
                Start::Primary(primary) => return Ok(Start::Primary(primary)),
                // Accepted (`converse` saw the hand-over): wait for the old primary to go.
                Start::Forwarded(_) => {
                    let (deadline, waited) = match self.remote.wait {
                        Wait::Timeout => (Some(far_deadline(self.timeout)), self.timeout),
                        Wait::For(d) => (Some(far_deadline(d)), d),
                        Wait::Forever => (None, Duration::MAX),
                    };
                    // `None`: another process became the primary first; it is asked in turn.
                    if let Some(primary) = self.take_over(deadline, waited, old, Error::NotReleased)? {
                        return Ok(Start::Primary(primary));
                    }
                }
            }
        }
    }

    /// Takes the lock once it is free, and serves. `Ok(None)` when the lock is held by
    /// another process than `old`'s (by the pid in the lock file); `timed_out(waited)` at
    /// the deadline.
    fn take_over(
        &self,
        deadline: Option<Instant>,
        waited: Duration,
        old: Option<u32>,
        timed_out: fn(Duration) -> Error,
    ) -> Result<Option<Primary>> {
        let loc = self.location()?;
        let shared = loc.abstract_ns || self.scope == Scope::System;
        let mut backoff = Duration::from_micros(500);
        loop {
            let free = match LockFile::try_lock(&loc.lock, shared) {
                Ok(free) => free,
                // A cleaner removed the file meanwhile: look again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            let now = Instant::now();
            match free {
                Some(lock) if loc.abstract_ns || !socket_is_live(&loc, now + Duration::from_millis(200)) => {
                    match Primary::serve(self, loc.clone(), Some(lock)) {
                        Ok(primary) => return Ok(Some(primary)),
                        // The old primary's abstract name is still bound: it is going.
                        Err(e) if e.socket_error() == Some(LocalSocketError::AddressInUse) => {}
                        Err(e) => return Err(e),
                    }
                }
                Some(_) => {}
                None => {
                    let holder = if loc.abstract_ns { None } else { read_pid(&loc.lock) };
                    if old.is_some() && holder.is_some() && holder != old {
                        return Ok(None);
                    }
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(timed_out(waited));
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(20));
        }
    }
}
