//! Unix: what a launch checks of the primary it connected to, before a byte is written:
//! the peer's uid, as the kernel reports it.

use std::cell::Cell;
use std::io;

use crate::sys::ServerCheck;
use crate::LocalSocket;

/// What a server is called in messages.
pub(crate) const SERVER_KIND: &str = "socket";

/// How a launch connects: its connection stays non-blocking, as it waits with poll(2)
/// (`recv_until`, [`write_all_until`](super::write_all_until)).
pub(crate) fn launch_options(options: crate::ConnectOptions) -> crate::ConnectOptions {
    options.keep_nonblocking()
}

/// Who a process runs as: its effective uid.
#[allow(dead_code)] // for the serving engine, which uses `euid` so far
pub(crate) type User = u32;

thread_local! {
    /// The effective uid read within [`as_one_user`], for the rest of it.
    static ONE_USER: Cell<Option<Option<u32>>> = const { Cell::new(None) };
}

/// This process's effective user id: read once within [`as_one_user`].
pub(crate) fn euid() -> u32 {
    ONE_USER.with(|scope| match scope.get() {
        Some(Some(uid)) => uid,
        in_scope => {
            let uid = rustix::process::geteuid().as_raw();
            if in_scope.is_some() {
                scope.set(Some(Some(uid)));
            }
            uid
        }
    })
}

/// Runs `f` (a launch, on this thread), reading the effective uid at most once in it: a
/// launch runs as one user; a process that changes its user between launches gets each
/// one's own.
pub(crate) fn as_one_user<R>(f: impl FnOnce() -> R) -> R {
    let outer = ONE_USER.with(|scope| scope.replace(Some(scope.get().flatten())));
    let r = f();
    ONE_USER.with(|scope| scope.set(outer));
    r
}

/// Who this process runs as, for the peer and file checks: its effective uid.
#[allow(dead_code)] // for the serving engine, which uses `euid` so far
pub(crate) fn current_user() -> std::io::Result<User> {
    Ok(euid())
}

/// Whether the socket's peer runs as this process's effective user.
fn same_user(socket: &LocalSocket) -> bool {
    socket.peer_credentials().ok().and_then(|c| c.uid) == Some(euid())
}

/// Checks the primary at the other end of `socket`, outside the System scope: this user's,
/// else `Unusable` (a socket in this user's directory served by another user).
pub(crate) fn check_primary(socket: &LocalSocket) -> ServerCheck {
    if same_user(socket) {
        ServerCheck::Ours
    } else {
        ServerCheck::Unusable(String::from("served by another user"))
    }
}

/// The System scope: whether the primary at the other end of `socket` is this user,
/// provably. A uid that proves nothing (see [`uid_is_overflow`]) counts as another
/// user's: defusing the texts of this user's own primary costs only colours.
pub(crate) fn served_by_this_user(socket: &LocalSocket) -> bool {
    same_user(socket) && !uid_is_overflow()
}

/// Linux: whether this process's uid reads as the kernel's overflow uid (65534 unless
/// changed): it runs in a user namespace that does not map it (`unshare -U`), or it is a
/// `nobody`. Then a peer in a user namespace of its own, or whose uid this namespace does
/// not map (any other user's, from a container's), reads as that same uid, whoever it is.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn uid_is_overflow() -> bool {
    let overflow = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(65534);
    euid() == overflow
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn uid_is_overflow() -> bool {
    false
}

/// What a server that refused this launch's connect (`EACCES`) means, outside the System
/// scope: nothing more than the error itself (`None`).
pub(crate) fn refused(
    _name: &str,
    _published_level: Option<u32>,
    _lock_is_held: impl FnOnce() -> bool,
) -> Option<ServerCheck> {
    None
}

/// Whether a primary that published integrity level `level` runs above this process:
/// Unix has no integrity levels.
pub(crate) fn elevated_above_us(_level: u32) -> bool {
    false
}

/// Hands this launch's right to take the foreground to the primary: a Windows notion
/// (the launch's activation token travels in the request instead).
pub(crate) fn hand_foreground(_socket: &LocalSocket) {}

/// Whether the server's file at `name` is gone (nothing to connect to): one stat instead of
/// a socket, a connect and a close.
pub(crate) fn server_file_gone(name: &std::path::Path) -> bool {
    matches!(std::fs::symlink_metadata(name), Err(e) if e.kind() == io::ErrorKind::NotFound)
}
