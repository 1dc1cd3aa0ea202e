//! Line I/O on a launch's connection, bounded in time and size (the primary's side reads
//! through its loop and answers through `request::send_reply`).

use std::io;
use std::time::{Duration, Instant};

use crate::LocalSocket;

/// Sets a socket's read or write timeout. Named pipes have none (interprocess offers none
/// on Windows): there each blocking read or write is bounded by a `sys::IoDeadline`
/// instead, which cancels the pipe's I/O when the deadline passes.
#[allow(dead_code)] // the launch's write on Windows
pub(super) fn set_timeout(socket: &LocalSocket, read: bool, t: Duration) -> io::Result<()> {
    let t = Some(t.max(Duration::from_millis(1)));
    let r = if read { socket.set_read_timeout(t) } else { socket.set_write_timeout(t) };
    match r {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
        r => r,
    }
}

pub(super) enum ReadError {
    Closed,
    TimedOut,
    TooLarge,
    Io(io::Error),
}

/// Reads one line (without its newline) of at most `limit` bytes before `deadline`.
pub(super) fn read_line(
    socket: &LocalSocket,
    deadline: Instant,
    limit: usize,
) -> std::result::Result<Vec<u8>, ReadError> {
    // Read straight onto the line, 8 KiB at a time, never zeroed first.
    const CHUNK: usize = 8192;
    let mut line = Vec::new();
    loop {
        if deadline.saturating_duration_since(Instant::now()).is_zero() {
            return Err(ReadError::TimedOut);
        }
        let start = line.len();
        match crate::sys::read_until(socket, &mut line, CHUNK, deadline) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ReadError::TimedOut)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        }
        if let Some(i) = line[start..].iter().position(|&b| b == b'\n') {
            if start + i > limit {
                return Err(ReadError::TooLarge);
            }
            line.truncate(start + i);
            return Ok(line);
        }
        if line.len() > limit {
            return Err(ReadError::TooLarge);
        }
    }
}
