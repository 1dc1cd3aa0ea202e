//! Windows: named pipes through interprocess. A named pipe has no readiness to poll, so a
//! listener keeps one thread blocked in `accept` and hands each connection over a slot;
//! `wait` then waits on that slot with a timeout, without polling.
//!
//! Named pipes have no I/O timeouts either (interprocess refuses `set_recv_timeout`);
//! [`IoDeadline`] bounds a blocking read or write instead, with `CancelIoEx` from one
//! shared timer thread.
//!
//! [`security`] builds Qt's security descriptors and reads a pipe's owner and its client's
//! user back, for the peer checks; [`token`] reads this process's and a client's user and
//! integrity level.
//!
//! The single-instance layer's items (see the contract in `sys`): [`dir`] (the directory
//! with its protected DACL), [`location`] (where the files live, the System scope's pipe
//! name), [`names`], [`lock`] (`LockFileEx` and `<app>.pid`), [`peer`] (the launch's checks
//! of the primary's pipe: owner, integrity, session), [`published`] (the file with the
//! primary's random pipe name) and [`watch`] (none needed). `tests`: the single-instance
//! guarantees on Windows.

mod connection;
mod deadline;
mod dir;
mod engine;
mod listener;
mod location;
mod lock;
mod names;
mod peer;
mod pipe;
mod primary;
pub(crate) mod published;
mod security;
mod stream;
#[cfg(test)]
mod tests;
mod token;
#[cfg(feature = "dbus")]
mod uri;
pub(crate) mod watch;

pub(crate) use token::{current_user, in_app_container, own_integrity};

pub(crate) use deadline::{pipe, read_until, IoDeadline};
pub(crate) use dir::{ensure_dir, file_id, repair_dir};
pub(crate) use engine::{
    poller, Acceptor, Connection, Interest, Owner, PollWaker, Poller, Token, WatchSource, EDGE_TRIGGERED,
};
pub(crate) use listener::Listener;
pub(crate) use location::{login_session, server_name, system_abstract, system_base, user_dir};
pub(crate) use lock::{lock_cannot_exist, read_pid, LockFile};
pub use names::MAX_SOCKET_PATH;
pub(crate) use names::{os_bytes, os_from_bytes, ABSTRACT_NAMES, NAMES_ARE_PIPES};
pub(crate) use peer::{
    check_primary, elevated_above_us, hand_foreground, launch_options, refused, served_by_this_user,
    server_file_gone, write_all_until, SERVER_KIND,
};
pub(crate) use pipe::{connect, connect_error, peer_sid, remove_server, server_error};
pub(crate) use primary::listen_primary;
pub(crate) use stream::{process_exists, recv_some, send_some, wait_readable, STDIN_THROUGH_LOOP};
#[cfg(feature = "dbus")]
pub(crate) use uri::path_of_uri;

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle};

use interprocess::local_socket::Stream;

use windows_sys::Win32::Foundation::HANDLE;

use crate::sys::ServerCheck;
use security::{
    check_directory, check_parent_directory, create_private_dir, create_shared_dir, directory_owner,
    is_trusted_owner,
};
pub(crate) use security::{private_pipe_sddl, shared_pipe_sddl};

/// Volume serial number and file index: a file's identity however its path is spelled.
pub(crate) type FileId = (u64, u64);

/// Who a process runs as: its user's SID.
#[allow(dead_code)] // for the serving engine, which uses `Sid` so far
pub(crate) type User = crate::Sid;

/// Children are never forked on Windows: no guard is needed (a documented no-op, the same
/// item as Unix's).
#[derive(Debug)]
pub(crate) enum ForkGuard {}

/// A [`ForkGuard`] for `listener`: none on Windows.
pub(crate) fn fork_guard(_listener: &Listener) -> Option<ForkGuard> {
    None
}

/// Runs `f` (a launch): nothing cached here (the user's SID is read where it is needed).
pub(crate) fn as_one_user<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// This process's id (no system call on Windows: it is in the process's own block).
pub(crate) fn own_pid() -> u32 {
    std::process::id()
}
#[cfg(test)]
pub(crate) use security::{create_dir_with, from_sddl, object_integrity, pipe_security};
#[cfg(test)]
pub(crate) use token::integrity_is_enough;
#[cfg(test)]
pub(crate) use token::{PRETEND_INTEGRITY, PRETEND_USER};

/// What `GetFileInformationByHandle` says of `file`.
fn file_information(
    file: &std::fs::File,
) -> io::Result<windows_sys::Win32::Storage::FileSystem::BY_HANDLE_FILE_INFORMATION> {
    use windows_sys::Win32::Storage::FileSystem::{GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION};
    // SAFETY: all-zero is a valid BY_HANDLE_FILE_INFORMATION (plain integers).
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `file`'s handle is open; `info` is a valid out pointer.
    if unsafe { GetFileInformationByHandle(file.as_raw_handle() as HANDLE, &mut info) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// The number of names (hard links) `file` has.
fn link_count(file: &std::fs::File) -> io::Result<u32> {
    Ok(file_information(file)?.nNumberOfLinks)
}

/// The identity of the open `file`: volume serial number and file index.
fn handle_file_id(file: &std::fs::File) -> io::Result<FileId> {
    let info = file_information(file)?;
    Ok((
        u64::from(info.dwVolumeSerialNumber),
        (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
    ))
}

/// `%ProgramData%` from `SHGetKnownFolderPath(FOLDERID_ProgramData)`: where Windows keeps
/// it, whatever the environment variable says.
fn program_data() -> io::Result<std::path::PathBuf> {
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
fn session_id() -> Option<u32> {
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

/// Names an integrity level for messages.
fn integrity_name(rid: u32) -> String {
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
fn check_server(stream: &Stream, check_owner: bool) -> ServerCheck {
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
fn elevated_message(primary: u32, own: u32) -> String {
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
fn is_random_pipe_name(name: &str) -> bool {
    name.strip_prefix(r"\\.\pipe\solo-instance-")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The pid of the process serving the pipe this client end is connected to.
fn server_pid(stream: &Stream) -> Option<u32> {
    pipe(stream).server_process_id().ok()
}

/// Lets process `pid` take the foreground (`AllowSetForegroundWindow`). Windows gives that
/// right to the process the user just started (the launch); a launch that forwards hands it
/// on to the primary this way before it sends, so the primary's `SetForegroundWindow` works,
/// as Chromium, VS Code and tauri-plugin-single-instance do. Fails harmlessly when this
/// process has no such right to pass on.
fn allow_foreground(pid: u32) -> bool {
    // SAFETY: no pointers; any pid is accepted (an unknown one fails).
    unsafe { windows_sys::Win32::UI::WindowsAndMessaging::AllowSetForegroundWindow(pid) != 0 }
}

/// Windows has no signals to block: runs `f` (see the Unix `with_signals_blocked`).
pub(crate) fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    f()
}
