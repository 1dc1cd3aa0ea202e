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
    // Restored however `f` ends, a panic included (a thread left with the app's signals
    // blocked would never take them again).
    let _restore = blocked.then_some(Restore(old));
    f()
}

/// Sets the thread's signal mask back to the one it holds when dropped.
struct Restore(MaybeUninit<libc::sigset_t>);

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: `Restore` is made only from a mask that a successful `pthread_sigmask`
        // wrote (initialised), and reads it only.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, self.0.as_ptr(), std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_signals_blocked;

    fn mask() -> libc::sigset_t {
        let mut now = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: a null `set` only reads the mask into `now`, a live local.
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), now.as_mut_ptr());
            now.assume_init()
        }
    }

    fn blocks(set: &libc::sigset_t, sig: libc::c_int) -> bool {
        // SAFETY: `set` is an initialised set.
        unsafe { libc::sigismember(set, sig) == 1 }
    }

    /// The mask is back as it was after `f`, also when `f` panics; inside, SIGINT and
    /// SIGTERM are blocked and the faults are not.
    #[test]
    fn the_mask_is_restored_even_when_f_panics() {
        std::thread::spawn(|| {
            assert!(!blocks(&mask(), libc::SIGINT));
            let inside = with_signals_blocked(mask);
            assert!(blocks(&inside, libc::SIGINT) && blocks(&inside, libc::SIGTERM));
            assert!(!blocks(&inside, libc::SIGSEGV) && !blocks(&inside, libc::SIGBUS));
            assert!(!blocks(&mask(), libc::SIGINT), "not restored");
            let panicked = std::panic::catch_unwind(|| with_signals_blocked(|| panic!("in f")));
            assert!(panicked.is_err());
            assert!(!blocks(&mask(), libc::SIGINT), "not restored after a panic");
        })
        .join()
        .unwrap();
    }
}
