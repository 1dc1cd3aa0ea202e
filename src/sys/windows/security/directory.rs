//! Directory DACLs: who may own a directory the crate trusts, who may write to it or
//! remove what it holds, and the directories the crate creates with explicit DACLs.

use std::io;
use std::os::windows::io::AsRawHandle;

use windows_sys::Win32::Foundation::HANDLE;

use super::super::token::{current_user, last_error, process_user};
use super::{from_sddl, pipe_security, PipeSecurity};
use crate::Sid;

/// SYSTEM, the Administrators group and TrustedInstaller: owners that can do anything to
/// this machine anyway, and so may own a directory this crate trusts.
const ADMIN_OWNERS: [&str; 3] =
    ["S-1-5-18", "S-1-5-32-544", "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"];

/// Whether `owner` may own a directory whose files this process creates and removes: this
/// user, or one of the machine's administrators ([`ADMIN_OWNERS`]; an elevated process's
/// files are owned by the Administrators group).
pub(crate) fn is_trusted_owner(owner: &Sid) -> bool {
    process_user().ok().as_ref() == Some(owner)
        || ADMIN_OWNERS.iter().any(|a| a.parse().ok().as_ref() == Some(owner))
}

/// What [`check_directory`] learns of a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirectoryFacts {
    pub(crate) owner: Sid,
    /// The volume serial number and file id: the directory's identity however its path is
    /// spelled.
    pub(crate) identity: (u32, u64),
}

/// The owner of directory `dir`: see [`check_directory`], without the DACL check.
pub(crate) fn directory_owner(dir: &std::path::Path) -> io::Result<Sid> {
    check_directory(dir, None).map(|f| f.owner)
}

/// Rights that let a SID change what a directory holds or who controls it: add a file, add
/// a subdirectory, delete a child, delete, write the DACL, take ownership, and the generic
/// write and all rights.
pub(crate) const DIRECTORY_WRITE_RIGHTS: u32 =
    0x0002 | 0x0004 | 0x0040 | 0x0001_0000 | 0x0004_0000 | 0x0008_0000 | 0x4000_0000 | 0x1000_0000;

/// SIDs that may hold write-type rights on a directory the crate trusts, besides this user
/// (and, in the System scope, the directory's owner): SYSTEM, Administrators,
/// TrustedInstaller, CREATOR OWNER and OWNER RIGHTS.
const TRUSTED_WRITERS: [&str; 5] = [
    "S-1-5-18",
    "S-1-5-32-544",
    "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464",
    "S-1-3-0",
    "S-1-3-4",
];

/// Opens directory `dir` without following a reparse point (a junction or a symbolic link
/// is refused: `InvalidData`, as is anything but a directory) and reads its owner and
/// identity. With `writers: Some(extra)`, also refuses (`PermissionDenied`) a DACL that
/// grants a write-type right ([`DIRECTORY_WRITE_RIGHTS`]) to anyone but this user, `extra`
/// and [`TRUSTED_WRITERS`], inherit-only entries included; and no DACL at all.
pub(crate) fn check_directory(dir: &std::path::Path, writers: Option<&[Sid]>) -> io::Result<DirectoryFacts> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::{
        GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION, FILE_FLAG_BACKUP_SEMANTICS,
        FILE_FLAG_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES, READ_CONTROL,
    };
    let not_plain =
        || io::Error::new(io::ErrorKind::InvalidData, "not a plain directory (a link or a junction?)");
    // By name first (the reparse attribute), then through the handle opened without
    // following one (which is what the checks below read).
    if std::fs::symlink_metadata(dir)?.file_type().is_symlink() {
        return Err(not_plain());
    }
    let handle = std::fs::OpenOptions::new()
        .access_mode(READ_CONTROL | FILE_READ_ATTRIBUTES)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(dir)?;
    let kind = handle.metadata()?.file_type();
    if kind.is_symlink() || !kind.is_dir() {
        return Err(not_plain());
    }
    // SAFETY: all-zero is a valid BY_HANDLE_FILE_INFORMATION (plain integers).
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `handle` is open; `info` is a valid out pointer.
    if unsafe { GetFileInformationByHandle(handle.as_raw_handle() as HANDLE, &mut info) } == 0 {
        return Err(last_error());
    }
    let identity =
        (info.dwVolumeSerialNumber, (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow));
    let sec = pipe_security(std::os::windows::io::AsHandle::as_handle(&handle))?;
    let owner =
        sec.owner.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the directory has no owner"))?;
    if let Some(extra) = writers {
        let me = process_user()?;
        let trusted = |sid: &Sid| {
            *sid == me
                || extra.contains(sid)
                || TRUSTED_WRITERS.iter().any(|t| t.parse().ok().as_ref() == Some(sid))
        };
        if let Some(who) = stranger_may_write(&sec, trusted) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("its DACL lets {who} add, delete or rename what it holds, or change its permissions"),
            ));
        }
    }
    Ok(DirectoryFacts { owner, identity })
}

