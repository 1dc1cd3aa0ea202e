//! `poll(2)` and the wake-up pipe that interrupts it.

use std::io;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use std::os::fd::AsRawFd;
use std::os::fd::{FromRawFd, OwnedFd};

use super::cvt;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use super::set_cloexec_nonblocking;

pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // pipe2 sets the flags atomically: no child forked meanwhile inherits the ends.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        set_cloexec_nonblocking(rx.as_raw_fd(), true)?;
        set_cloexec_nonblocking(tx.as_raw_fd(), true)?;
        Ok((rx, tx))
    }
}
