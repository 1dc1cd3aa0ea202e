//! Off Linux: no fork guard (a documented no-op). The items match Linux's `fork.rs`:
//! [`ForkGuard::new`] registers nothing, so a child forked without exec keeps its copies of
//! the lock file and listening socket, until it execs or exits, as any descriptor.

use std::os::fd::BorrowedFd;

/// A fork guard: never made here.
#[derive(Debug)]
pub(crate) enum ForkGuard {}

impl ForkGuard {
    /// Registers nothing: `None`.
    pub(crate) fn new(_fd: BorrowedFd<'_>) -> Option<ForkGuard> {
        None
    }
}
