//! Who is who on Windows: this process's user, primary group and integrity level (from
//! its token), and the user at the client end of a pipe (through impersonation).

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Security::{
    GetLengthSid, GetTokenInformation, IsValidSid, TokenIntegrityLevel, TokenPrimaryGroup, TokenUser, PSID,
    TOKEN_IMPERSONATE, TOKEN_INFORMATION_CLASS, TOKEN_PRIMARY_GROUP, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentThread, OpenProcessToken, OpenThreadToken, SetThreadToken,
};

use crate::Sid;

pub(super) fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Copies the SID at `psid`.
///
/// # Safety
/// `psid` is null or points to memory that holds a SID, valid for the call.
pub(super) unsafe fn sid_at(psid: PSID) -> io::Result<Sid> {
    // SAFETY: IsValidSid reads a SID's header only after checking the pointer is non-null
    // (the caller promises a SID or null); GetLengthSid reads the header of a valid SID.
    let len = unsafe {
        if psid.is_null() || IsValidSid(psid) == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a valid SID"));
        }
        GetLengthSid(psid) as usize
    };
    // SAFETY: a valid SID is `GetLengthSid` bytes long.
    let bytes = unsafe { std::slice::from_raw_parts(psid.cast::<u8>(), len) };
    Sid::from_bytes(bytes).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "SID too long"))
}

/// The user (`TokenUser`) or primary group (`TokenPrimaryGroup`) of a token.
pub(super) fn token_sid(token: BorrowedHandle<'_>, class: TOKEN_INFORMATION_CLASS) -> io::Result<Sid> {
    let h = token.as_raw_handle() as HANDLE;
    let mut len = 0u32;
    // SAFETY: a size query: no buffer, the needed length is written to `len`.
    unsafe { GetTokenInformation(h, class, ptr::null_mut(), 0, &mut len) };
    if len == 0 {
        return Err(last_error());
    }
    // u64 units: TOKEN_USER and TOKEN_PRIMARY_GROUP start with a pointer.
    let mut buf = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `buf` is writable for `len` bytes and aligned for the structure.
    if unsafe { GetTokenInformation(h, class, buf.as_mut_ptr().cast(), len, &mut len) } == 0 {
        return Err(last_error());
    }
    // SAFETY: on success the buffer holds the structure `class` names, whose SID pointer
    // points into the same buffer, alive for the read.
    unsafe {
        // TOKEN_MANDATORY_LABEL is laid out as TOKEN_USER: one SID_AND_ATTRIBUTES.
        let psid = if class == TokenUser || class == TokenIntegrityLevel {
            (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid
        } else {
            (*buf.as_ptr().cast::<TOKEN_PRIMARY_GROUP>()).PrimaryGroup
        };
        sid_at(psid)
    }
}

pub(super) fn process_token() -> io::Result<OwnedHandle> {
    let mut h: HANDLE = ptr::null_mut();
    // SAFETY: the current-process pseudo handle needs no closing; `h` receives a new handle.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut h) } == 0 {
        return Err(last_error());
    }
    // SAFETY: a token handle just opened, owned by nobody else.
    Ok(unsafe { OwnedHandle::from_raw_handle(h as _) })
}

#[cfg(test)]
thread_local! {
    /// Tests: the user this thread's checks take this process for (an injected SID, to test
    /// the decisions against "another user" where Wine has only one).
    pub(crate) static PRETEND_USER: std::cell::Cell<Option<Sid>> = const { std::cell::Cell::new(None) };
}

/// The user this process runs as (its primary token's `TokenUser`), read once.
pub(crate) fn current_user() -> io::Result<Sid> {
    #[cfg(test)]
    if let Some(sid) = PRETEND_USER.with(|p| p.get()) {
        return Ok(sid);
    }
    process_user()
}

/// The user of this process's primary token, read once (never the injected test SID).
pub(super) fn process_user() -> io::Result<Sid> {
    static USER: OnceLock<Sid> = OnceLock::new();
    if let Some(sid) = USER.get() {
        return Ok(*sid);
    }
    let sid = token_sid(process_token()?.as_handle_borrowed(), TokenUser)?;
    Ok(*USER.get_or_init(|| sid))
}

/// Medium, the integrity level of a normal user's processes and of any object that has no
/// label.
pub(super) const MEDIUM_INTEGRITY: u32 =
    windows_sys::Win32::System::SystemServices::SECURITY_MANDATORY_MEDIUM_RID as u32;

