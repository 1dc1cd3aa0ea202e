//! The floor for a first launch: what `solo run APP --count 0` does, with std (and libc's
//! `flock`) alone and nothing on top: takes an exclusive non-blocking `flock` on
//! `PATH.lock` (created 0600), removes a stale socket at `PATH`, binds and listens there,
//! prints `PRIMARY PATH`, removes the socket and exits (the lock goes with the process).
//! `benches/compare.sh` times `solo run APP --count 0` against it; `benches/counts.sh`
//! counts both.
//!
//! `first_launch_floor SOCKET_PATH [idle]`: with `idle`, it stays in `accept` after the
//! line instead (what an idle bare std listener costs, for the README's "Resource use").

#[cfg(not(unix))]
fn main() {}

#[cfg(unix)]
fn main() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::net::UnixListener;

    let mut args = std::env::args_os().skip(1);
    let path = std::path::PathBuf::from(args.next().expect("usage: first_launch_floor SOCKET_PATH [idle]"));
    let mut lock_path = path.clone().into_os_string();
    lock_path.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(lock_path)
        .expect("lock file");
    // SAFETY: `lock` is an open file descriptor for the whole call.
    let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(locked, 0, "flock: {}", std::io::Error::last_os_error());
    // Holding the lock: a socket at PATH is a dead primary's.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("unlink: {e}"),
        _ => {}
    }
    let listener = UnixListener::bind(&path).expect("bind");
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "PRIMARY {}", path.display());
        let _ = out.flush();
    }
    if args.next().is_some_and(|a| a == "idle") {
        let _ = listener.accept();
    }
    std::fs::remove_file(&path).expect("unlink");
    drop(listener);
}
