//! Windows: the private directory. Created with an explicit, protected DACL and checked:
//! not a link, this user's or the administrators' (the System scope's may be any user's),
//! and closed to others for adding, removing or renaming what is in it.

use std::io;
use std::path::Path;

use super::FileId;
use crate::Error;

/// Creates `dir` if missing, with an explicit protected DACL (the System scope's,
/// `system`, shared), and refuses one that is not safe: a link, another user's, or one
/// whose DACL lets others rearrange it.
pub(crate) fn ensure_dir(dir: &Path, system: bool) -> Result<(), Error> {
    let io_err = |e: io::Error| Error::Io(crate::PathError::wrap("", dir, e));
    if std::fs::symlink_metadata(dir).is_err() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        // Created with an explicit, protected DACL, never what the parent would pass on.
        // The System scope's directory is shared: others may read (and lock) what is in it
        // but not add, replace or remove anything. The user's own: this user, SYSTEM and
        // Administrators only.
        let made = if system { super::create_shared_dir(dir) } else { super::create_private_dir(dir) };
        match made {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::Io(crate::PathError::wrap("cannot create", dir, e))),
        }
    }
    // Not a junction or a symbolic link (which could lead this process's writes and removals
    // anywhere), and owned by this user or by the machine's administrators: a directory
    // another user owns is theirs to rearrange under us. Its DACL must not let anyone else
    // add, delete or rename what is in it (a held lock deleted, the directory swapped for a
    // junction, a hard link planted as the pid file): in the System scope its owner, who
    // may be another user, is the exception.
    let insecure = |e: io::Error| match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::PermissionDenied => {
            Error::Insecure(format!("{}: {e}", dir.display()).into())
        }
        _ => io_err(e),
    };
    let owner = super::directory_owner(dir).map_err(insecure)?;
    // The System scope's directory may be another user's (the first to launch made it):
    // then the lock file there is only opened, never created or written (see `lock`).
    if !system && !super::is_trusted_owner(&owner) {
        return Err(Error::Insecure(
            format!(
                "{} is owned by {owner}, neither this user nor the machine's administrators",
                dir.display()
            )
            .into(),
        ));
    }
    let extra: &[crate::Sid] = if system { std::slice::from_ref(&owner) } else { &[] };
    super::check_directory(dir, Some(extra)).map_err(insecure)?;
    // Nor may anyone else rename or delete the directory itself through its parent (and
    // put a junction in its place): no delete-child right on the parent for others.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        super::check_parent_directory(parent).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => Error::Insecure(format!("{}: {e}", parent.display()).into()),
            _ => Error::Io(crate::PathError::wrap("", parent, e)),
        })?;
    }
    Ok(())
}

/// Windows has no removal watch, and needs no repair: the primary holds its lock file open
/// without delete sharing, so neither it nor its directory can be removed. Returns the
/// directory's identity, or why it cannot be read.
pub(crate) fn repair_dir(dir: &Path, _shared: bool) -> Result<Option<FileId>, String> {
    file_id(dir).map(Some).map_err(|e| format!("the directory {}: {e}", dir.display()))
}

/// Volume serial number and file index of the file or directory at `path` (not followed
/// if a reparse point): one made again under the same name is another.
pub(crate) fn file_id(path: &Path) -> io::Result<FileId> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_SHARE_DELETE, FILE_SHARE_READ,
        FILE_SHARE_WRITE,
    };
    let file = std::fs::OpenOptions::new()
        .access_mode(0)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)?;
    super::handle_file_id(&file)
}
