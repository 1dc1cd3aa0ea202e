//! A child forked without exec keeps every descriptor of its parent, close-on-exec ones
//! too, until it execs or exits. For a primary that would keep its primacy after the
//! parent let it go or was killed: a System-scope abstract name lives as long as any
//! descriptor of its socket, and nothing unbinds it; a flock lives as long as any
//! descriptor of its open file description, so a child that outlives a primary killed
//! with `kill -9` would hold the lock (and a listening socket nobody accepts on) until it
//! exits. So, for the listening sockets and lock files registered here, a
//! `pthread_atfork` handler swaps the child's copy for an unbound datagram socket at the
//! same descriptor number (the number stays taken, so nothing else of the child's lands
//! on it; poll(2) never reports such a socket readable). The child is then never the
//! primary: a process that daemonises by forking must do so before it starts.
//!
//! `release()` and drop need more than this (the child forked before may still run):
//! releasing unlinks the socket file, shuts the listening socket down and unlocks the
//! lock file, which takes effect for every process that shares them (see `LockFile`'s
//! drop and `Listener::shut_down`).

use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

/// Registered descriptors (-1: a free slot). Read by the child handler, which may only
/// make async-signal-safe calls: atomics and plain system calls, no lock, no allocation.
static GUARDED: [AtomicI32; SLOTS] = [FREE; SLOTS];
#[allow(clippy::declare_interior_mutable_const)] // only to fill the array above
const FREE: AtomicI32 = AtomicI32::new(-1);
const SLOTS: usize = 64;

/// While it lives, children forked by this process do not get the listening socket or
/// lock file it names (see the module docs). Dropped before the descriptor is closed.
#[derive(Debug)]
pub(crate) struct ForkGuard(usize);

impl ForkGuard {
    /// Registers `fd`; `None` when every slot is taken (64: a primary takes two or
    /// three, its lock file and its listening sockets): that one is left to children as
    /// it was.
    pub(crate) fn new(fd: BorrowedFd<'_>) -> Option<ForkGuard> {
        static HANDLER: Once = Once::new();
        HANDLER.call_once(|| {
            // SAFETY: `in_child` is an `extern "C" fn()` that lives for the whole program and
            // makes only async-signal-safe calls, as a handler run in the child of a fork
            // of a multi-threaded process must.
            unsafe {
                libc::pthread_atfork(None, None, Some(in_child));
            }
        });
        let raw = fd.as_raw_fd();
        GUARDED
            .iter()
            .position(|s| s.compare_exchange(-1, raw, Ordering::SeqCst, Ordering::SeqCst).is_ok())
            .map(ForkGuard)
    }
}

impl Drop for ForkGuard {
    fn drop(&mut self) {
        GUARDED[self.0].store(-1, Ordering::SeqCst);
    }
}

/// Runs in the child of every `fork()` of this process.
extern "C" fn in_child() {
    for slot in &GUARDED {
        let fd: RawFd = slot.load(Ordering::SeqCst);
        if fd < 0 {
            continue;
        }
        let Ok(spare) = rustix::net::socket_with(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::DGRAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        ) else {
            continue;
        };
        // SAFETY: `fd` was registered as an open descriptor and is deregistered before it
        // is closed, so it is open in the parent at the fork and thus in this child; it is
        // wrapped only for `dup3` to replace it, and never closed here (`ManuallyDrop`).
        let mut target = ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let _ = rustix::io::dup3(&spare, &mut target, rustix::io::DupFlags::CLOEXEC);
    }
}
