//! Windows: named pipes through interprocess. A named pipe has no readiness to poll, so a
//! listener keeps one thread blocked in `accept` and hands each connection over a slot;
//! `wait` then waits on that slot with a timeout, without polling.
//!
//! Named pipes have no I/O timeouts either (interprocess refuses `set_recv_timeout`);
//! [`IoDeadline`] bounds a blocking read or write instead, with `CancelIoEx` from one
//! shared timer thread.
//!
//! [`security`] builds Qt's security descriptors and reads a pipe's owner and its client's
//! user back, for the peer checks.

mod connection;
mod deadline;
mod engine;
mod listener;
mod pipe;
mod security;
mod stream;
mod token;

pub(crate) use token::{current_user, in_app_container, own_integrity};

pub(crate) use deadline::{pipe, read_until, IoDeadline};
pub(crate) use engine::{
    poller, Acceptor, Connection, Interest, Owner, PollWaker, Poller, Token, WatchSource, WATCHES_FILES,
};
pub(crate) use listener::Listener;
pub(crate) use pipe::{connect, connect_error, peer_sid, remove_server, server_error};
pub(crate) use stream::{process_exists, recv_some, send_some, wait_readable, STDIN_STREAMS};

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle};

use interprocess::local_socket::Stream;

use windows_sys::Win32::Foundation::HANDLE;

pub(crate) use security::{
    check_directory, check_parent_directory, create_private_dir, create_shared_dir, directory_owner,
    is_trusted_owner, private_pipe_sddl, shared_pipe_sddl,
};
#[cfg(test)]
pub(crate) use security::{create_dir_with, from_sddl, object_integrity, pipe_security};
#[cfg(test)]
pub(crate) use token::integrity_is_enough;
#[cfg(test)]
pub(crate) use token::{PRETEND_INTEGRITY, PRETEND_USER};

/// The number of names (hard links) `file` has.
pub(crate) fn link_count(file: &std::fs::File) -> io::Result<u32> {
    use windows_sys::Win32::Storage::FileSystem::{GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION};
    // SAFETY: all-zero is a valid BY_HANDLE_FILE_INFORMATION (plain integers).
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `file`'s handle is open; `info` is a valid out pointer.
    if unsafe { GetFileInformationByHandle(file.as_raw_handle() as HANDLE, &mut info) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.nNumberOfLinks)
}

/// `%ProgramData%` from `SHGetKnownFolderPath(FOLDERID_ProgramData)`: where Windows keeps
/// it, whatever the environment variable says.
pub(crate) fn program_data() -> io::Result<std::path::PathBuf> {
    use std::os::windows::ffi::OsStringExt;
    use windows_sys::Win32::UI::Shell::{FOLDERID_ProgramData, SHGetKnownFolderPath};
    let mut path: windows_sys::core::PWSTR = std::ptr::null_mut();
    // SAFETY: a valid GUID, no token (this user), `path` a valid out pointer; on return
    // `path` holds a CoTaskMemAlloc'd string (or null), freed below either way.
    let hr = unsafe { SHGetKnownFolderPath(&FOLDERID_ProgramData, 0, std::ptr::null_mut(), &mut path) };
    let result = if hr < 0 || path.is_null() {
        Err(io::Error::other(format!("SHGetKnownFolderPath(FOLDERID_ProgramData) failed: {hr:#x}")))
    } else {
        // SAFETY: on success `path` is a NUL-terminated wide string.
        let len = (0..).take_while(|&i| unsafe { *path.add(i) } != 0).count();
        // SAFETY: `len` units before the NUL are readable.
        let wide = unsafe { std::slice::from_raw_parts(path, len) };
        Ok(std::path::PathBuf::from(std::ffi::OsString::from_wide(wide)))
    };
    // SAFETY: allocated by SHGetKnownFolderPath (null is allowed), not used after this.
    unsafe { windows_sys::Win32::System::Com::CoTaskMemFree(path.cast()) };
    result
}

/// The Terminal Services session of this process: one per login (fast user switching and
/// remote desktop sessions each have their own).
pub(crate) fn session_id() -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: `id` is a valid out pointer.
    let ok = unsafe {
        windows_sys::Win32::System::RemoteDesktop::ProcessIdToSessionId(std::process::id(), &mut id)
    };
    (ok != 0).then_some(id)
}

#[cfg(test)]
thread_local! {
    /// Tests: the Terminal Services session this thread's checks take this process for.
    pub(crate) static PRETEND_SESSION: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// The session this process's checks use ([`session_id`], or the test's injected one).
fn own_session() -> Option<u32> {
    #[cfg(test)]
    if let Some(id) = PRETEND_SESSION.with(|p| p.get()) {
        return Some(id);
    }
    session_id()
}

/// What a launch found at the server end of a pipe it connected to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServerCheck {
    /// This user's, at this launch's integrity level or above, in this session.
    Ours,
    /// Not this launch's primary: another user's pipe, or one below this launch's integrity
    /// level (a sandboxed or, for an elevated launch, a non-elevated process of this user).
    /// Why, in words.
    Stranger(String),
    /// This user's primary, which this launch cannot use: it runs elevated and the launch
    /// does not, or in another Terminal Services session. Why, in words.
    Unusable(String),
}

