//! The removal watch (Linux): when the socket file is removed under the running primary
//! (a cleaner of `$XDG_RUNTIME_DIR` or `/tmp`), a new socket is bound at the same path at
//! once, so launches keep reaching the primary.
//!
//! The watch is set [`WATCH_DELAY`] after the start (the socket is checked then too):
//! closing an inotify descriptor that has a watch waits for an RCU grace period, 1.5 to
//! 14 ms on a busy machine, and a process pays it at exit; a primary that lives less than
//! that delay (`solo run APP --count 0`, an app that forwards and quits) never pays it.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use super::{Mux, State};
use crate::LocalServer;

/// How long after the start the removal watch is set (see the module docs): one wake-up,
/// then none while idle.
pub(super) const WATCH_DELAY: Duration = Duration::from_millis(100);

/// An inotify watch for files removed from (or moved out of) `socket`'s directory.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn watch_removal(socket: &Path) -> Option<OwnedFd> {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let dir = socket.parent().filter(|d| !d.as_os_str().is_empty())?;
    let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok()?;
    inotify::add_watch(&fd, dir, WatchFlags::DELETE | WatchFlags::MOVED_FROM | WatchFlags::ONLYDIR).ok()?;
    Some(fd)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn watch_removal(_socket: &Path) -> Option<OwnedFd> {
    None
}

/// Reads the pending inotify events: whether one names the socket file.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn socket_removed(fd: &OwnedFd, socket: &Path) -> bool {
    use rustix::fs::inotify::{ReadFlags, Reader};
    use std::os::unix::ffi::OsStrExt;
    let name = socket.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    let mut removed = false;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut events = Reader::new(fd, &mut buf);
    // Until the queue is empty (EAGAIN) or fails.
    while let Ok(event) = events.next() {
        // An overflowed queue lost events: the caller looks at the file itself.
        removed |= event.file_name().is_some_and(|n| n.to_bytes() == name)
            || event.events().contains(ReadFlags::QUEUE_OVERFLOW);
    }
    removed
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn socket_removed(_fd: &OwnedFd, _socket: &Path) -> bool {
    false
}

/// Binds the socket again after its file was removed under the running primary; the new
/// listener joins the loop's poll set (the old one, unreachable now, stays in it until
/// the end: what waits in its backlog is still served).
pub(super) fn bind_again(mux: &Mux, st: &mut State) {
    let mut server = LocalServer::new();
    server.set_socket_options(mux.options);
    // AddressInUse: something is there again already; leave it.
    if server.listen(&mux.socket.to_string_lossy()).is_err() {
        return;
    }
    // The one it replaces (removed as well) goes.
    st.replacement = Some(server);
}
