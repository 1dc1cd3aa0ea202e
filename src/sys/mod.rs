//! Platform code, crate-private. Each platform module offers the same items:
//! `Listener` (bind/adopt, wait with a timeout and a wake-up, non-blocking accept, remove
//! its own socket file), `connect`, and the errno-to-Qt classification.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

#[cfg(feature = "tokio")]
mod asynchronous;
#[cfg(feature = "tokio")]
pub(crate) use asynchronous::*;

/// What a [`Listener::wait`] saw.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ready {
    /// A connection can be accepted.
    pub(crate) acceptable: bool,
}

/// Unix: this process's effective user id, for the single-instance layer's peer and file
/// ownership checks.
#[cfg(unix)]
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}
