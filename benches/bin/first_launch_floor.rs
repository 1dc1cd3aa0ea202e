//! The floor for a first launch: a minimal program that does what becoming the primary
//! needs, without the library: takes an exclusive `flock` on `PATH.lock`, binds a
//! `UnixListener` at `PATH`, prints one line, removes the socket and exits.
//! `benches/compare.sh` times `solo run APP --count 0` against it.
//!
//! `first_launch_floor SOCKET_PATH [idle]`: with `idle`, it stays in `accept` after the
//! line instead (what an idle bare std listener costs, for the README's "Resource use").

#[cfg(not(unix))]
fn main() {}

#[cfg(unix)]
fn main() {
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;

    let path =
        std::path::PathBuf::from(std::env::args_os().nth(1).expect("usage: first_launch_floor SOCKET_PATH"));
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open({
            let mut lock = path.clone().into_os_string();
            lock.push(".lock");
            lock
        })
        .expect("lock file");
    rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::NonBlockingLockExclusive).expect("flock");
    let listener = UnixListener::bind(&path).expect("bind");
    println!("PRIMARY {}", path.display());
    if std::env::args_os().nth(2).is_some_and(|a| a == "idle") {
        let _ = listener.accept();
    }
    drop(listener);
    std::fs::remove_file(&path).expect("unlink");
}
