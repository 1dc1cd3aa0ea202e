//! Security descriptors on Windows: the one a pipe is created with (Qt's, from
//! [`SocketOptions`]), the System scope's pipe, and reading an object's back (its owner,
//! group, DACL and integrity label), which the peer and directory checks use. The
//! directories' DACLs are in [`directory`].
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

mod directory;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use directory::create_dir_with;
use directory::DIRECTORY_WRITE_RIGHTS;
pub(crate) use directory::{
    check_directory, check_parent_directory, create_private_dir, create_shared_dir, directory_owner,
    is_trusted_owner,
};

/// `FILE_ALL_ACCESS`, what Qt grants each allowed SID.
#[cfg(test)]
pub(crate) const FILE_ALL_ACCESS: u32 = windows_sys::Win32::Storage::FileSystem::FILE_ALL_ACCESS;

use super::token::{current_primary_group, current_user, label_rid, last_error, sid_at, MEDIUM_INTEGRITY};

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
