//! Unix: the private directory. Made 0700 (1777 for the System scope) and checked: a
//! directory, this user's (the System scope's: root's or this user's), closed to others
//! for writing (or sticky). [`repair_dir`] makes one again that a cleaner removed under a
//! running primary.

use std::io;
use std::path::Path;

use super::FileId;
use crate::Error;

/// Makes `dir` and its missing parents, each 0700 (as `DirBuilder`'s recursive create,
/// through rustix): one that exists already is left as it is, for the caller to check.
fn mkdir_all(dir: &Path) -> io::Result<()> {
    let mode = rustix::fs::Mode::from_raw_mode(0o700);
    match rustix::fs::mkdir(dir, mode) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(rustix::io::Errno::NOENT) => {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).ok_or(io::ErrorKind::NotFound)?;
            mkdir_all(parent)?;
            match rustix::fs::mkdir(dir, mode) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates `dir` if missing (0700; 1777 for the System scope, `system`) and refuses one that is not
/// safe: owned by another user, or open to others for writing without the sticky bit.
pub(crate) fn ensure_dir(dir: &Path, system: bool) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let mode = if system { 0o1777 } else { 0o700 };
    // Usually there already: one lstat, and mkdir only when it is missing.
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match mkdir_all(dir) {
                Ok(()) => {}
                Err(e) => return Err(Error::Io(crate::PathError::wrap("cannot create", dir, e))),
            }
            std::fs::symlink_metadata(dir)
        }
        r => r,
    }
    .map_err(|e| Error::Io(crate::PathError::wrap("", dir, e)))?;
    if !meta.is_dir() {
        return Err(Error::Insecure(format!("{} is not a directory", dir.display()).into()));
    }
    let uid = super::euid();
    if system {
        if meta.uid() != uid && meta.uid() != 0 {
            return Err(Error::Insecure(
                format!("{} is owned by uid {}, neither root nor this user", dir.display(), meta.uid())
                    .into(),
            ));
        }
        if meta.uid() == uid && meta.mode() & 0o7777 != mode {
            rustix::fs::chmod(dir, rustix::fs::Mode::from_raw_mode(mode as rustix::fs::RawMode))
                .map_err(io::Error::from)?;
        }
        let m = std::fs::symlink_metadata(dir)?.mode();
        if m & 0o002 != 0 && m & 0o1000 == 0 {
            return Err(Error::Insecure(
                format!("{} is world-writable without the sticky bit", dir.display()).into(),
            ));
        }
        return Ok(());
    }
    if meta.uid() != uid {
        return Err(Error::Insecure(
            format!("{} is owned by uid {}, not by this user (uid {uid})", dir.display(), meta.uid()).into(),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::Insecure(
            format!("{} is writable by others (mode {:o})", dir.display(), meta.mode() & 0o7777).into(),
        ));
    }
    Ok(())
}

/// Makes `dir` again if it is missing (not a shared one: that belongs to whoever made it)
/// and checks it as the start does: a directory, this user's, closed to others (shared: root's
/// or this user's, sticky if others may write). `Ok(None)`: made, and removed again before
/// it could be checked (a cleaner striking twice): look again.
pub(crate) fn repair_dir(dir: &Path, shared: bool) -> Result<Option<FileId>, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !shared => {
            match rustix::fs::mkdir(dir, rustix::fs::Mode::from_raw_mode(0o700)).map_err(io::Error::from) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(format!(
                        "the directory {} was removed and cannot be made again: {e}",
                        dir.display()
                    ))
                }
            }
            match std::fs::symlink_metadata(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                r => r,
            }
        }
        r => r,
    }
    .map_err(|e| format!("the directory {}: {e}", dir.display()))?;
    let me = super::euid();
    let mode = meta.mode();
    let safe = meta.is_dir()
        && if shared {
            (meta.uid() == me || meta.uid() == 0) && (mode & 0o002 == 0 || mode & 0o1000 != 0)
        } else {
            meta.uid() == me && mode & 0o022 == 0
        };
    if !safe {
        return Err(format!(
            "the directory {} was replaced by one that is not safe (uid {}, mode {:o})",
            dir.display(),
            meta.uid(),
            mode & 0o7777
        ));
    }
    Ok(Some((meta.dev(), meta.ino())))
}

/// Device and inode of the file at `path` (not followed if a symlink): a file made again
/// under the same name is another.
pub(crate) fn file_id(path: &Path) -> io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}