/// Names an integrity level for messages.
pub(crate) fn integrity_name(rid: u32) -> String {
    let name = match rid {
        0 => "Untrusted",
        0x1000 => "Low",
        0x2000 => "Medium",
        0x2100 => "Medium Plus",
        0x3000 => "High (elevated)",
        0x4000 => "System",
        _ => return format!("{rid:#x}"),
    };
    name.to_owned()
}

/// Checks the server end of a pipe this launch connected to, before a byte is written:
/// its owner (`check_owner`: outside the System scope), its integrity label against this
/// process's level, and (with `check_owner`) its Terminal Services session.
pub(crate) fn check_server(stream: &Stream, check_owner: bool) -> ServerCheck {
    let p = pipe(stream);
    if check_owner {
        let owner = security::pipe_security(p.as_handle()).ok().and_then(|s| s.owner);
        match (owner, current_user()) {
            (Some(o), Ok(me)) if o == me => {}
            (Some(o), _) => return ServerCheck::Stranger(format!("owned by {o}, another user")),
            (None, _) => return ServerCheck::Stranger(String::from("owned by an unknown user")),
        }
    }
    let (level, own) = match (security::object_integrity(p.as_handle()), token::own_integrity()) {
        (Ok(level), Ok(own)) => (level, own),
        _ => return ServerCheck::Stranger(String::from("of an integrity level that cannot be read")),
    };
    if !token::integrity_is_enough(level, own) {
        return ServerCheck::Stranger(format!(
            "labelled {} integrity, below this launch's {} (a sandboxed or less trusted process \
             of this user made it)",
            integrity_name(level),
            integrity_name(own)
        ));
    }
    if !check_owner {
        return ServerCheck::Ours;
    }
    if level > own {
        return ServerCheck::Unusable(elevated_message(level, own));
    }
    let mut server = 0u32;
    // SAFETY: the pipe's handle is open for the call; `server` is a valid out pointer.
    let known = unsafe {
        windows_sys::Win32::System::Pipes::GetNamedPipeServerSessionId(
            p.as_raw_handle() as HANDLE,
            &mut server,
        )
    } != 0;
    match own_session() {
        Some(own) if known && own != server => ServerCheck::Unusable(format!(
            "served by this user's primary instance in another Windows session ({server}; this \
             launch runs in session {own}), where its window could not be seen here; the app \
             would need Scope::Session to run once per session"
        )),
        _ => ServerCheck::Ours,
    }
}

/// Why a launch at integrity level `own` cannot use its user's primary at level `primary`.
pub(crate) fn elevated_message(primary: u32, own: u32) -> String {
    format!(
        "served by this user's primary instance, which runs at {} integrity (as administrator) \
         while this launch runs at {}: Windows keeps a less trusted process from driving an \
         elevated one; start this launch the same way as the running instance",
        integrity_name(primary),
        integrity_name(own)
    )
}

/// A fresh pipe name nobody can guess: `\\.\pipe\solo-instance-<128 random bits>`.
pub(crate) fn random_pipe_name() -> io::Result<std::path::PathBuf> {
    use windows_sys::Win32::Security::Cryptography::{BCryptGenRandom, BCRYPT_USE_SYSTEM_PREFERRED_RNG};
    let mut bytes = [0u8; 16];
    // SAFETY: `bytes` is writable for its length; no algorithm handle with this flag.
    let status = unsafe {
        BCryptGenRandom(
            std::ptr::null_mut(),
            bytes.as_mut_ptr(),
            bytes.len() as u32,
            BCRYPT_USE_SYSTEM_PREFERRED_RNG,
        )
    };
    if status != 0 {
        return Err(io::Error::other(format!("BCryptGenRandom failed: {status:#x}")));
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(std::path::PathBuf::from(format!(r"\\.\pipe\solo-instance-{hex}")))
}

/// Whether `name` is one [`random_pipe_name`] could have made.
pub(crate) fn is_random_pipe_name(name: &str) -> bool {
    name.strip_prefix(r"\\.\pipe\solo-instance-")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The pid of the process serving the pipe this client end is connected to.
pub(crate) fn server_pid(stream: &Stream) -> Option<u32> {
    pipe(stream).server_process_id().ok()
}

/// Lets process `pid` take the foreground (`AllowSetForegroundWindow`). Windows gives that
/// right to the process the user just started (the launch); a launch that forwards hands it
/// on to the primary this way before it sends, so the primary's `SetForegroundWindow` works,
/// as Chromium, VS Code and tauri-plugin-single-instance do. Fails harmlessly when this
/// process has no such right to pass on.
pub(crate) fn allow_foreground(pid: u32) -> bool {
    // SAFETY: no pointers; any pid is accepted (an unknown one fails).
    unsafe { windows_sys::Win32::UI::WindowsAndMessaging::AllowSetForegroundWindow(pid) != 0 }
}

/// Windows has no signals to block: runs `f` (see the Unix `with_signals_blocked`).
pub(crate) fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    f()
}
