//! The launch as a remote command line (protocol version 2, `protocol::frame`): what it
//! asks for, its conversation with the primary after the request line (the `taken` frame,
//! output chunks written as they arrive, stdin streamed, the reply), and the fall back to
//! version 1 for an older primary.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::launch::{far_deadline, is_disconnect, RequestLine};
use super::location::Location;
use super::transport::ReadError;
use super::{Reply, SingleInstance};
use crate::protocol::frame::{self, Ask, Frame, MAX_CHUNK, MAX_FRAME};
use crate::protocol::ProtocolError;
use crate::{Error, LocalSocket, Result};

/// What a launch asks of the primary beyond its request (see the builder methods).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Asks {
    pub(super) wait: Wait,
    pub(super) stdin: bool,
    pub(super) replace: bool,
}

/// How long a launch waits for the reply once its request is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Wait {
    /// Within the one timeout, counted from the start (as a launch of version 1).
    #[default]
    Timeout,
    /// This long from `taken`.
    For(Duration),
    /// For as long as the primary lives.
    Forever,
}

impl Asks {
    pub(super) fn ask(self) -> Ask {
        Ask { wait: self.wait != Wait::Timeout, stdin: self.stdin, replace: self.replace }
    }
}

/// How often a launch that waits past its timeout looks whether the primary's process
/// still runs: its connection ends when the process dies, unless another process holds it
/// too (a child the primary forked without exec keeps every descriptor).
const PRIMARY_CHECK: Duration = Duration::from_secs(1);

/// How often the launch's stdin thread looks whether the conversation ended.
const STDIN_TICK: Duration = Duration::from_millis(100);

impl SingleInstance {
    /// Once the primary has taken the request (its app received it), waits for the reply
    /// for as long as the primary lives, past the [timeout](Self::timeout), which then
    /// bounds only the handing over: what an editor's `--wait` needs (`git commit` waits
    /// until the file is closed). A primary that dies or releases meanwhile ends the wait
    /// at once with an error (an [`Error::Io`] of kind `ConnectionAborted`), never a
    /// hang: within a second where a child it forked without exec still holds the
    /// connection (the launch looks at the primary's process once a second while it
    /// waits). Default: `false`, one timeout for everything.
    pub fn wait_for_reply(mut self, yes: bool) -> Self {
        self.remote.wait = if yes { Wait::Forever } else { Wait::Timeout };
        self
    }

