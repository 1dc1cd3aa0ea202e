//! What a process needs to know of its forks, without a system call each time: its own
//! pid, and whether it forked since a moment (a generation number).
//!
//! glibc and the BSDs no longer cache the pid, so `getpid` is a system call; here the pid
//! is read once and kept, and a `pthread_atfork` handler forgets it in a child. The
//! generation number is bumped before and after every `fork()` in the parent: a
//! descriptor made at generation `g` has no copy in another process while the
//! generation is still `g` (a fork that copies it bumps the number after it, and one
//! whose bump came first has not copied it yet when the number is read before the
//! descriptor is made). `vfork` and `posix_spawn` (std's `Command`) run no fork handlers:
//! their child shares the parent's memory or execs at once, and its copies of
//! close-on-exec descriptors go at that exec.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;

/// This process's pid; 0 until read (and in a child, until it reads its own).
static PID: AtomicU32 = AtomicU32::new(0);
/// Bumped around every fork, in the parent.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Registers the fork handlers, once: before any value they keep may be read.
fn register() {
    static HANDLERS: Once = Once::new();
    HANDLERS.call_once(|| {
        // SAFETY: both handlers are `extern "C" fn()`s that live for the whole program and
        // make only async-signal-safe calls (atomic operations), as a handler run around
        // a fork of a multi-threaded process must.
        unsafe {
            libc::pthread_atfork(Some(bump), Some(bump), Some(in_child));
        }
    });
}

/// Runs before a fork and after it, in the parent.
extern "C" fn bump() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Runs in the child of every `fork()`: its pid is not the parent's.
extern "C" fn in_child() {
    PID.store(0, Ordering::SeqCst);
}

/// This process's pid: one `getpid` per process, not one per call.
pub(crate) fn own_pid() -> u32 {
    match PID.load(Ordering::SeqCst) {
        0 => {
            // The handler first: a fork after the store below resets the child's copy.
            register();
            let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
            PID.store(pid, Ordering::SeqCst);
            pid
        }
        pid => pid,
    }
}

/// The fork generation: read it before making a descriptor; while
/// [`forked_since`]`(g)` is false no other process has a copy of it.
pub(crate) fn generation() -> u64 {
    register();
    GENERATION.load(Ordering::SeqCst)
}

/// Whether this process forked (or is a child forked) since generation `g` was read.
/// In a child the generation is its parent's at the fork, bumped by the prepare handler:
/// never `g` for a descriptor made before the fork.
pub(crate) fn forked_since(g: u64) -> bool {
    GENERATION.load(Ordering::SeqCst) != g
}

#[cfg(test)]
mod tests {
    use super::{forked_since, generation, own_pid};

    #[test]
    fn forks_a_fork_is_seen_by_the_parent_and_the_child_knows_its_own_pid() {
        let pid = own_pid();
        let g = generation();
        assert!(!forked_since(g));
        // SAFETY: the child makes only async-signal-safe calls (atomics, getpid, _exit).
        let child = unsafe { libc::fork() };
        if child == 0 {
            let ok = own_pid() != pid && forked_since(g);
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        assert!(child > 0, "fork failed");
        let mut status = 0;
        // SAFETY: `status` is a live, writable local.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child saw no fork");
        assert!(forked_since(g));
        assert_eq!(own_pid(), pid);
    }
}
