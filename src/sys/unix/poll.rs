//! `poll(2)` and the wake-up pipe that interrupts it.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
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

/// A pipe that makes a [`wait`](Self::wait) in another thread return.
#[derive(Debug)]
pub(super) struct Waker {
    rx: OwnedFd,
    tx: OwnedFd,
}

impl Waker {
    pub(super) fn new() -> io::Result<Self> {
        let (rx, tx) = pipe()?;
        Ok(Waker { rx, tx })
    }

    /// Waits until `fd` is readable, [`wake`](Self::wake) is called, or the timeout
    /// passes (no timeout waits for ever). Returns whether `fd` is readable; a wake-up is
    /// consumed.
    pub(super) fn wait(&self, fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN), PollFd::new(&self.rx, PollFlags::IN)];
            match poll(&mut fds, deadline.map_or(-1, ms_until)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            if !fds[1].revents().is_empty() {
                let mut buf = [0u8; 64];
                while rustix::io::read(&self.rx, &mut buf[..]).is_ok_and(|n| n > 0) {}
            }
            return Ok(!fds[0].revents().is_empty());
        }
    }

    /// Makes a [`wait`](Self::wait) in another thread return. Never blocks: the pipe is
    /// non-blocking, and a full pipe has a wake-up pending already.
    pub(super) fn wake(&self) {
        let _ = rustix::io::write(&self.tx, &[1]);
    }
}

/// A pipe, both ends close-on-exec and non-blocking: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
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
