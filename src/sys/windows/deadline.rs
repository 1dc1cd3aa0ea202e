//! Deadlines on a pipe's blocking I/O: named pipes have no I/O
//! timeouts (interprocess refuses `set_recv_timeout`), so one shared timer thread cancels
//! overdue I/O with `CancelIoEx`.

use std::os::windows::io::{AsHandle, AsRawHandle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use interprocess::local_socket::Stream;
use interprocess::os::windows::named_pipe::{pipe_mode, DuplexPipeStream};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::IO::CancelIoEx;

/// A deadline on a pipe's blocking I/O: named pipes have no read or write timeouts, so
/// while this guard lives, a shared timer thread cancels (`CancelIoEx`) the pipe's
/// pending I/O once `deadline` has passed, and again every [`RECANCEL`] until the guard
/// is dropped (an operation started just after a cancel is caught by the next one).
///
/// interprocess does pipe I/O with `ReadFileEx`/`WriteFileEx` and waits alertably for
/// the completion routine, so a cancelled read or write returns `ERROR_OPERATION_ABORTED`, which std reports as
/// [`io::ErrorKind::TimedOut`]: callers treat it as a socket timeout on Unix. A cancelled
/// read consumes nothing (one that completed first is not cancelled); a cancelled write
/// may have sent part of its bytes, so after a timeout the connection is given up: a
/// guard that expired marks the stream flushed when dropped, so that dropping the stream
/// closes the pipe at once rather than in interprocess' linger pool (whose one thread
/// would wait for a peer that never reads).
///
/// The guard borrows the stream, so the handle is open for as long as the timer may use
/// it; dropping the guard takes it out of the timer's list under the timer's lock, so no
/// cancel follows the drop.
///
/// Cost: nothing until the first guard; then one thread for the process, asleep on a
/// condition variable while no deadline is pending. Arming and dropping a guard take the
/// timer's lock once each.
#[derive(Debug)]
pub(crate) struct IoDeadline<'a> {
    entry: Arc<DeadlineEntry>,
    stream: &'a Stream,
}

/// How often an expired deadline cancels again while its guard lives.
const RECANCEL: Duration = Duration::from_millis(25);

#[derive(Debug)]
struct DeadlineEntry {
    /// The raw `HANDLE`, open while the entry is in the timer's list.
    handle: usize,
    deadline: Instant,
    expired: AtomicBool,
}

#[derive(Debug, Default)]
struct Timer {
    entries: Mutex<Vec<Arc<DeadlineEntry>>>,
    cond: Condvar,
}

static TIMER: OnceLock<Option<Arc<Timer>>> = OnceLock::new();

