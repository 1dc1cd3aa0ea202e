//! Security descriptors on Windows: the one a pipe is created with (Qt's, from
//! [`SocketOptions`]), the System scope's pipe and directory, and reading an object's back
//! (its owner, group, DACL and integrity label), which the peer and directory checks use.
//!
//! Qt's `QLocalServerPrivate::addListener` (qtbase `src/network/socket/qlocalserver_win.cpp`,
//! the same in Qt 5.15 and Qt 6) builds, when any access bit is set, an absolute security
//! descriptor whose owner is the token's user, whose group is the token's primary group, and
//! whose DACL allows `FILE_ALL_ACCESS` to the user (USER_ACCESS), the primary group
//! (GROUP_ACCESS) and Everyone (OTHER_ACCESS), in that order. [`pipe_security_descriptor`]
//! builds the same, with one difference in how, not in what: see there.

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle};
use std::ptr;

use interprocess::os::windows::security_descriptor::{
    AsSecurityDescriptorExt, BorrowedSecurityDescriptor, SecurityDescriptor,
};
use windows_sys::Win32::Foundation::{LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1, SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    AclSizeInformation, GetAce, GetAclInformation, ACCESS_ALLOWED_ACE, ACL, ACL_SIZE_INFORMATION,
    DACL_SECURITY_INFORMATION, GROUP_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
    PSID,
};
use windows_sys::Win32::System::SystemServices::ACCESS_ALLOWED_ACE_TYPE;

use crate::{Sid, SocketOptions};

/// `FILE_ALL_ACCESS`, what Qt grants each allowed SID.
#[cfg(test)]
pub(crate) const FILE_ALL_ACCESS: u32 = windows_sys::Win32::Storage::FileSystem::FILE_ALL_ACCESS;

use super::token::{
    current_primary_group, current_user, label_rid, last_error, process_user, sid_at, MEDIUM_INTEGRITY,
};

/// The security descriptor a pipe gets for `options`.
///
/// With `qt` (Qt's exact behaviour, asked for with
/// [`LocalServer::set_qt_windows_security`](crate::LocalServer::set_qt_windows_security)):
/// Qt's, or `None` with no access bit (Windows' default descriptor then, as Qt leaves it,
/// which lets Everyone and Anonymous read). Owner: the token's user; DACL:
/// `FILE_ALL_ACCESS` for the user, the primary group and Everyone, as the bits ask, in Qt's
/// order.
///
/// Without `qt` (the default): with no access bit, full control for the user, SYSTEM and
/// Administrators only (what a socket others cannot connect to is on Unix); with access
/// bits, `FILE_ALL_ACCESS` for the user, and for the primary group and Everyone only what
/// a client needs ([`CLIENT_ACCESS`]): Qt's `FILE_ALL_ACCESS` would let them create
/// instances of the pipe (and so receive some of its clients) and change its owner and DACL.
///
/// The group: Qt sets the token's primary group explicitly; this descriptor leaves it out
/// and Windows fills in the very same SID (a new object's default group is its creator's
/// primary group). Why: interprocess 2.4.7 copies the descriptor for every pipe instance
/// after the first (`try_clone.rs`), and that copy writes the group SID over the owner (it
/// calls `set_owner` for both), so with a group set, every later instance would be owned by
/// the group. Without one the copy is exact. The tests read the owner and group back from a
/// later instance.
pub(crate) fn pipe_security_descriptor(
    options: SocketOptions,
    qt: bool,
) -> io::Result<Option<SecurityDescriptor>> {
    let user = current_user()?;
    if !options.intersects(SocketOptions::WORLD_ACCESS) {
        if qt {
            return Ok(None);
        }
        return from_sddl(&format!("O:{user}D:P(A;;FA;;;{user})(A;;FA;;;SY)(A;;FA;;;BA)")).map(Some);
    }
    let others = if qt { String::from("FA") } else { format!("{CLIENT_ACCESS:#010x}") };
    let mut sddl = format!("O:{user}D:");
    if options.contains(SocketOptions::USER_ACCESS) {
        sddl += &format!("(A;;FA;;;{user})");
    }
    if options.contains(SocketOptions::GROUP_ACCESS) {
        sddl += &format!("(A;;{others};;;{})", current_primary_group()?);
    }
    if options.contains(SocketOptions::OTHER_ACCESS) {
        sddl += &format!("(A;;{others};;;WD)");
    }
    from_sddl(&sddl).map(Some)
}