    /// How long to wait for the reply once the primary has taken the request: `None`, for
    /// as long as the primary lives (as [`wait_for_reply(true)`](Self::wait_for_reply)).
    /// A primary that has not answered by then fails the launch with
    /// [`Error::NoReply`].
    pub fn reply_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.remote.wait = timeout.map_or(Wait::Forever, Wait::For);
        self
    }

    /// Forwards this process's stdin to the primary, streamed until its end, byte for
    /// byte, once the primary has taken the request ([`Request::stdin`](crate::Request::stdin)
    /// reads it). Opt-in: a launch sends no stdin unless asked. Default: `false`.
    pub fn forward_stdin(mut self, yes: bool) -> Self {
        self.remote.stdin = yes;
        self
    }

    /// One attempt to hand the request over ([`forward`](Self::forward)), in version 2,
    /// and again in version 1 for a primary that speaks only that, when this launch asks
    /// for nothing version 1 has.
    pub(super) fn forward_any(
        &self,
        loc: &Location,
        line: &mut RequestLine,
        deadline: Instant,
        refused: &mut Option<String>,
    ) -> Result<Option<Reply>> {
        match self.forward(loc, line, frame::STREAM_VERSION, deadline, refused) {
            Err(Error::Rejected(r)) if frame::is_version_refusal(r.error_message().unwrap_or_default()) => {
                let ask = self.remote.ask();
                if !ask.needs_v2() {
                    return self.forward(loc, line, 1, deadline, refused);
                }
                let what = match ask {
                    Ask { replace: true, .. } => "hand over to this launch",
                    Ask { stdin: true, .. } => "read this launch's stdin",
                    _ => "let this launch wait for its reply past its timeout",
                };
                Err(Error::Protocol(
                    format!(
                        "the running primary speaks protocol version 1 only, and cannot {what}: \
                         restart it with this version, or launch without asking for it"
                    )
                    .into(),
                ))
            }
            r => r,
        }
    }

    /// The conversation after the request line: `Ok(None)` to start over (the primary
    /// went away before taking the request, or told this launch to retry).
    pub(super) fn converse(
        &self,
        socket: &LocalSocket,
        deadline: Instant,
        from_another_user: bool,
        decode: &dyn Fn(&[u8]) -> std::result::Result<Reply, ProtocolError>,
    ) -> Result<Option<Reply>> {
        let stop = AtomicBool::new(false);
        let stdin_started = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let mut reader = LineReader::default();
            let limit = self.max_message_size.max(MAX_FRAME);
            let mut deadline = deadline;
            let mut waited = self.timeout;
            let (mut taken, mut handover) = (false, false);
            // The primary's process, looked at while this launch waits past its timeout.
            let mut primary_pid: Option<u32> = None;
            // Output of the request was shown: the app ran it.
            let mut shown = false;
            let gone = |taken: bool, shown: bool| {
                // A waiting launch, one whose stdin went, or one that showed output of its
                // request fails (sent again, the request would run twice, its output shown
                // twice, or cut short without a word); any other starts over, a replace
                // always (it then finds the old primary gone, and may become the primary).
                let committed = self.remote.wait != Wait::Timeout || stdin_started.load(Ordering::SeqCst);
                if taken && committed || shown && !self.remote.replace {
                    Err(Error::Io(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the primary instance went away before it answered (it exited, was killed, \
                         or released)",
                    )))
                } else {
                    Ok(None)
                }
            };
            let result = loop {
                let until = match primary_pid {
                    Some(_) => deadline.min(Instant::now() + PRIMARY_CHECK),
                    None => deadline,
                };
                let line = match reader.next(socket, until, limit) {
                    Ok(line) => line,
                    Err(ReadError::Closed) => break gone(taken, shown),
                    Err(ReadError::Io(e)) if is_disconnect(&e) => break gone(taken, shown),
                    Err(ReadError::TimedOut) if until < deadline => match primary_pid {
                        Some(pid) if !crate::sys::process_exists(pid) => break gone(taken, shown),
                        _ => continue,
                    },
                    Err(ReadError::TimedOut) => break Err(Error::NoReply(waited)),
                    Err(ReadError::TooLarge) => {
                        let m = format!("reply too large (limit {} bytes)", self.max_message_size);
                        break Err(Error::Protocol(m.into()));
                    }
                    Err(ReadError::Io(e)) => break Err(e.into()),
                };
                match Frame::decode(&line) {
                    Ok(None) => {
                        break match decode(&line) {
                            Ok(r) if r.retry => gone(taken, shown),
                            Ok(r) if !r.ok => Err(Error::Rejected(Box::new(r))),
                            Ok(_) if self.remote.replace && !handover => {
                                Err(Error::Rejected(Box::new(Reply::error(
                                    "the running primary did not hand over: it answered the request as \
                                 any other (it does not take replace requests)",
                                ))))
                            }
                            Ok(r) => Ok(Some(r)),
                            Err(e) => Err(Error::Protocol(e)),
                        }
                    }
                    // Only the reply line may be longer (up to the message size limit).
                    Ok(Some(_)) if line.len() > MAX_FRAME => {
                        let m = format!("a frame line over {MAX_FRAME} bytes");
                        break Err(Error::Protocol(m.into()));
                    }
                    Ok(Some(Frame::Taken)) if !taken => {
                        taken = true;
                        (deadline, waited) = match self.remote.wait {
                            Wait::Timeout => (deadline, self.timeout),
                            Wait::For(d) => (far_deadline(d), d),
                            Wait::Forever => (far_deadline(Duration::MAX), Duration::MAX),
                        };
                        if self.remote.wait != Wait::Timeout {
                            primary_pid = socket.peer_credentials().ok().and_then(|c| c.pid);
                        }
                        if self.remote.stdin {
                            stdin_started.store(true, Ordering::SeqCst);
                            let stop = &stop;
                            scope.spawn(move || forward_stdin(socket, stop));
                        }
                    }
                    Ok(Some(Frame::Stdout(bytes))) => {
                        shown = true;
                        emit(&mut io::stdout().lock(), &bytes, from_another_user)
                    }
                    Ok(Some(Frame::Stderr(bytes))) => {
                        shown = true;
                        emit(&mut io::stderr().lock(), &bytes, from_another_user)
                    }
                    Ok(Some(Frame::Handover)) => handover = true,
                    Ok(Some(f)) => break Err(Error::Protocol(format!("unexpected frame {f:?}").into())),
                    Err(e) => {
                        let e = if from_another_user { crate::protocol::defuse(&e).into_owned() } else { e };
                        break Err(Error::Protocol(e.into()));
                    }
                }
            };
            stop.store(true, Ordering::SeqCst);
            result
        })
    }
}

