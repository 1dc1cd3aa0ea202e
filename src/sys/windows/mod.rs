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

mod deadline;
mod listener;
mod pipe;
mod security;
mod token;

pub(crate) use token::current_user;

pub(crate) use deadline::{flush, pipe, IoDeadline};
pub(crate) use listener::Listener;
pub(crate) use pipe::{connect, connect_error, peer_sid, remove_server, server_error};

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle};

use interprocess::local_socket::Stream;

use windows_sys::Win32::Foundation::HANDLE;

pub(crate) use security::{create_shared_dir, directory_owner, is_trusted_owner, shared_pipe_sddl};
#[cfg(test)]
pub(crate) use security::{from_sddl, object_integrity, pipe_security};
#[cfg(test)]
pub(crate) use token::integrity_is_enough;
#[cfg(test)]
pub(crate) use token::PRETEND_USER;

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

/// Whether the pipe this client end reached has an integrity level good enough to be this
/// process's primary (see [`token::integrity_is_enough`]). Unknown counts as not.
pub(crate) fn server_integrity_ok(stream: &Stream) -> bool {
    match (security::object_integrity(pipe(stream).as_handle()), token::own_integrity()) {
        (Ok(pipe), Ok(own)) => token::integrity_is_enough(pipe, own),
        _ => false,
    }
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

/// Pipes offer no peek here: every request goes to a reader thread.
pub(crate) fn take_ready_line(_socket: &crate::LocalSocket, _max: usize) -> Option<Vec<u8>> {
    None
}

/// Windows has no signals to block: runs `f` (see the Unix `with_signals_blocked`).
pub(crate) fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    f()
}
