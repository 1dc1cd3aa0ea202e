//! A launch's streams (protocol version 2) on Unix: a launch's reads and partial writes
//! with a deadline, and the primary's wait for a launch's stdin.

use std::io;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::Connection;
use crate::LocalSocket;

/// Whether a primary reads a launch's stdin through its serving loop: not on Unix, where
/// the reader waits on the connection itself ([`wait_readable`]).
pub(crate) const STDIN_THROUGH_LOOP: bool = false;

/// Reads what has arrived at a launch's socket before `deadline`, at most `max` bytes,
/// onto the end of `buf` (never zeroed first: the kernel writes what it reads): `Ok(0)`
/// at the end, `TimedOut` when the deadline passed first.
pub(crate) fn recv_some(
    socket: &LocalSocket,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> io::Result<usize> {
    // On Unix a launch's streamed read is the same bounded read as its reply line's.
    super::read_until(socket, buf, max, deadline)
}

/// Writes what fits of `buf` to a launch's socket, waiting until `deadline` at most for
/// room: the bytes taken (at least one), or `TimedOut` (the caller looks at its `stop`
/// then; `_stop` is for Windows, whose write stays in flight).
pub(crate) fn send_some(
    socket: &LocalSocket,
    buf: &[u8],
    deadline: Instant,
    _stop: &std::sync::atomic::AtomicBool,
) -> io::Result<usize> {
    loop {
        let n = super::send_now(socket, buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut fds = [PollFd::new(socket, PollFlags::OUT)];
        match rustix::event::poll(&mut fds, Some(&timespec(left))) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until the launch at `conn` has sent something (or gone), for `timeout` at most
/// (`None`: no limit): whether it did.
pub(crate) fn wait_readable(conn: &Connection, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fds = [PollFd::from_borrowed_fd(conn.as_fd(), PollFlags::IN)];
    match rustix::event::poll(&mut fds, timeout.map(timespec).as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn timespec(t: Duration) -> Timespec {
    Timespec { tv_sec: t.as_secs().min(i32::MAX as u64) as _, tv_nsec: t.subsec_nanos() as _ }
}

/// Whether a process with this pid runs (one of another user's too). A zombie, dead and
/// not yet reaped by its parent, does not (Linux, where `/proc` tells).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Some(id) = rustix::process::Pid::from_raw(pid as i32) else { return false };
    matches!(rustix::process::test_kill_process(id), Ok(()) | Err(Errno::PERM)) && !is_zombie(pid)
}

/// Whether `/proc` says the process `pid` is a zombie: the state after its name, which
/// ends at the line's last `)` (the name itself may hold one).
///
/// Only a `/proc` of this process's own pid namespace is read: one mounted for another
/// (a sandbox made with `bwrap --unshare-pid` or `unshare --pid` that kept the outer
/// `/proc`) numbers its processes otherwise, and its `pid` is some other process. Its
/// `self` then names this process by another pid, or by none.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_zombie(pid: u32) -> bool {
    let own = std::fs::read_link("/proc/self").ok().and_then(|p| p.to_str()?.parse::<u32>().ok());
    if own != Some(std::process::id()) {
        return false;
    }
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.iter().rposition(|&b| b == b')').and_then(|i| stat.get(i + 2));
    matches!(state, Some(b'Z' | b'X'))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn is_zombie(_pid: u32) -> bool {
    false
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::process_exists;
    use std::process::Command;

    /// A process whose name reads like a zombie's state (`x) Z (`) runs, and a zombie of
    /// that name does not: the state is the one after the name's real end.
    #[test]
    fn process_exists_reads_the_state_past_a_name_that_holds_a_state() {
        let dir = std::env::temp_dir().join(format!("si-zname-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("x) Z (y");
        std::fs::copy("/bin/sleep", &exe).unwrap();
        /// Killed and reaped however the test ends.
        struct Reaped(std::process::Child);
        impl Drop for Reaped {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Reaped(Command::new(&exe).arg("600").spawn().unwrap());
        let pid = child.0.id();
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(name.trim_end(), "x) Z (y");
        assert!(process_exists(pid), "a running process taken for a zombie by its name");
        child.0.kill().unwrap();
        // Dead, not reaped yet: a zombie, under the same name.
        let state = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            stat[stat.rfind(')').unwrap()..].chars().nth(2).unwrap()
        };
        while state() != 'Z' {
            std::thread::yield_now();
        }
        assert!(!process_exists(pid), "a zombie taken for a running process");
        drop(child);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