/// The descriptor of a `SingleInstance` primary's pipe outside the System scope: owned by
/// this user, full control for this user only (protected: nothing inherited), and labelled
/// at this process's integrity level with no-write-up, so that Windows itself keeps a
/// less trusted process (a non-elevated one, when the primary is elevated; a sandboxed
/// one) from writing to it.
pub(crate) fn private_pipe_sddl() -> io::Result<String> {
    let user = current_user()?;
    let level = super::token::own_integrity()?;
    Ok(format!("O:{user}D:P(A;;FA;;;{user})S:(ML;;NW;;;S-1-16-{level})"))
}

/// What a client's end of a pipe needs, and all [`shared_pipe_sddl`] grants others:
/// `FILE_GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_EA | FILE_WRITE_ATTRIBUTES`. Not
/// `GENERIC_WRITE`: that includes `FILE_APPEND_DATA`, which on a pipe is
/// `FILE_CREATE_PIPE_INSTANCE`, the right to add server instances to the pipe and so to
/// receive some of its clients.
pub(crate) const CLIENT_ACCESS: u32 = 0x0012_019B;

/// The descriptor of a pipe every local user may use but only its creator may serve: the
/// System scope's. Owner and `FILE_ALL_ACCESS` for this user; [`CLIENT_ACCESS`] for
/// Everyone, so another user can connect but cannot add an instance of their own to the
/// pipe (which would hand them some of the launches). Qt's OTHER_ACCESS grants Everyone
/// `FILE_ALL_ACCESS`, instance creation included.
pub(crate) fn shared_pipe_sddl() -> io::Result<String> {
    let user = current_user()?;
    Ok(format!("O:{user}D:(A;;FA;;;{user})(A;;{CLIENT_ACCESS:#010x};;;WD)"))
}

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

/// A security descriptor from its string form (SDDL), owned by interprocess's type.
pub(crate) fn from_sddl(sddl: &str) -> io::Result<SecurityDescriptor> {
    let wide: Vec<u16> = sddl.encode_utf16().chain([0]).collect();
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `wide` is NUL-terminated; on success `sd` receives a self-relative descriptor
    // allocated with LocalAlloc, freed below.
    if unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            wide.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            ptr::null_mut(),
        )
    } == 0
    {
        return Err(last_error());
    }
    // SAFETY: `sd` is a valid descriptor that lives until the LocalFree below; `to_owned_sd`
    // copies it (owner, DACL) into an absolute descriptor that owns its parts.
    let owned = unsafe { BorrowedSecurityDescriptor::from_ptr(sd.cast_const()) }.to_owned_sd();
    // SAFETY: allocated by the conversion above and not used after this.
    unsafe { LocalFree(sd) };
    owned
}

/// The entries of type `kind` in `acl`, as (mask, SID), and how many entries of other types
/// it holds. `kind` is one whose entries are laid out as `ACCESS_ALLOWED_ACE` (header,
/// mask, SID at `SidStart`): access-allowed and mandatory-label entries are.
///
/// # Safety
/// `acl` is a valid ACL, alive for the call.
unsafe fn entries_of(acl: *const ACL, kind: u32) -> io::Result<Entries> {
    let mut info = ACL_SIZE_INFORMATION { AceCount: 0, AclBytesInUse: 0, AclBytesFree: 0 };
    // SAFETY: `acl` is valid (the caller's promise); `info` is the structure the class names.
    if unsafe {
        GetAclInformation(
            acl,
            (&mut info as *mut ACL_SIZE_INFORMATION).cast(),
            std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
            AclSizeInformation,
        )
    } == 0
    {
        return Err(last_error());
    }
    let (mut found, mut other, mut other_grants) = (Vec::new(), 0, 0);
    for i in 0..info.AceCount {
        let mut ace: *mut core::ffi::c_void = ptr::null_mut();
        // SAFETY: `i` is below the ACL's entry count; `ace` receives a pointer into the ACL.
        if unsafe { GetAce(acl, i, &mut ace) } == 0 {
            return Err(last_error());
        }
        // SAFETY: every entry starts with an ACE_HEADER; an entry of type `kind` has the
        // layout of ACCESS_ALLOWED_ACE, its SID at `SidStart`, within the entry.
        unsafe {
            let a = ace.cast::<ACCESS_ALLOWED_ACE>();
            let ty = u32::from((*a).Header.AceType);
            if ty != kind {
                other += 1;
                // Compound, object, callback and callback-object access-allowed entries
                // (types 4, 5, 9 and 11): their mask follows the header too, their SID
                // may not be at `SidStart`.
                if matches!(ty, 4 | 5 | 9 | 11) && (*a).Mask & DIRECTORY_WRITE_RIGHTS != 0 {
                    other_grants += 1;
                }
                continue;
            }
            found.push(((*a).Mask, sid_at(ptr::addr_of_mut!((*a).SidStart).cast())?));
        }
    }
    Ok((found, other, other_grants))
}