/// Writes a chunk of the primary's output to this process's stdout or stderr, defused
/// when another user's primary sent it (see [`Reply`]).
fn emit(out: &mut dyn Write, bytes: &[u8], from_another_user: bool) {
    let _ = if from_another_user {
        let text = String::from_utf8_lossy(bytes);
        out.write_all(crate::protocol::defuse(&text).as_bytes())
    } else {
        out.write_all(bytes)
    };
    let _ = out.flush();
}

/// Streams this process's stdin to the primary as stdin frames, then the end, until
/// `stop`. A thread of its own reads stdin (it may block for ever on a terminal, and is
/// left behind); at most a few chunks wait between the two.
fn forward_stdin(socket: &LocalSocket, stop: &AtomicBool) {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let reader = std::thread::Builder::new().name("solo-instance stdin".into());
    let spawned = reader.spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let mut buf = vec![0u8; MAX_CHUNK];
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send(buf).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    if spawned.is_err() {
        return;
    }
    loop {
        let (bytes, last) = match rx.recv_timeout(STDIN_TICK) {
            Ok(chunk) => (Frame::Stdin(chunk).encode(), false),
            Err(mpsc::RecvTimeoutError::Timeout) if !stop.load(Ordering::SeqCst) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => (Frame::Eof.encode(), true),
        };
        let mut sent = 0;
        while sent < bytes.len() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match crate::sys::send_some(socket, &bytes[sent..], Instant::now() + STDIN_TICK, stop) {
                Ok(n) => sent += n,
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
        if last {
            return;
        }
    }
}

/// Lines from the primary, each at most a limit long; bytes past a line are kept for the
/// next.
#[derive(Default)]
struct LineReader {
    buf: Vec<u8>,
    /// Bytes of `buf` known to hold no newline.
    scanned: usize,
    /// What one read takes, straight onto `buf`: 1 KiB at first (a reply line is most
    /// often shorter), doubled each time a read fills it, up to 64 KiB (output frames), so
    /// that a short exchange does not reserve a large buffer.
    chunk: usize,
}

impl LineReader {
    fn next(
        &mut self,
        socket: &LocalSocket,
        deadline: Instant,
        limit: usize,
    ) -> std::result::Result<Vec<u8>, ReadError> {
        if self.chunk == 0 {
            self.chunk = 1 << 10;
        }
        loop {
            if let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + i;
                if end > limit {
                    return Err(ReadError::TooLarge);
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                return Ok(line);
            }
            self.scanned = self.buf.len();
            if self.buf.len() > limit {
                return Err(ReadError::TooLarge);
            }
            match crate::sys::recv_some(socket, &mut self.buf, self.chunk, deadline) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    if n == self.chunk && n < 64 << 10 {
                        self.chunk = n * 2;
                    }
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(ReadError::TimedOut)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}
