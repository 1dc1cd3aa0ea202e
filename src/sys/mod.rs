//! Platform code, crate-private: the only place for `cfg(unix)`, `cfg(windows)`,
//! `cfg(target_os)` and calls into rustix, libc or windows-sys (tests aside; the D-Bus
//! code keeps its Linux gate). Above this module the code is the same on every platform.
//!
//! # The contract
//!
//! `unix/` and `windows/` each provide the items below, with the same names and
//! signatures. Where a platform has nothing to do, its item is a documented no-op; where
//! Unix platforms differ (Linux, macOS), `unix/` chooses inside. The types shared by both
//! are defined here ([`Ready`], [`ServerCheck`]).
//!
//! The single-instance layer's items (`instance::location`, `lock`, `published`, `launch`,
//! `serve::watch`); "(Windows)" or "(Linux)" marks the platform that does the work, the
//! others' item being a documented no-op:
//! - `ensure_dir(dir, system)`: make the private directory; refuse an unsafe one.
//! - `repair_dir(dir, shared)`: make a removed directory again, give its identity.
//! - `FileId`, `file_id(path)`: a file's identity (device and inode; volume and index).
//! - `user_dir()`: the User and Session scopes' directory.
//! - `system_base()`: the System scope's base (`/tmp`; `%ProgramData%`).
//! - `login_session()`: the Session scope's session (`$XDG_SESSION_ID`; Terminal Services).
//! - `system_abstract(app_id)`: the System scope's lock and abstract name (Linux).
//! - `server_name(base, stem, system)`: the name launches connect to.
//! - `MAX_SOCKET_PATH`, `ABSTRACT_NAMES`, `NAMES_ARE_PIPES`: the facts of server names.
//! - `os_bytes(s)`, `os_from_bytes(b)`: an OS string's bytes (as they are; UTF-8, lossy).
//! - `published::{file, publish, read, withdraw, Published}`: the published pipe (Windows).
//! - `LockFile` (`try_lock`, `write_pid`, `file_id`, unlocked on drop): the deciding lock.
//! - `read_pid(lock)`: the primary's pid (in the lock file; in `<app>.pid` beside it);
//!   `LockFile::read_record()`: that record as text, and when it was written, read by the
//!   lock's holder (`LockFile::hand_over` writes a hand-over there, see `instance::handover`).
//! - `lock_cannot_exist(lock)`: no lock file can be made, `/tmp` is read-only (Linux).
//! - `ForkGuard`, `fork_guard(listener)`: forked children get no lock or listener (Linux).
//! - `as_one_user(f)`: a launch, reading the effective uid once (Unix).
//! - `own_pid()`: this process's id, without a system call each time (Unix: read once,
//!   forgotten in a forked child).
//! - `check_primary(socket)`: the primary is this user's (uid; owner, integrity, session).
//! - `served_by_this_user(socket)`: the System scope's primary is provably this user.
//! - `refused(name, level, lock_is_held)`: what a refused connect means (Windows).
//! - `elevated_above_us(level)`: a primary at this level runs above this launch (Windows).
//! - `hand_foreground(socket)`: `AllowSetForegroundWindow` for the primary (Windows).
//! - `server_file_gone(name)`: no socket file to connect to (Unix).
//! - `write_all_until(socket, buf, deadline)`: a launch's write, within its deadline.
//! - `launch_options(options)`: how a launch connects (non-blocking where it polls).
//! - `SERVER_KIND`: "socket" or "pipe", for messages.
//! - `watch::{Watch, new_watch, rewatch, rewatch_file, concerns_us}`: the removal watch.
//! - `watch::{WATCHES_DIRECTORIES, WATCHES_FILES}`: what can be watched (inotify; kqueue).
//! - `watch::is_out_of_resources(e)`: out of descriptors or memory for a moment.
//! - `User`, `current_user()`: who this process runs as (the effective uid; the user's SID).
//!
//! The serving engine (`instance::serve`, one readiness-driven loop on every platform:
//! `poll(2)` on Unix, overlapped named-pipe I/O on one completion port through mio on
//! Windows; the full text is in `unix/engine.rs`):
//! - `poller() -> (Poller, PollWaker)`: the readiness wait, and what interrupts it from
//!   any thread without blocking.
//! - `Interest` (`listener`, `connection`, `watch`), `Token`, `Poller::wait`,
//!   `Poller::readiness`: what one wait is for, and what it saw per source (readiness may
//!   be edge-triggered, `EDGE_TRIGGERED`: then the loop remembers it until a read or an
//!   accept finds nothing); `Poller::settle`: at the end, what was closed is closed
//!   (Windows: the completions queued are taken in).
//! - `Acceptor` (`register`, non-blocking `accept`, `of_listener`): the listening end.
//! - `Connection` (non-blocking `read`, `send` before a deadline, `is_closed`, `hang_up`,
//!   `close`: on Windows the pipe instance closed, which frees the pipe's name while a
//!   request the app holds lives on, what was written staying readable; `peer`,
//!   `PINNED`: the memory it holds while it lives): one launch's connection, and the
//!   responder of its request.
//! - `Owner` (`current`, `admits`): who a primary serves, checked before a byte is read.
//! - `WatchSource`, `Watch::source()`: what the poller waits on for the removal watch.
//! - `listen_primary(server, socket, system) -> Listening`: where a primary listens (Unix:
//!   the `LocalServer`'s socket; Windows: the loop's own pipe, under the scope's security
//!   descriptor and a published random name).
//! - `read_until(socket, line, max, deadline)`: a launch's read of its reply, at most
//!   `max` bytes onto the end of `line`, bounded by a deadline.
//!
//! The launch as a remote command line (protocol version 2: `instance::stream`, `remote`,
//! `handover`):
//! - `recv_some(socket, buf, max, deadline)`: a launch's read of the frames that have
//!   arrived, at most `max` bytes onto the end of `buf`.
//! - `send_some(socket, buf, deadline, stop)`: a launch's write of its stdin, while a read
//!   is in flight on another thread (Unix: partial, up to the deadline; Windows: whole,
//!   cancelled only once `stop` is set).
//! - `wait_readable(conn, timeout)`: the primary waits for a launch's stdin (Unix).
//! - `STDIN_THROUGH_LOOP`: whether the primary's reader of a launch's stdin waits for the
//!   serving loop's turns instead (Windows, where a pipe's reads complete on the loop's
//!   completion port).
//! - `process_exists(pid)`: whether a process runs (one of another user's too): the one a
//!   primary handed over to, the primary a launch waits for.
//!
//! Layer 1 (`server`, `socket`), a port of Qt's classes whose behaviour differs by
//! platform as Qt's does, also uses: `Listener` (`bind`, wait with a timeout and a
//! wake-up, non-blocking accept, remove its own socket file), `connect`, `remove_server`,
//! the errno-to-Qt classification (`server_error`, `connect_error`), `with_signals_blocked`,
//! and platform-only items it gates itself: `Listener::adopt`, `connect_nonblocking`,
//! `peer_ucred` / `peer_pid` (Unix); `Listener::bind_with_sddl`, `IoDeadline`, `pipe` (a
//! stream's pipe handle), `peer_sid`, `own_integrity`, `random_pipe_name`, the pipe
//! descriptors (Windows).
//!
//! Everything else in `unix/` and `windows/` is private to its platform.