fn timer() -> Option<&'static Arc<Timer>> {
    TIMER
        .get_or_init(|| {
            let timer = Arc::new(Timer::default());
            let t = Arc::clone(&timer);
            std::thread::Builder::new()
                .name("solo-instance pipe deadlines".into())
                .stack_size(64 * 1024)
                .spawn(move || t.run())
                .ok()
                .map(|_| timer)
        })
        .as_ref()
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<DeadlineEntry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let mut entries = self.lock();
        loop {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for e in entries.iter() {
                let at = if now >= e.deadline {
                    e.expired.store(true, Ordering::SeqCst);
                    // SAFETY: the handle belongs to a stream that the entry's guard borrows;
                    // the guard takes the entry out of this list (under this lock) before the
                    // borrow ends, so the handle is open here.
                    unsafe { CancelIoEx(e.handle as HANDLE, std::ptr::null()) };
                    now + RECANCEL
                } else {
                    e.deadline
                };
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            entries = match next {
                None => self.cond.wait(entries).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    self.cond.wait_timeout(entries, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }
}

pub(crate) fn pipe(stream: &Stream) -> &DuplexPipeStream<pipe_mode::Bytes> {
    match stream {
        Stream::NamedPipe(s) => s.inner(),
    }
}

impl<'a> IoDeadline<'a> {
    /// Arms a deadline on `stream`'s I/O until the guard is dropped. Should the timer
    /// thread fail to start, the guard does nothing (the I/O is unbounded, as without it).
    pub(crate) fn arm(stream: &'a Stream, deadline: Instant) -> IoDeadline<'a> {
        let handle = pipe(stream).as_handle().as_raw_handle() as usize;
        let entry = Arc::new(DeadlineEntry { handle, deadline, expired: AtomicBool::new(false) });
        if let Some(timer) = timer() {
            timer.lock().push(Arc::clone(&entry));
            timer.cond.notify_one();
        }
        IoDeadline { entry, stream }
    }

    /// Whether the deadline passed and the stream's I/O was cancelled.
    #[cfg(test)]
    pub(crate) fn expired(&self) -> bool {
        self.entry.expired.load(Ordering::SeqCst)
    }
}

impl Drop for IoDeadline<'_> {
    fn drop(&mut self) {
        if let Some(timer) = timer() {
            timer.lock().retain(|e| !Arc::ptr_eq(e, &self.entry));
        }
        if self.entry.expired.load(Ordering::SeqCst) {
            pipe(self.stream).assume_flushed();
        }
    }
}

/// Reads what a launch's connection has before `deadline` (a blocking read, cancelled
/// when the deadline passes: `TimedOut`). `Ok(0)` at the end.
pub(crate) fn read_until(
    socket: &crate::LocalSocket,
    line: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> std::io::Result<usize> {
    use std::io::Read;
    let _deadline = IoDeadline::arm(socket.as_stream(), deadline);
    let start = line.len();
    line.resize(start + max, 0);
    let read = (&*socket).read(&mut line[start..]);
    line.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Write};

    use std::path::PathBuf;

    use super::*;
    use crate::sys::{connect, Listener};
    use crate::SocketOptions;

    fn pair(tag: &str) -> (Listener, Stream, Stream) {
        let path = PathBuf::from(format!(r"\\.\pipe\solo-unit-{}-{tag}", std::process::id()));
        let listener = Listener::bind(&path, SocketOptions::empty(), 0).unwrap();
        let client = connect(&path, SocketOptions::empty(), Some(Duration::from_secs(5))).unwrap();
        listener.wait(Some(Duration::from_secs(5))).unwrap();
        let server = listener.try_accept().unwrap().expect("accepted");
        (listener, client, server)
    }

    /// A read blocked past its deadline is cancelled and reports TimedOut; the stream
    /// stays usable and no byte is lost; an unexpired guard changes nothing.
    #[test]
    fn deadline_cancels_a_blocked_read() {
        let (_l, client, server) = pair("read");
        let t = Instant::now();
        let guard = IoDeadline::arm(&server, t + Duration::from_millis(200));
        let mut buf = [0u8; 4];
        let e = (&server).read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e:?}");
        assert!(guard.expired());
        assert!(t.elapsed() >= Duration::from_millis(190), "{:?}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        drop(guard);

        let _guard = IoDeadline::arm(&server, Instant::now() + Duration::from_secs(30));
        (&client).write_all(b"abcd").unwrap();
        (&server).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
    }

    /// Dropping a listener whose thread waits in `ConnectNamedPipe` cancels that wait:
    /// prompt, and without the connection of our own that the fallback makes.
    #[test]
    fn drop_cancels_the_blocked_accept() {
        for i in 0..20 {
            let path = PathBuf::from(format!(r"\\.\pipe\solo-unit-{}-drop{i}", std::process::id()));
            let listener = Listener::bind(&path, SocketOptions::empty(), 0).unwrap();
            if i % 2 == 1 {
                std::thread::sleep(Duration::from_millis(20));
            }
            let t = Instant::now();
            drop(listener);
            assert!(t.elapsed() < Duration::from_millis(900), "drop took {:?}", t.elapsed());
        }
    }

    /// A write that cannot complete (the peer never reads, the 512-byte pipe buffer is
    /// full) is cancelled too.
    #[test]
    fn deadline_cancels_a_blocked_write() {
        let (_l, _client, server) = pair("write");
        let t = Instant::now();
        let _guard = IoDeadline::arm(&server, t + Duration::from_millis(200));
        let e = (&server).write_all(&vec![7u8; 1 << 20]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
}
