//! `poll(2)` and the wake-up pipe that interrupts it.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

/// `poll(2)` on `fds` for at most `ms` milliseconds, or without a limit when `ms` is
/// negative (the C call's convention). Returns how many descriptors have events.
pub(super) fn poll(fds: &mut [PollFd<'_>], ms: i32) -> io::Result<usize> {
    let timeout =
        (ms >= 0).then(|| Timespec { tv_sec: (ms / 1000).into(), tv_nsec: ((ms % 1000) * 1_000_000).into() });
    Ok(rustix::event::poll(fds, timeout.as_ref())?)
}

/// What is left until `deadline`, in whole milliseconds rounded up (so a wait never ends
/// before its deadline), as `poll` takes it.
pub(super) fn ms_until(deadline: Instant) -> i32 {
    let left = deadline.saturating_duration_since(Instant::now());
    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
}

/// A wake-up pipe made on first need: a process that never waits (a first launch that
/// serves nothing) never makes one. A wake-up before the pipe exists is kept in a flag
/// that the next wait reads once it has made the pipe: the waker stores the flag and then
/// looks for the pipe, the waiter makes the pipe and then reads the flag (each with a
/// full fence between), so at least one of them sees the other's step, and no wake-up is
/// lost.
#[derive(Debug, Default)]
pub(crate) struct LazyPipe {
    pipe: OnceLock<(OwnedFd, OwnedFd)>,
    pending: AtomicBool,
}

impl LazyPipe {
    /// The read end, made if it was not; and whether a wake-up came before it existed
    /// (consumed here).
    pub(crate) fn read_end(&self) -> io::Result<(&OwnedFd, bool)> {
        if self.pipe.get().is_none() {
            // Two first waits at once: one pipe is kept, the other closed.
            let _ = self.pipe.set(pipe()?);
        }
        fence(Ordering::SeqCst);
        let woken = self.pending.swap(false, Ordering::SeqCst);
        let (rx, _) = self.pipe.get().expect("set above");
        Ok((rx, woken))
    }

    /// Makes the current or next wait return. Never blocks: the pipe is non-blocking, and
    /// a full pipe has a wake-up pending already. No system call while no wait made the
    /// pipe.
    pub(crate) fn wake(&self) {
        if self.pipe.get().is_none() {
            self.pending.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
        }
        if let Some((_, tx)) = self.pipe.get() {
            let _ = rustix::io::write(tx, &[1]);
        }
    }

    /// Empties the pipe after a wait saw it readable.
    pub(crate) fn drain(&self) {
        if let Some((rx, _)) = self.pipe.get() {
            let mut buf = [0u8; 64];
            while matches!(rustix::io::read(rx, &mut buf), Ok(n) if n > 0) {}
        }
    }
}

/// A pipe that makes a [`wait`](Self::wait) in another thread return.
#[derive(Debug, Default)]
pub(super) struct Waker(LazyPipe);

impl Waker {
    /// Waits until `fd` is readable, [`wake`](Self::wake) is called, or the timeout
    /// passes (no timeout waits for ever). Returns whether `fd` is readable; a wake-up is
    /// consumed.
    pub(super) fn wait(&self, fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let (rx, woken) = self.0.read_end()?;
        loop {
            let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN), PollFd::new(rx, PollFlags::IN)];
            let ms = if woken { 0 } else { deadline.map_or(-1, ms_until) };
            match poll(&mut fds, ms) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            if !fds[1].revents().is_empty() {
                self.0.drain();
            }
            return Ok(!fds[0].revents().is_empty());
        }
    }

    /// Makes a [`wait`](Self::wait) in another thread return. Never blocks.
    pub(super) fn wake(&self) {
        self.0.wake();
    }
}

/// A pipe, both ends close-on-exec and non-blocking: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    // pipe2 sets the flags atomically: no child forked meanwhile inherits the ends.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::pipe::PipeFlags;
        Ok(rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        use std::os::fd::AsFd;
        let (rx, tx) = rustix::pipe::pipe()?;
        super::set_cloexec_nonblocking(rx.as_fd(), true)?;
        super::set_cloexec_nonblocking(tx.as_fd(), true)?;
        Ok((rx, tx))
    }
}

#[cfg(test)]
mod tests {
    use super::LazyPipe;
    use rustix::event::{PollFd, PollFlags};

    #[test]
    fn lazy_pipe_a_wake_up_before_the_pipe_exists_is_kept_for_the_first_wait() {
        let pipe = LazyPipe::default();
        pipe.wake();
        let (_, woken) = pipe.read_end().unwrap();
        assert!(woken, "the early wake-up was lost");
        let (_, woken) = pipe.read_end().unwrap();
        assert!(!woken, "a wake-up is seen once");
    }

    #[test]
    fn lazy_pipe_a_wake_up_after_the_pipe_exists_makes_it_readable() {
        let pipe = LazyPipe::default();
        let (rx, woken) = pipe.read_end().unwrap();
        assert!(!woken);
        pipe.wake();
        let mut fds = [PollFd::new(rx, PollFlags::IN)];
        assert_eq!(super::poll(&mut fds, 0).unwrap(), 1, "the pipe is not readable");
        pipe.drain();
        assert_eq!(super::poll(&mut fds, 0).unwrap(), 0, "drained");
    }
}
