//! The crate's threads take none of the app's signals: they start with the asynchronous
//! signals blocked, so that a process-directed SIGINT or SIGTERM reaches a thread of the
//! app's (its `sigwait` thread, or a `signalfd`, which needs every thread to block the
//! signal), never one of ours, whenever the app blocks them.

use std::mem::MaybeUninit;

/// Runs `f`, which starts threads, with every asynchronous signal blocked in this thread,
/// so that those threads inherit that mask; then restores this thread's mask. Faults
/// (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS) stay deliverable.
pub(crate) fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigfillset` initialises the set it is given (a live, writable local), and
    // `sigdelset` changes an initialised set; `pthread_sigmask` reads `all` and writes the
    // previous mask into `old`, both live locals of the right type. None of these calls can
    // fail with valid signal numbers and `how`.
    let blocked = unsafe {
        libc::sigfillset(all.as_mut_ptr());
        for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGTRAP, libc::SIGSYS] {
            libc::sigdelset(all.as_mut_ptr(), sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr()) == 0
    };
    let result = f();
    if blocked {
        // SAFETY: `old` was initialised by the successful `pthread_sigmask` above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
        }
    }
    result
}
