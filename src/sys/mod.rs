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

/// Unix: the home directory of this process's real user in the passwd database
/// (getpwuid_r), for when `$HOME` is unset or empty: what `dirs-sys` and std's
/// `home_dir` fall back to. `None` without an entry or with an empty or relative one.
#[cfg(unix)]
pub(crate) fn passwd_home() -> Option<std::path::PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `passwd` is plain data that getpwuid_r fills; zeroed is a valid value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `pw` and `result` are locals, `buf`
        // is writable for `buf.len()` bytes; the strings it fills point into `buf`.
        let rc = unsafe {
            libc::getpwuid_r(libc::getuid(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut result)
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pw.pw_dir.is_null() {
            return None;
        }
        // SAFETY: a non-null `pw_dir` from a successful call is a NUL-terminated string in
        // `buf`, which outlives this borrow.
        let dir = unsafe { CStr::from_ptr(pw.pw_dir) };
        let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()));
        return path.is_absolute().then_some(path);
    }
}

/// Unix: this process's effective user id, for the single-instance layer's peer and file
/// ownership checks.
#[cfg(unix)]
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}