#[cfg(test)]
thread_local! {
    /// Tests: the integrity level this thread's checks take this process for (Wine runs
    /// everything at one level, High).
    pub(crate) static PRETEND_INTEGRITY: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// The integrity level (the RID of its `S-1-16-…` label) of this process.
pub(crate) fn own_integrity() -> io::Result<u32> {
    #[cfg(test)]
    if let Some(level) = PRETEND_INTEGRITY.with(|p| p.get()) {
        return Ok(level);
    }
    let label = token_sid(process_token()?.as_handle_borrowed(), TokenIntegrityLevel)?;
    label_rid(&label).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an integrity label"))
}

/// Whether this process runs inside an AppContainer (a packaged or sandboxed app): its
/// token is then refused by pipes whose DACL grants only users, as the crate's do.
pub(crate) fn in_app_container() -> bool {
    use windows_sys::Win32::Security::TokenIsAppContainer;
    process_token().and_then(|t| token_u32(t.as_handle_borrowed(), TokenIsAppContainer)).is_ok_and(|v| v != 0)
}

/// The RID of a mandatory label SID (`S-1-16-RID`).
pub(super) fn label_rid(sid: &Sid) -> Option<u32> {
    let b = sid.as_bytes();
    (b.len() == 12 && b[1] == 1 && b[2..8] == [0, 0, 0, 0, 0, 16])
        .then(|| u32::from_le_bytes([b[8], b[9], b[10], b[11]]))
}

/// Whether a pipe at integrity level `pipe` may be this process's primary: not below this
/// process's own level. A pipe made by a sandboxed (low integrity) process of the same user
/// is refused, and so is, for an elevated launch, a normal (Medium) process's pipe: either
/// could be malware of the same user waiting to read, or answer, a more trusted launch.
pub(crate) fn integrity_is_enough(pipe: u32, own: u32) -> bool {
    pipe >= own
}

/// Who is at the client end of a pipe, as the primary sees it through impersonation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientIdentity {
    pub(crate) user: Sid,
    /// The RID of the client token's integrity label.
    pub(crate) integrity: u32,
}

/// The primary group of this process's token (the group Qt's GROUP_ACCESS grants).
pub(crate) fn current_primary_group() -> io::Result<Sid> {
    token_sid(process_token()?.as_handle_borrowed(), TokenPrimaryGroup)
}

pub(super) trait AsBorrowed {
    fn as_handle_borrowed(&self) -> BorrowedHandle<'_>;
}

impl AsBorrowed for OwnedHandle {
    fn as_handle_borrowed(&self) -> BorrowedHandle<'_> {
        std::os::windows::io::AsHandle::as_handle(self)
    }
}

/// The user at the client end of a pipe, as the primary sees it: the identity the client
/// connected with (`ImpersonateNamedPipeClient`, then the thread token's user, then back to
/// self). A client that connected anonymously has none: `None`.
///
/// Not the client's pid (`GetNamedPipeClientProcessId`) and that process's token: a client
/// can set the pid the pipe reports for it, so it proves nothing.
pub(crate) fn client_user(
    pipe: &interprocess::os::windows::named_pipe::DuplexPipeStream<
        interprocess::os::windows::named_pipe::pipe_mode::Bytes,
    >,
) -> Option<Sid> {
    client_identity(pipe).map(|c| c.user)
}

/// [`client_user`] and the integrity level of the client's token, from one impersonation.
/// `None` when either cannot be read, or when the token the impersonation gave is not an
/// impersonation token at identification level or above (see [`identity_of`]).
pub(crate) fn client_identity(
    pipe: &interprocess::os::windows::named_pipe::DuplexPipeStream<
        interprocess::os::windows::named_pipe::pipe_mode::Bytes,
    >,
) -> Option<ClientIdentity> {
    // The calling thread may be impersonating someone already (a service serving a client):
    // RevertToSelf would end that, so keep its token and put it back after.
    let saved = thread_token(TOKEN_IMPERSONATE);
    let sid = match pipe.impersonate_client() {
        Ok(guard) => {
            let sid = impersonated_identity();
            drop(guard); // RevertToSelf
            sid
        }
        Err(_) => None,
    };
    if let Some(token) = saved {
        // SAFETY: a null thread means the current one; `token` is an impersonation token
        // opened with TOKEN_IMPERSONATE, open for the call.
        unsafe { SetThreadToken(ptr::null(), token.as_raw_handle() as HANDLE) };
    }
    sid
}

/// The current thread's impersonation token, if it has one, opened for `access` (as self).
pub(super) fn thread_token(access: u32) -> Option<OwnedHandle> {
    let mut t: HANDLE = ptr::null_mut();
    // SAFETY: the current-thread pseudo handle; `t` receives a new handle, or the call fails
    // (ERROR_NO_TOKEN when the thread impersonates nobody).
    if unsafe { OpenThreadToken(GetCurrentThread(), access, 1, &mut t) } == 0 {
        return None;
    }
    // SAFETY: a token handle just opened, owned by nobody else.
    Some(unsafe { OwnedHandle::from_raw_handle(t as _) })
}

