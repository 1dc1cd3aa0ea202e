//! Windows: where a single-instance app's files live. The lock in
//! `%LOCALAPPDATA%\solo-instance` (the System scope's in `%ProgramData%`); the name to
//! connect to is the file that publishes the primary's pipe, or the System scope's fixed
//! pipe name.

use std::io;
use std::path::{Path, PathBuf};

use crate::name::short_hash;
use crate::Error;

/// The System scope's lock file and abstract socket name: Linux only; Windows' System
/// scope has a directory (`%ProgramData%\solo-instance-system`).
pub(crate) fn system_abstract(_app_id: &str) -> Option<(PathBuf, PathBuf)> {
    None
}

/// The login session, for the Session scope: the Terminal Services session this process
/// runs in (one per login, fast user switching and remote desktop included).
pub(crate) fn login_session() -> Option<String> {
    super::session_id().map(|id| id.to_string())
}

/// The name launches connect to, for the lock `<stem>.lock` in `base`. User and Session
/// scopes: the file in which the primary publishes its pipe's
/// name, `<stem>.pipe` beside the lock (the primary creates its pipe under a fresh random
/// name, which no one can squat first; see `published`). System scope, where any user
/// may be the primary and the directory may not be writable by this one: a fixed pipe
/// name, `\\.\pipe\solo-instance.system.<hash>.<stem>`, the hash taken of the directory's
/// identity (volume serial number and file id), not of how its path is spelled, so that
/// every spelling of one directory (case, slashes, `\\?\`, a trailing separator) finds
/// the same pipe.
pub(crate) fn server_name(base: &Path, stem: &str, system: bool) -> Result<PathBuf, Error> {
    if !system {
        return Ok(base.join(format!("{stem}.pipe")));
    }
    let facts =
        super::check_directory(base, None).map_err(|e| Error::Io(crate::PathError::wrap("", base, e)))?;
    let (volume, file) = facts.identity;
    Ok(pipe_name("system", &format!("{volume:08x}:{file:016x}"), stem))
}

/// `\\.\pipe\solo-instance.<user>.<hash of dir>.<stem>`, or with the stem hashed in too
/// where that would pass the 256 characters Windows allows a pipe name.
fn pipe_name(user: &str, base: &str, stem: &str) -> PathBuf {
    let tag = short_hash(&format!("{base}|{user}"));
    let full = format!(r"\\.\pipe\solo-instance.{user}.{tag}.{stem}");
    if full.encode_utf16().count() <= 256 {
        return PathBuf::from(full);
    }
    PathBuf::from(format!(r"\\.\pipe\solo-instance.{user}.{}", short_hash(&format!("{base}|{user}|{stem}"))))
}

/// `%ProgramData%` as Windows knows it (`SHGetKnownFolderPath`), not as the environment
/// says: another program (or the user's own environment) could point the variable at a
/// directory of its choosing.
pub(crate) fn system_base() -> PathBuf {
    super::program_data().unwrap_or_else(|_| PathBuf::from(r"C:\ProgramData"))
}

/// The User and Session scopes' directory: `%LOCALAPPDATA%\solo-instance`.
pub(crate) fn user_dir() -> Result<PathBuf, Error> {
    directories::BaseDirs::new()
        .map(|b| b.data_local_dir().join("solo-instance"))
        .ok_or_else(|| Error::Io(io::Error::new(io::ErrorKind::NotFound, "no local app data directory")))
}