/// Rights on a parent directory that let a SID remove or rename a directory in it (and so
/// put a junction in its place), or give itself that right: delete child, write the DACL,
/// take ownership, generic all.
pub(crate) const PARENT_WRITE_RIGHTS: u32 = 0x0040 | 0x0004_0000 | 0x0008_0000 | 0x1000_0000;

/// Refuses (`PermissionDenied`) a parent directory whose DACL lets anyone but this user
/// and [`TRUSTED_WRITERS`] remove or rename what it holds ([`PARENT_WRITE_RIGHTS`]). The
/// parent is opened following reparse points: it is where the directory is, however
/// reached.
pub(crate) fn check_parent_directory(dir: &std::path::Path) -> io::Result<()> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::{FILE_FLAG_BACKUP_SEMANTICS, READ_CONTROL};
    let handle = std::fs::OpenOptions::new()
        .access_mode(READ_CONTROL)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(dir)?;
    let sec = pipe_security(std::os::windows::io::AsHandle::as_handle(&handle))?;
    let me = process_user()?;
    let trusted =
        |sid: &Sid| *sid == me || TRUSTED_WRITERS.iter().any(|t| t.parse().ok().as_ref() == Some(sid));
    match stranger_may_remove(&sec, trusted) {
        Some(who) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("its DACL lets {who} delete or rename what it holds (a junction could take its place)"),
        )),
        None => Ok(()),
    }
}

/// Who, other than the `trusted`, a parent directory's DACL lets remove or rename what it
/// holds ([`PARENT_WRITE_RIGHTS`]); `None`: nobody.
pub(crate) fn stranger_may_remove(sec: &PipeSecurity, trusted: impl Fn(&Sid) -> bool) -> Option<String> {
    let mut sec = sec.clone();
    if let Some(entries) = &mut sec.dacl {
        entries.retain(|a| a.mask & PARENT_WRITE_RIGHTS != 0);
    }
    stranger_may_write(&sec, trusted)
}

/// Who, other than the `trusted`, a directory's DACL grants a write-type right
/// ([`DIRECTORY_WRITE_RIGHTS`]), inherit-only entries included; `None`: nobody.
pub(crate) fn stranger_may_write(sec: &PipeSecurity, trusted: impl Fn(&Sid) -> bool) -> Option<String> {
    let Some(entries) = &sec.dacl else { return Some(String::from("everyone (it has no DACL)")) };
    if let Some(a) = entries.iter().find(|a| a.mask & DIRECTORY_WRITE_RIGHTS != 0 && !trusted(&a.sid)) {
        return Some(a.sid.to_string());
    }
    (sec.other_grants != 0).then(|| String::from("SIDs in object or callback entries"))
}

/// Creates directory `dir` for the User and Session scopes with an explicit protected DACL:
/// owned by this user; full control for this user, SYSTEM and Administrators, inherited by
/// what is created in it; nothing inherited from the parent (a folder under `C:\` would
/// otherwise let every authenticated user modify it).
pub(crate) fn create_private_dir(dir: &std::path::Path) -> io::Result<()> {
    let user = process_user()?;
    create_dir_with(dir, &format!("O:{user}D:P(A;OICI;FA;;;{user})(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"))
}

/// Creates directory `dir` for the System scope: owned by this user; full control for this
/// user, SYSTEM and administrators; read, traverse and lock (`FILE_GENERIC_READ |
/// FILE_GENERIC_EXECUTE`) for everyone else, inherited by what is created in it. Not the
/// inherited `%ProgramData%` rights, which let every user add files to a directory.
pub(crate) fn create_shared_dir(dir: &std::path::Path) -> io::Result<()> {
    let user = current_user()?;
    create_dir_with(
        dir,
        &format!("O:{user}D:P(A;OICI;FA;;;{user})(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;WD)"),
    )
}

