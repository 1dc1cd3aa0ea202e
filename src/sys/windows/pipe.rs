//! A client's end of a pipe: connecting (at the identification level), and what Windows
//! says about the other end (its owner, its integrity level, its process); the errors of
//! pipe calls in Qt's terms.

use std::io;
use std::os::windows::io::AsHandle;
use std::path::Path;
use std::time::{Duration, Instant};

use interprocess::local_socket::{GenericFilePath, Stream, ToFsName};
use interprocess::os::windows::named_pipe::local_socket::Stream as PipeLocalStream;
use interprocess::os::windows::named_pipe::{pipe_mode, DuplexPipeStream};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
    SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{WaitNamedPipeW, NMPWAIT_WAIT_FOREVER};

use super::{pipe, security, token};
use crate::{LocalSocketError, Sid, SocketOptions};

/// Connects to pipe `path`, waiting up to `timeout` (`None`: for ever) for a free instance.
///
/// Not interprocess's connect: that opens the pipe with Windows' default quality of service,
/// `SecurityImpersonation`, which lets whoever created the pipe act as this process (a pipe
/// squatter, who got the name first, included). This opens it with `SECURITY_SQOS_PRESENT |
/// SECURITY_IDENTIFICATION`: the server may learn who connected (the primary's peer check
/// needs that) but cannot act as the client. Qt's `QLocalSocket` leaves the default; a
/// server that impersonates its clients (Qt's does not) would be refused here. It asks for
/// read and write access without `FILE_APPEND_DATA` (`GENERIC_WRITE` has it), which on a
/// pipe means creating instances: see [`security::CLIENT_ACCESS`].
///
/// (interprocess 2.4.7's `local_socket::ConnectOptions` would also ignore the wait mode on
/// Windows and wait for ever: `os/windows/named_pipe/local_socket/stream.rs`, line 42.)
pub(crate) fn connect(path: &Path, options: SocketOptions, timeout: Option<Duration>) -> io::Result<Stream> {
    if options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    // Checks, as the listener does, that this is a named pipe path.
    path.as_os_str().to_fs_name::<GenericFilePath>()?;
    let wide: Vec<u16> = {
        use std::os::windows::ffi::OsStrExt;
        path.as_os_str().encode_wide().chain([0]).collect()
    };
    if wide[..wide.len() - 1].contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a pipe name cannot hold a NUL"));
    }
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        // SAFETY: `wide` is NUL-terminated; no security attributes, no template.
        let h = unsafe {
            CreateFileW(
                wide.as_ptr(),
                security::CLIENT_ACCESS,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                std::ptr::null(),
                OPEN_EXISTING,
                FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                std::ptr::null_mut(),
            )
        };
        if h != windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE {
            // SAFETY: a handle just opened, owned by nobody else.
            let handle = unsafe {
                <std::os::windows::io::OwnedHandle as std::os::windows::io::FromRawHandle>::from_raw_handle(
                    h as _,
                )
            };
            let pipe = DuplexPipeStream::<pipe_mode::Bytes>::try_from(handle)
                .map_err(|e| io::Error::other(e.to_string()))?;
            return Ok(Stream::from(PipeLocalStream::from(pipe)));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(ERROR_PIPE_BUSY) {
            return Err(e);
        }
        // Every instance is taken: wait for one, until the deadline.
        let wait = match deadline {
            None => NMPWAIT_WAIT_FOREVER,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::from_raw_os_error(ERROR_SEM_TIMEOUT));
                }
                // 0 would mean the pipe's default wait; NMPWAIT_WAIT_FOREVER is u32::MAX.
                left.as_millis().clamp(1, u128::from(u32::MAX - 1)) as u32
            }
        };
        // SAFETY: `wide` is NUL-terminated.
        if unsafe { WaitNamedPipeW(wide.as_ptr(), wait) } == 0 {
            let e = io::Error::last_os_error();
            // Gone meanwhile: not found. Timed out: ERROR_SEM_TIMEOUT. Either ends the wait.
            if e.raw_os_error() != Some(ERROR_PIPE_BUSY) {
                return Err(e);
            }
        }
    }
}

/// The SID at the other end of a pipe, as Windows says it: on the server's end the client's
/// user (the identity it connected with); on a client's end the
/// pipe's owner, which the server's security descriptor set: only a privileged process can
/// make another user the owner.
pub(crate) fn peer_sid(stream: &Stream) -> Option<Sid> {
    let p = pipe(stream);
    if p.is_server() {
        token::client_user(p)
    } else {
        security::pipe_security(p.as_handle()).ok().and_then(|s| s.owner)
    }
}

/// Pipes vanish with their last handle; there is no file to remove.
pub(crate) fn remove_server(_path: &Path) -> io::Result<()> {
    Ok(())
}

const ERROR_FILE_NOT_FOUND: i32 = 2;
const ERROR_ACCESS_DENIED: i32 = 5;
const ERROR_SEM_TIMEOUT: i32 = 121;
const ERROR_INVALID_NAME: i32 = 123;
const ERROR_BAD_PATHNAME: i32 = 161;
const ERROR_ALREADY_EXISTS: i32 = 183;
const ERROR_PIPE_BUSY: i32 = 231;

pub(crate) fn server_error(e: &io::Error) -> (LocalSocketError, &'static str) {
    match e.raw_os_error() {
        Some(ERROR_ACCESS_DENIED) => (LocalSocketError::AddressInUse, "Address in use"),
        Some(ERROR_ALREADY_EXISTS | ERROR_PIPE_BUSY) => (LocalSocketError::AddressInUse, "Address in use"),
        Some(ERROR_INVALID_NAME | ERROR_BAD_PATHNAME | ERROR_FILE_NOT_FOUND) => {
            (LocalSocketError::ServerNotFound, "Name error")
        }
        _ if e.kind() == io::ErrorKind::Unsupported => {
            (LocalSocketError::UnsupportedSocketOperation, "The socket operation is not supported")
        }
        _ => (LocalSocketError::Unknown, ""),
    }
}

pub(crate) fn connect_error(e: &io::Error) -> LocalSocketError {
    match e.raw_os_error() {
        Some(ERROR_FILE_NOT_FOUND | ERROR_INVALID_NAME | ERROR_BAD_PATHNAME) => {
            LocalSocketError::ServerNotFound
        }
        Some(ERROR_ACCESS_DENIED) => LocalSocketError::SocketAccess,
        Some(ERROR_PIPE_BUSY | ERROR_SEM_TIMEOUT) => LocalSocketError::SocketTimeout,
        _ if e.kind() == io::ErrorKind::TimedOut => LocalSocketError::SocketTimeout,
        _ if e.kind() == io::ErrorKind::NotFound => LocalSocketError::ServerNotFound,
        _ if e.kind() == io::ErrorKind::Unsupported => LocalSocketError::UnsupportedSocketOperation,
        _ => LocalSocketError::Unknown,
    }
}