/// What [`entries_of`] finds: the entries of the kind asked for, as (mask, SID); how many
/// entries of other kinds there are; and how many of those are access-allowed entries of
/// another layout that grant a write-type right.
type Entries = (Vec<(u32, Sid)>, usize, usize);

/// Frees a block that a Win32 call allocated with LocalAlloc, once, on drop.
struct FreeOnDrop(PSECURITY_DESCRIPTOR);

impl Drop for FreeOnDrop {
    fn drop(&mut self) {
        // SAFETY: the block the call allocated, not used after this, freed once.
        unsafe { LocalFree(self.0) };
    }
}

/// One access-allowed entry of a DACL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Allowed {
    pub(crate) sid: Sid,
    pub(crate) mask: u32,
}

/// What a pipe's security descriptor says, read back with `GetSecurityInfo`.
#[derive(Clone, Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct PipeSecurity {
    pub(crate) owner: Option<Sid>,
    pub(crate) group: Option<Sid>,
    /// `None`: no DACL at all (everyone has full access).
    pub(crate) dacl: Option<Vec<Allowed>>,
    /// Entries of other types (deny, audit) that the DACL holds; none are ever expected.
    pub(crate) other_entries: usize,
    /// Of those, the access-allowed ones of other layouts (object, callback) that grant a
    /// write-type right ([`DIRECTORY_WRITE_RIGHTS`]).
    pub(crate) other_grants: usize,
}

/// Reads a pipe's owner, group and DACL through any handle with `READ_CONTROL` (a client's
/// and a server's handle of a duplex pipe both have it).
pub(crate) fn pipe_security(handle: BorrowedHandle<'_>) -> io::Result<PipeSecurity> {
    let mut owner: PSID = ptr::null_mut();
    let mut group: PSID = ptr::null_mut();
    let mut dacl: *mut ACL = ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: the out pointers are valid; on success they point into `sd`, a LocalAlloc'd
    // block freed by the guard below.
    let err = unsafe {
        GetSecurityInfo(
            handle.as_raw_handle() as HANDLE,
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            &mut group,
            &mut dacl,
            ptr::null_mut(),
            &mut sd,
        )
    };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err as i32));
    }
    let _free = FreeOnDrop(sd);
    // SAFETY: null or SIDs inside `sd`, alive until `_free` drops.
    let owner = (!owner.is_null()).then(|| unsafe { sid_at(owner) }).transpose()?;
    // SAFETY: as above.
    let group = (!group.is_null()).then(|| unsafe { sid_at(group) }).transpose()?;
    if dacl.is_null() {
        return Ok(PipeSecurity { owner, group, dacl: None, other_entries: 0, other_grants: 0 });
    }
    // SAFETY: `dacl` is a valid ACL inside `sd`, alive until `_free` drops.
    let (entries, other, other_grants) = unsafe { entries_of(dacl, ACCESS_ALLOWED_ACE_TYPE) }?;
    let allowed = entries.into_iter().map(|(mask, sid)| Allowed { sid, mask }).collect();
    Ok(PipeSecurity { owner, group, dacl: Some(allowed), other_entries: other, other_grants })
}

