//! Windows: what a launch checks of the primary it connected to, before a byte is written
//! (the pipe's owner, integrity label and session), what a refused connect means, and the
//! right to take the foreground, handed on.

use std::io::{self, Write};
use std::time::Instant;

use super::{check_server, current_user, elevated_message, in_app_container, own_integrity, peer_sid};
use crate::sys::ServerCheck;
use crate::LocalSocket;

/// What a server is called in messages.
pub(crate) const SERVER_KIND: &str = "pipe";

/// How a launch connects: as asked, blocking (each read or write is bounded by an
/// [`IoDeadline`](super::IoDeadline)).
pub(crate) fn launch_options(options: crate::ConnectOptions) -> crate::ConnectOptions {
    options
}

/// Checks the primary at the server end of `socket`, outside the System scope: its owner,
/// integrity label and Terminal Services session (see [`check_server`]).
pub(crate) fn check_primary(socket: &LocalSocket) -> ServerCheck {
    check_server(socket.as_stream(), true)
}

/// The System scope: whether the pipe's owner is this process's user. Only the user who
/// created a pipe (or a privileged process) can make a SID its owner, so another user's
/// pipe shows that user's SID. Unknown counts as another.
pub(crate) fn served_by_this_user(socket: &LocalSocket) -> bool {
    let owner = peer_sid(socket.as_stream());
    matches!((owner, current_user()), (Some(o), Ok(me)) if o == me)
}

/// What a pipe that refused this launch's connect (`ERROR_ACCESS_DENIED`) means, outside
/// the System scope. Our own primary's pipe lets us in, unless it runs elevated and we do
/// not (it published its level, `published_level`): then Windows' integrity rule keeps us
/// out, and that is said at once (`Unusable`). Any other refusal is another user's pipe at
/// an old or guessed name (or this launch is in an AppContainer): not our primary
/// (`Stranger`), so the lock decides. Each says why, naming the pipe.
pub(crate) fn refused(
    name: &str,
    published_level: Option<u32>,
    lock_is_held: impl FnOnce() -> bool,
) -> Option<ServerCheck> {
    if let (Some(level), Ok(own)) = (published_level, own_integrity()) {
        // Only while a primary holds the lock: else the file is a dead (crashed) elevated
        // primary's, and the pipe that refuses us at its name, which anyone can list, is a
        // squatter's: the lock decides, as for any stranger's pipe.
        if level > own && lock_is_held() {
            let why = elevated_message(level, own);
            return Some(ServerCheck::Unusable(format!("the pipe {name} is {why}")));
        }
    }
    Some(ServerCheck::Stranger(if in_app_container() {
        format!(
            "the pipe {name} refuses this launch: it runs inside an AppContainer, which a \
             primary's pipe (this user's only) does not admit"
        )
    } else {
        format!("the pipe {name} refuses this user: another user created it")
    }))
}

/// Whether a primary that published integrity level `level` runs above this process (an
/// elevated primary, which refuses a less trusted launch's connect).
pub(crate) fn elevated_above_us(level: u32) -> bool {
    own_integrity().is_ok_and(|own| level > own)
}

/// Windows gives the right to take the foreground to the launch the user just started;
/// this hands it on to the primary serving `socket`, so that it can raise its window for
/// this request (see [`allow_foreground`](super::allow_foreground)).
pub(crate) fn hand_foreground(socket: &LocalSocket) {
    if let Some(pid) = super::server_pid(socket.as_stream()) {
        super::allow_foreground(pid);
    }
}

/// Whether the server's file at `name` is gone: a pipe name has no file to look at first.
pub(crate) fn server_file_gone(_name: &std::path::Path) -> bool {
    false
}

/// Writes all of `buf` before `deadline`: a blocking write bounded by an
/// [`IoDeadline`](super::IoDeadline) (named pipes have no write timeout).
pub(crate) fn write_all_until(socket: &LocalSocket, buf: &[u8], deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    // Refused by interprocess on Windows; asked all the same, as on any socket.
    let _ = socket.set_write_timeout(Some(left.max(std::time::Duration::from_millis(1))));
    let _deadline = super::IoDeadline::arm(socket.as_stream(), deadline);
    (&*socket).write_all(buf)
}
