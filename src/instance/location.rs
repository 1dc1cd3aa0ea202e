//! Where the lock file and the socket live: per user by default (the runtime directory,
//! else a private directory in the cache directory), with the Flatpak and Snap rules; the
//! README's "Where the files live" has the table. The platform decides the directories
//! and names (`sys::user_dir`, `sys::server_name`, ...); this module, what a scope asks.

use std::path::{Path, PathBuf};

use crate::name::MADE_UP;
use crate::Error;

/// Who shares one primary instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// One primary per user (the default). The files live in `$XDG_RUNTIME_DIR` (inside
    /// Flatpak, `$XDG_RUNTIME_DIR/app/$FLATPAK_ID`), else in a private 0700 directory
    /// `solo-instance-<uid>` in the user's cache directory (`$XDG_CACHE_HOME`, else
    /// `~/.cache`; on macOS under the user's own `$TMPDIR`), else under the temp dir; the
    /// socket is user-only and clients of another uid are dropped before a byte is read.
    /// On Windows the lock lives in `%LOCALAPPDATA%\solo-instance`; the primary's pipe has a
    /// fresh random name, which it publishes in `<app_id>.pipe` beside the lock; its DACL
    /// allows that user only and it is labelled at the primary's integrity level; a launch
    /// ignores a pipe another user owns or one below its own integrity level, and refuses a
    /// primary in another Terminal Services session; the primary drops clients of another
    /// SID, or below its integrity level, before reading. An app inside an AppContainer
    /// cannot be a primary others reach, nor reach one.
    #[default]
    User,
    /// One primary per user and login session (`$XDG_SESSION_ID`; on Windows the Terminal
    /// Services session; on systems without one, the same as [`User`](Self::User)).
    Session,
    /// One primary for the whole machine, shared by all users, and anyone may connect. On
    /// Linux it is an abstract socket, `solo-instance-system/<app_id>`, and a lock file
    /// any user may lock, `/tmp/solo-instance-system@<app_id>.lock`: the primary holds
    /// both, and both go with its process, so any user can take over after another user's
    /// primary died. A launch in another network namespace (a container, `unshare -n`)
    /// that shares `/tmp` cannot reach the primary's name: it fails with an error saying
    /// so, and never becomes a second primary. Should the lock file be removed under the
    /// running primary (by its creator, root or a tmp cleaner), the primary locks a fresh
    /// one at once (an inotify watch on the file itself, not on `/tmp`; once a second
    /// without inotify); if a launch in another network namespace locked it first, the
    /// primary steps down ([`Health::SteppedDown`](crate::Health::SteppedDown)).
    /// Elsewhere the files live
    /// in `/tmp/solo-instance-system` (mode 1777, owned by root or this user; `%ProgramData%`
    /// on Windows). Any local user may be the primary and read the launches of all: ask for
    /// it only when that is what you mean. On Windows the pipe's name is hashed from the
    /// directory's identity (volume and file id), and `%ProgramData%` is where Windows
    /// keeps it (`SHGetKnownFolderPath`), whatever the environment says.
    System,
}

/// The files of one app id in one scope.
#[derive(Clone, Debug)]
pub(crate) struct Location {
    pub(crate) lock: PathBuf,
    /// The name launches connect to (`sys::server_name`): a socket path on Unix (an
    /// abstract name in Linux's System scope); on Windows the file that publishes the
    /// primary's pipe (see `published`), or the System scope's pipe name.
    pub(crate) socket: PathBuf,
    /// The socket is in Linux's abstract namespace (see [`Scope::System`]): the primary
    /// binds the name and holds `lock`, a file in `/tmp` that any user may lock, which
    /// decides across network namespaces.
    pub(crate) abstract_ns: bool,
}

/// Checks an app id: 1 to 200 bytes of ASCII letters, digits, `.`, `_` and `-`, not
/// starting with `.` or `-`. Reverse-DNS ids (`org.example.Editor`) fit.
pub(crate) fn validate_app_id(id: &str) -> Result<(), Error> {
    let why = if id.is_empty() {
        "it is empty"
    } else if id.len() > 200 {
        "it is longer than 200 bytes"
    } else if id.starts_with(['.', '-']) {
        "it starts with '.' or '-'"
    } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        "only ASCII letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidAppId(format!("{id:?}: {why}").into()))
}

/// A name's suffix for the scope: the login session's for [`Scope::Session`] (none
/// without one: then Session is User), none for the others.
fn scope_suffix(scope: Scope) -> String {
    match scope {
        Scope::Session => {
            crate::sys::login_session().map(|id| format!("{MADE_UP}session-{id}")).unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// Resolves (and creates, privately) the directory and names for `app_id`.
pub(crate) fn resolve(app_id: &str, scope: Scope, dir: Option<&Path>) -> Result<Location, Error> {
    // The System scope on Linux has no directory and no socket file: an abstract name, and
    // a lock file in `/tmp` that decides across network namespaces (see
    // `sys::system_abstract`).
    if scope == Scope::System && dir.is_none() {
        if let Some((lock, socket)) = crate::sys::system_abstract(app_id) {
            return Ok(Location { lock, socket, abstract_ns: true });
        }
    }
    let system = scope == Scope::System;
    let base = match dir {
        Some(d) => {
            crate::sys::ensure_dir(d, system)?;
            d.to_path_buf()
        }
        None => default_dir(scope)?,
    };
    let mut stem = app_id.to_owned();
    stem.push_str(&scope_suffix(scope));
    let mut lock_name = String::with_capacity(stem.len() + 5);
    lock_name.push_str(&stem);
    lock_name.push_str(".lock");
    let lock = crate::name::file_in(&base, &lock_name);
    let socket = crate::sys::server_name(&base, &stem, system)?;
    Ok(Location { socket, lock, abstract_ns: false })
}

/// The scope's own directory, made (privately) if missing and checked.
fn default_dir(scope: Scope) -> Result<PathBuf, Error> {
    let dir = match scope {
        // A fixed path: $TMPDIR is per user on macOS (and with pam_tmpdir).
        Scope::System => crate::sys::system_base().join("solo-instance-system"),
        Scope::User | Scope::Session => crate::sys::user_dir()?,
    };
    crate::sys::ensure_dir(&dir, scope == Scope::System)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids() {
        for ok in ["org.example.Editor", "a", "my_app-2"] {
            assert!(validate_app_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", "ü", &"x".repeat(201)] {
            assert!(matches!(validate_app_id(bad), Err(Error::InvalidAppId(_))), "{bad}");
        }
    }

    /// Every name the crate makes up carries [`MADE_UP`] (the platform's tests check
    /// that), which no app id has: a shortened socket name, the fallback directory's, a
    /// scope's suffix (as `scope_suffix` makes it), a shortened System-scope name.
    #[test]
    fn made_up_names_are_no_app_id() {
        for name in [format!("{MADE_UP}0123456789abcdef"), format!("org.x{MADE_UP}session-7")] {
            assert!(validate_app_id(&name).is_err(), "{name} is a valid app id");
        }
    }
}