#[cfg(unix)]
mod unix;
/// Public, through `crate::name` (the glob above makes it crate-wide only).
#[cfg(unix)]
pub use unix::MAX_SOCKET_PATH;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
/// Public, through `crate::name` (the glob above makes it crate-wide only).
#[cfg(windows)]
pub use windows::MAX_SOCKET_PATH;
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

/// What a launch found at the server end of a connection, before writing a byte.
#[cfg_attr(unix, allow(dead_code))] // `Stranger`: Windows' pipes only
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServerCheck {
    /// This user's, at this launch's integrity level or above, in this session.
    Ours,
    /// Not this launch's primary: another user's pipe, or one below this launch's integrity
    /// level (a sandboxed or, for an elevated launch, a non-elevated process of this user).
    /// Why, in words.
    Stranger(String),
    /// This user's primary, which this launch cannot use (it runs elevated and the launch
    /// does not, or in another Terminal Services session); or, on Unix, a socket in this
    /// user's directory served by another user. Why, in words.
    Unusable(String),
}

/// What a primary's record file holds (see `read_record` on each platform), once opened:
/// read only if it is a plain file, at most 32 bytes, with when it was written.
fn record_of(file: std::fs::File) -> Option<(String, std::time::SystemTime)> {
    use std::io::Read;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut s = String::new();
    file.take(32).read_to_string(&mut s).ok()?;
    Some((s, meta.modified().ok()?))
}