/// The identity of the token the current thread impersonates with.
///
/// First through `GetCurrentThreadEffectiveToken()` (the pseudo handle -6, Windows 8 and
/// later), which opens nothing and so passes no access check: a non-elevated primary may not
/// open an elevated launch's token (its default DACL grants only Administrators and SYSTEM),
/// yet the launch is the same user. Then, where the pseudo handle is not understood, by
/// opening the thread token as self.
pub(super) fn impersonated_identity() -> Option<ClientIdentity> {
    // SAFETY: pseudo handles are never closed and stay valid; -6 is
    // GetCurrentThreadEffectiveToken() (winbase.h), a query-only handle.
    let effective = unsafe { BorrowedHandle::borrow_raw(-6isize as std::os::windows::io::RawHandle) };
    if let Ok(id) = identity_of(effective) {
        return id;
    }
    identity_of(thread_token(TOKEN_QUERY)?.as_handle_borrowed()).ok().flatten()
}

/// The user and integrity level of `token`, if it is what a successful impersonation of a
/// client gives: an impersonation token at identification level or above. Anything else
/// is a stranger (`Ok(None)`): with no impersonation in place, the thread's effective
/// token is the process's own primary token, which would read as "the same user".
/// `Err`: the token could not be queried at all.
pub(super) fn identity_of(token: BorrowedHandle<'_>) -> io::Result<Option<ClientIdentity>> {
    use windows_sys::Win32::Security::{
        SecurityIdentification, TokenImpersonation, TokenImpersonationLevel, TokenType,
    };
    let kind = token_u32(token, TokenType)?;
    if kind != TokenImpersonation as u32 {
        return Ok(None);
    }
    if token_u32(token, TokenImpersonationLevel)? < SecurityIdentification as u32 {
        return Ok(None);
    }
    let user = token_sid(token, TokenUser)?;
    let label = token_sid(token, TokenIntegrityLevel)?;
    Ok(label_rid(&label).map(|integrity| ClientIdentity { user, integrity }))
}

/// A token information class whose value is one 32-bit integer (`TokenType`,
/// `TokenImpersonationLevel`, `TokenSessionId`).
fn token_u32(token: BorrowedHandle<'_>, class: TOKEN_INFORMATION_CLASS) -> io::Result<u32> {
    let mut value = 0u32;
    let mut len = 0u32;
    // SAFETY: `value` is writable for the 4 bytes passed; `len` is a valid out pointer.
    if unsafe {
        GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            class,
            (&mut value as *mut u32).cast(),
            4,
            &mut len,
        )
    } == 0
    {
        return Err(last_error());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sys::{connect, pipe, Listener};
    use crate::SocketOptions;

    /// The primary's view of a client: the user it connected as, which is this process's.
    #[test]
    fn client_user_is_the_connecting_user() {
        let path = std::path::PathBuf::from(format!(r"\\.\pipe\solo-tok-{}", std::process::id()));
        let listener = Listener::bind(&path, SocketOptions::USER_ACCESS, 0).unwrap();
        let _client = connect(&path, SocketOptions::empty(), Some(Duration::from_secs(5))).unwrap();
        listener.wait(Some(Duration::from_secs(5))).unwrap();
        let server = listener.try_accept().unwrap().expect("accepted");
        let p = pipe(&server);
        assert_eq!(client_user(p), Some(current_user().unwrap()));

        // A thread that impersonates already still does afterwards (client_user puts its
        // token back after RevertToSelf).
        // SAFETY: plain call; the thread impersonates itself until RevertToSelf below.
        assert_ne!(unsafe { windows_sys::Win32::Security::ImpersonateSelf(2) }, 0); // SecurityImpersonation
        assert!(thread_token(TOKEN_QUERY).is_some());
        assert_eq!(client_user(p), Some(current_user().unwrap()));
        let kept = thread_token(TOKEN_QUERY).is_some();
        // SAFETY: plain call, ends the impersonation.
        unsafe { windows_sys::Win32::Security::RevertToSelf() };
        assert!(kept, "client_user ended the caller's own impersonation");
        assert!(thread_token(TOKEN_QUERY).is_none());
    }

    /// Fail closed: a token that is not an impersonation token (the process's own primary
    /// token, which the thread's effective token is when no impersonation took) is a
    /// stranger, not "the same user"; an impersonation token of this user is this user.
    #[test]
    fn only_an_impersonation_token_identifies_a_client() {
        let process = process_token().unwrap();
        assert_eq!(identity_of(process.as_handle_borrowed()).unwrap(), None, "primary token trusted");
        // SAFETY: plain call; the thread impersonates itself until RevertToSelf below.
        assert_ne!(unsafe { windows_sys::Win32::Security::ImpersonateSelf(1) }, 0); // SecurityIdentification
        let token = thread_token(TOKEN_QUERY);
        // SAFETY: plain call, ends the impersonation.
        unsafe { windows_sys::Win32::Security::RevertToSelf() };
        let id = identity_of(token.unwrap().as_handle_borrowed()).unwrap().expect("identified");
        assert_eq!(id.user, current_user().unwrap());
        assert_eq!(id.integrity, own_integrity().unwrap());
    }
}