/// Creates directory `dir` with the security descriptor `sddl`.
pub(crate) fn create_dir_with(dir: &std::path::Path, sddl: &str) -> io::Result<()> {
    use std::os::windows::ffi::OsStrExt;
    let sd = from_sddl(sddl)?;
    let attrs =
        windows_sys::Win32::Security::SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<windows_sys::Win32::Security::SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor:
                interprocess::os::windows::security_descriptor::AsSecurityDescriptor::as_sd(&sd).cast_mut(),
            bInheritHandle: 0,
        };
    let wide: Vec<u16> = dir.as_os_str().encode_wide().chain([0]).collect();
    // SAFETY: `wide` is NUL-terminated; `attrs` points to `sd`, alive for the call.
    if unsafe { windows_sys::Win32::Storage::FileSystem::CreateDirectoryW(wide.as_ptr(), &attrs) } == 0 {
        return Err(last_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use interprocess::os::windows::security_descriptor::AsSecurityDescriptor;

    use super::super::*;
    use super::*;

    /// The directory DACL decisions (the parent's too): a write-type right (add file, add subdirectory, delete
    /// child, delete, write DAC, write owner, generic write, generic all) for anyone but
    /// the trusted SIDs is refused, inherit-only entries included (they are in the DACL as
    /// read); read rights are not; no DACL is. (Wine shows a directory's DACL as its Unix
    /// mode, so the whole path is a written test in `tests/windows.rs`.)
    #[test]
    fn directory_dacl_decision() {
        let me = current_user().unwrap();
        let stranger: Sid = "S-1-5-21-1111-2222-3333-4444".parse().unwrap();
        let trusted = |sid: &Sid| *sid == me || sid.to_string() == "S-1-5-18";
        let sec = |dacl: Option<Vec<Allowed>>, other_grants| PipeSecurity {
            owner: Some(me),
            group: None,
            dacl,
            other_entries: other_grants,
            other_grants,
        };
        let mine = Allowed { sid: me, mask: FILE_ALL_ACCESS };
        for right in [0x2, 0x4, 0x40, 0x1_0000, 0x4_0000, 0x8_0000, 0x4000_0000, 0x1000_0000] {
            let dacl = vec![mine, Allowed { sid: stranger, mask: right | 0x1200a9 }];
            assert_eq!(
                stranger_may_write(&sec(Some(dacl), 0), trusted),
                Some(stranger.to_string()),
                "{right:#x}"
            );
        }
        let read = vec![mine, Allowed { sid: stranger, mask: 0x1200a9 }];
        assert_eq!(stranger_may_write(&sec(Some(read.clone()), 0), trusted), None);
        assert!(stranger_may_write(&sec(Some(read), 1), trusted).is_some(), "a callback entry's grant");
        assert!(stranger_may_write(&sec(None, 0), trusted).is_some(), "no DACL");
        // Inherit-only entries are read back with the others: the SDDL form is checked too.
        let sd = from_sddl(&format!("O:{me}D:P(A;;FA;;;{me})(A;OICIIO;0x40;;;WD)")).unwrap();
        // SAFETY: `sd` is a valid descriptor, alive for the borrow.
        let b = unsafe { BorrowedSecurityDescriptor::from_ptr(sd.as_sd()) };
        let (dacl, _) = b.dacl().unwrap().expect("a DACL");
        // SAFETY: the DACL lives inside `sd`.
        let (entries, _, other_grants) = unsafe { entries_of(dacl.cast(), ACCESS_ALLOWED_ACE_TYPE) }.unwrap();
        let dacl = entries.into_iter().map(|(mask, sid)| Allowed { sid, mask }).collect();
        assert_eq!(stranger_may_write(&sec(Some(dacl), other_grants), trusted), Some("S-1-1-0".into()));

        // A parent: adding files or subdirectories is harmless there (as in %ProgramData%),
        // removing or renaming children is not, nor taking the right to.
        let add = vec![mine, Allowed { sid: stranger, mask: 0x1200a9 | 0x2 | 0x4 }];
        assert_eq!(stranger_may_remove(&sec(Some(add), 0), trusted), None);
        for right in [0x40, 0x4_0000, 0x8_0000, 0x1000_0000] {
            let dacl = vec![mine, Allowed { sid: stranger, mask: right | 0x1200a9 }];
            assert_eq!(
                stranger_may_remove(&sec(Some(dacl), 0), trusted),
                Some(stranger.to_string()),
                "{right:#x}"
            );
        }
    }
}
