//! [`Health`]: what [`Primary::health`](super::super::Primary::health) says: whether the
//! primary is still the primary, as its loop keeps its files in place (see `watch`).

/// Whether a [`Primary`](crate::Primary) is still the primary, and how it stays reachable when a cleaner
/// removes its files: see [`Primary::health`](crate::Primary::health).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Its directory is watched (inotify on Linux; a kqueue on macOS, where this is
    /// unproven: written and built, never run by the crate's tests): a socket file, lock
    /// file or directory
    /// removed under the running primary is put back at once (the directory 0700, a fresh
    /// lock, then the socket), so launches keep reaching it. The watch is set 100 ms after
    /// the start. The System scope on Linux (an abstract name, which nothing removes)
    /// watches its lock file in `/tmp` itself instead, from the first turn: removed or
    /// replaced, a fresh one is locked at once, so a launch in another network namespace
    /// still finds it held.
    Watched,
    /// No watch could be set (the text says why: most often the user's inotify instances
    /// are used up, `/proc/sys/fs/inotify/max_user_instances`): the files are looked at
    /// every second while the primary serves instead (a removed socket is bound again
    /// within a second, and launches wait for it within their timeout), and the watch is
    /// tried again each time. The primary then wakes once a second while idle.
    Checked(String),
    /// Nothing is watched: Windows' pipes cannot be removed, and the BSDs have no watch (a
    /// removed socket leaves launches failing with `NoReply` until the primary exits).
    Unwatched,
    /// Not the primary any more (the text says why): its files were removed and another
    /// process locked a fresh lock file first (for the System scope on Linux: a launch in
    /// another network namespace, which held it for good), or they could not be put back. It serves
    /// nothing more: the receive calls say it stopped ([`RecvError`](crate::RecvError)), and the launches it held (queued
    /// for the app too) were told to start over, so they reach the new primary. A request
    /// the app holds may still be answered. Drop it; nothing else of it is of use.
    SteppedDown(String),
}