/// The integrity level of the object behind `handle` (a pipe): its mandatory label, or
/// Medium where it has none (as Windows treats such objects).
pub(crate) fn object_integrity(handle: BorrowedHandle<'_>) -> io::Result<u32> {
    use windows_sys::Win32::Security::LABEL_SECURITY_INFORMATION;
    use windows_sys::Win32::System::SystemServices::SYSTEM_MANDATORY_LABEL_ACE_TYPE;
    let mut sacl: *mut ACL = ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: valid out pointers; `sacl` points into `sd`, freed below.
    let err = unsafe {
        GetSecurityInfo(
            handle.as_raw_handle() as HANDLE,
            SE_KERNEL_OBJECT,
            LABEL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut sacl,
            &mut sd,
        )
    };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err as i32));
    }
    let _free = FreeOnDrop(sd);
    let mut level = MEDIUM_INTEGRITY;
    if sacl.is_null() {
        return Ok(level);
    }
    // SAFETY: `sacl` is a valid ACL inside `sd`, alive until `_free` drops.
    let (labels, _, _) = unsafe { entries_of(sacl, SYSTEM_MANDATORY_LABEL_ACE_TYPE) }?;
    for (_, sid) in labels {
        if let Some(rid) = label_rid(&sid) {
            level = rid;
        }
    }
    Ok(level)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::windows::io::AsHandle;
    use std::path::PathBuf;
    use std::time::Duration;

    use interprocess::os::windows::security_descriptor::AsSecurityDescriptor;
    use interprocess::TryClone;

    use super::*;
    use crate::sys::{connect, pipe, Listener};

    fn name(tag: &str) -> PathBuf {
        PathBuf::from(format!(r"\\.\pipe\solo-sec-{}-{tag}", std::process::id()))
    }

    fn allowed(sid: Sid) -> Allowed {
        Allowed { sid, mask: FILE_ALL_ACCESS }
    }

    /// Each access option gives the pipe Qt's descriptor: owner the user, group the primary
    /// group, and a DACL of FILE_ALL_ACCESS entries for the user, the group and Everyone as
    /// the bits ask, in Qt's order and nothing else. Read back with GetSecurityInfo from a
    /// client's handle and from the server's, on the first pipe instance and on a later one
    /// (created from interprocess's copy of the descriptor, whose owner bug is worked around).
    #[test]
    fn access_options_give_pipes_qts_security_descriptor() {
        let user = current_user().unwrap();
        let group = current_primary_group().unwrap();
        let everyone: Sid = "S-1-1-0".parse().unwrap();
        let cases = [
            ("user", SocketOptions::USER_ACCESS, vec![allowed(user)]),
            ("group", SocketOptions::GROUP_ACCESS, vec![allowed(group)]),
            ("other", SocketOptions::OTHER_ACCESS, vec![allowed(everyone)]),
            (
                "user-group",
                SocketOptions::USER_ACCESS | SocketOptions::GROUP_ACCESS,
                vec![allowed(user), allowed(group)],
            ),
            ("world", SocketOptions::WORLD_ACCESS, vec![allowed(user), allowed(group), allowed(everyone)]),
        ];
        for (tag, options, want) in cases {
            let path = name(tag);
            let listener = Listener::bind_with_sddl(&path, options, None, true).unwrap();
            for instance in ["first", "later"] {
                let client = connect(&path, SocketOptions::empty(), Some(Duration::from_secs(5))).unwrap();
                listener.wait(Some(Duration::from_secs(5))).unwrap();
                let server = listener.try_accept().unwrap().expect("accepted");
                for (end, stream) in [("client", &client), ("server", &server)] {
                    let got = pipe_security(pipe(stream).as_handle()).unwrap();
                    let at = format!("{tag}, {instance} instance, {end} end: {got:?}");
                    assert_eq!(got.owner, Some(user), "owner, {at}");
                    assert_eq!(got.group, Some(group), "group, {at}");
                    assert_eq!(got.dacl.as_deref(), Some(&want[..]), "DACL, {at}");
                    assert_eq!(got.other_entries, 0, "{at}");
                }
                (&client).write_all(b"x").unwrap();
                let mut b = [0u8; 1];
                (&server).read_exact(&mut b).unwrap();
            }
        }
        assert!(pipe_security_descriptor(SocketOptions::empty(), true).unwrap().is_none());

        // The System scope's pipe: others may connect (as `connect` does) but not serve.
        let path = name("shared");
        let sddl = shared_pipe_sddl().unwrap();
        let listener =
            Listener::bind_with_sddl(&path, SocketOptions::WORLD_ACCESS, Some(&sddl), false).unwrap();
        let client = connect(&path, SocketOptions::empty(), Some(Duration::from_secs(5))).unwrap();
        listener.wait(Some(Duration::from_secs(5))).unwrap();
        let _server = listener.try_accept().unwrap().expect("accepted");
        let got = pipe_security(pipe(&client).as_handle()).unwrap();
        let others = Allowed { sid: everyone, mask: CLIENT_ACCESS };
        assert_eq!(got.owner, Some(user));
        assert_eq!(got.dacl.as_deref(), Some(&[allowed(user), others][..]), "{got:?}");
        assert_eq!(CLIENT_ACCESS & 0x4, 0, "FILE_CREATE_PIPE_INSTANCE granted");
        assert!(pipe_security_descriptor(SocketOptions::ABSTRACT_NAMESPACE, true).unwrap().is_none());
    }

    /// Without Qt's exact descriptors (the default): no access option gives a pipe only this
    /// user, SYSTEM and Administrators may open (not Windows' default, which lets Everyone
    /// and Anonymous read), and GROUP_ACCESS and OTHER_ACCESS grant the client's rights
    /// only (not FILE_ALL_ACCESS, with instance creation, WRITE_DAC and WRITE_OWNER). Read
    /// back from a client's handle, on the first and a later instance, through LocalServer.
    #[test]
    fn default_pipe_descriptors_keep_others_out() {
        let user = current_user().unwrap();
        let group = current_primary_group().unwrap();
        let everyone: Sid = "S-1-1-0".parse().unwrap();
        let system: Sid = "S-1-5-18".parse().unwrap();
        let admins: Sid = "S-1-5-32-544".parse().unwrap();
        let client = |sid| Allowed { sid, mask: CLIENT_ACCESS };
        let cases = [
            ("d-none", SocketOptions::empty(), vec![allowed(user), allowed(system), allowed(admins)]),
            ("d-user", SocketOptions::USER_ACCESS, vec![allowed(user)]),
            ("d-group", SocketOptions::GROUP_ACCESS, vec![client(group)]),
            ("d-world", SocketOptions::WORLD_ACCESS, vec![allowed(user), client(group), client(everyone)]),
        ];
        for (tag, options, want) in cases {
            let name = format!("solo-sec-{}-{tag}", std::process::id());
            let mut server = crate::LocalServer::new();
            assert!(!server.qt_windows_security());
            server.set_socket_options(options);
            server.listen(&name).unwrap();
            for instance in ["first", "later"] {
                let client = crate::LocalSocket::connect(&name).unwrap();
                assert!(server.wait_for_new_connection(Some(Duration::from_secs(5))).unwrap());
                let _server_end = server.next_pending_connection().expect("accepted");
                let got = pipe_security(pipe(client.as_stream()).as_handle()).unwrap();
                let at = format!("{tag}, {instance} instance: {got:?}");
                assert_eq!(got.owner, Some(user), "owner, {at}");
                assert_eq!(got.dacl.as_deref(), Some(&want[..]), "DACL, {at}");
            }
        }
    }

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

    /// Why `pipe_security_descriptor` sets no group: interprocess 2.4.7's copy of a
    /// descriptor (made for every pipe instance after the first) writes the group SID over
    /// the owner. When this test fails, interprocess copies correctly and the workaround can
    /// go (or stay: it is harmless).
    #[test]
    fn interprocess_copy_writes_the_group_over_the_owner() {
        let user = current_user().unwrap();
        let group = current_primary_group().unwrap();
        assert_ne!(user, group);
        let with_group = from_sddl(&format!("O:{user}G:{group}D:(A;;FA;;;{user})")).unwrap();
        let copy = with_group.try_clone().unwrap();
        // SAFETY: `copy` is a valid descriptor, alive for the borrow.
        let b = unsafe { BorrowedSecurityDescriptor::from_ptr(copy.as_sd()) };
        // SAFETY: the owner SID lives inside `copy`.
        let owner = unsafe { sid_at(b.owner().unwrap().0.cast_mut()) }.unwrap();
        assert_eq!(owner, group, "interprocess now copies the owner right");
        // Without a group the copy keeps the owner.
        let ours = pipe_security_descriptor(SocketOptions::USER_ACCESS, false)
            .unwrap()
            .unwrap()
            .try_clone()
            .unwrap();
        // SAFETY: as above.
        let b = unsafe { BorrowedSecurityDescriptor::from_ptr(ours.as_sd()) };
        // SAFETY: as above.
        assert_eq!(unsafe { sid_at(b.owner().unwrap().0.cast_mut()) }.unwrap(), user);
    }
}
