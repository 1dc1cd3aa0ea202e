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
//! The single-instance files (`instance::location`, `lock`, `published`, `launch`):
//! - `ensure_dir(dir, system)`: creates the private directory (0700 / 1777; an explicit
//!   protected DACL) and refuses an unsafe one (owner, mode or DACL, a link).
//! - `repair_dir(dir, shared)`: makes a removed directory again for a running primary and
//!   gives its identity (Windows: only its identity; nothing can remove it there).
//! - `FileId`, `file_id(path)`: a file's identity (device and inode; volume and index).
//! - `user_dir()`, `system_base()`: the User/Session scopes' directory, the System
//!   scope's base (`/tmp`; `%ProgramData%` as Windows knows it).
//! - `login_session()`: the Session scope's session (`$XDG_SESSION_ID`; the Terminal
//!   Services session).
//! - `system_abstract(app_id)`: the System scope's lock file and abstract name (Linux;
//!   `None` elsewhere, where the System scope has a directory).
//! - `server_name(base, stem, system)`: the name launches connect to (the socket path,
//!   shortened or in a private fallback directory; the file publishing the pipe, or the
//!   System scope's fixed pipe name).
//! - `published::{file, publish, read, withdraw, Published}`: where the primary is
//!   published (Windows: the file with its random pipe name; Unix: the socket path is the
//!   name itself, and the items do nothing).
//! - `LockFile` (`try_lock`, `write_pid`, `file_id`; unlocked on drop), `read_pid(lock)`,
//!   `lock_cannot_exist(lock)`: the lock that decides the primary (`flock`; `LockFileEx`)
//!   and the pid recorded for `status` (in the lock file; in `<app>.pid` beside it).
//! - `ForkGuard`, `fork_guard(listener)`: children forked without exec get no copy of the
//!   lock or the listening socket (Linux; none elsewhere, and Windows does not fork).
//! - `check_primary(socket)`, `served_by_this_user(socket)`, `refused(name, level,
//!   lock_is_held)`, `elevated_above_us(level)`: what a launch checks of the primary before
//!   a byte is written (uid; owner SID, integrity label and session), and what a refused
//!   connect means (Windows' elevated primary or a stranger's pipe; nothing on Unix).
//! - `hand_foreground(socket)`: the launch's right to take the foreground, handed to the
//!   primary (`AllowSetForegroundWindow`; nothing on Unix).
//! - `server_file_gone(name)`, `write_all_until(socket, buf, deadline)`,
//!   `launch_options(options)`, `SERVER_KIND`: the launch's connection (a stat before a
//!   connect; a write bounded by a deadline; non-blocking where it polls; "socket" or
//!   "pipe" in messages).
//! - `euid()` (Unix) / `current_user()` (Windows): who this process is, for the peer and
//!   file checks (to be one item once the serving engine uses the same on both).
//! - `watch::{Watch, new_watch, rewatch, rewatch_file, concerns_us, is_out_of_resources}`:
//!   the removal watch (inotify; a kqueue on macOS; none elsewhere, where the files are
//!   looked at once a second; none on Windows, where a held lock file and its directory
//!   cannot be removed).
//!
//! The serving engine (listener, poller, waker, connection I/O):
//! - `Listener` (bind/adopt, wait with a timeout and a wake-up, non-blocking accept,
//!   remove its own socket file), `connect`, `remove_server`, and the errno-to-Qt
//!   classification (`server_error`, `connect_error`).
//! - ENGINE: the items the serving engine adds (poller, waker, connection I/O, peer
//!   identity at the primary's end) are listed here.

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
