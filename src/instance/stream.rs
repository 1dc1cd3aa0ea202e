//! A launch's streams at the primary's end (protocol version 2, `protocol::frame`): the
//! `taken` frame when the app receives the request, the app's output to the launch's
//! stdout and stderr, the launch's stdin, and the reply after all output, in order.
//!
//! Output never blocks the app's thread: [`Output`] queues up to [`OUTPUT_BUFFER`] bytes
//! per request, and one thread per request (started by the first output) writes them to
//! the launch; past the bound a write takes nothing (`WouldBlock`), unless the app made
//! the writer [blocking](Output::blocking). The launch's stdin is read from the connection
//! only while the app reads [`Input`], one frame at a time, so a primary that does not
//! read it holds no more than one frame: the launch waits instead.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::request::{launch_is_gone, respond, BUSY};
use super::{Delivery, Reply, Request};
use crate::protocol::frame::{self, Ask, Frame, MAX_CHUNK, MAX_FRAME, STREAM_VERSION};
use crate::sys::Connection;

/// Most bytes of output (stdout and stderr together) a request holds for a launch that
/// has not read them yet; more waits for room (see [`Output`]). As frames they take a
/// third more.
pub const OUTPUT_BUFFER: usize = 1 << 20;

/// How long a reply may wait for the launch to take the output before it, and then the
/// reply itself: a launch that reads nothing for this long has gone.
const REPLY_DEADLINE: Duration = Duration::from_secs(2);

/// How long `taken` may wait: it is the first thing written on the connection, so it
/// fits at once unless the launch is gone.
const TAKEN_DEADLINE: Duration = Duration::from_millis(200);

/// A version-2 request's connection, shared by the request, its [`Output`]s, its
/// [`Input`] and the thread that writes the output.
pub(super) struct Remote(Arc<Shared>);

struct Shared {
    conn: Connection,
    ask: Ask,
    out: Mutex<Out>,
    changed: Condvar,
    input: Mutex<In>,
    /// The primary's list of streams, once the app took the request.
    registry: OnceLock<Registry>,
}

#[derive(Default)]
struct Out {
    /// Encoded frames for the writer thread, with the output bytes each carries.
    frames: VecDeque<(Vec<u8>, usize)>,
    /// Output bytes queued or being written.
    held: usize,
    /// The reply line, once the app answered: written after the frames.
    reply: Option<Vec<u8>>,
    /// The writer thread runs.
    writer: bool,
    /// The writer wrote the reply (`true`) or gave up (`false`).
    done: Option<bool>,
    /// The launch went away, or was cut off: output is dropped.
    gone: bool,
    /// Frames written so far: a reply waits while this moves.
    written: u64,
    taken: bool,
}

struct In {
    /// Bytes read from the connection and not decoded yet (at most one frame and a read).
    raw: Vec<u8>,
    /// Decoded stdin not handed out yet, from `pos` on.
    ready: Vec<u8>,
    pos: usize,
    eof: bool,
    error: Option<(io::ErrorKind, String)>,
}

impl Remote {
    /// The streams of the request `line` (without its newline; `rest`: what the loop read
    /// past it, the start of the launch's stdin). `Ok((Some(conn), None))`: a version-1
    /// request. `Err(())`: refused, and answered.
    pub(super) fn of(
        conn: Connection,
        line: &[u8],
        rest: &[u8],
    ) -> Result<(Option<Connection>, Option<Remote>), ()> {
        let ask = match frame::decode_ask(line) {
            Ok(Some(ask)) => ask,
            Ok(None) => return Ok((Some(conn), None)),
            Err(e) => {
                respond(&conn, &Reply::error(e));
                return Err(());
            }
        };
        if ask.stdin && !crate::sys::STDIN_STREAMS {
            let why = Reply::error("this primary cannot read a launch's stdin (Windows)");
            let _ = conn.send(&frame::reply_line(&why, STREAM_VERSION), Instant::now() + REPLY_DEADLINE);
            return Err(());
        }
        let input = In { raw: rest.to_vec(), ready: Vec::new(), pos: 0, eof: !ask.stdin, error: None };
        let shared = Shared {
            conn,
            ask,
            out: Mutex::new(Out::default()),
            changed: Condvar::new(),
            input: Mutex::new(input),
            registry: OnceLock::new(),
        };
        Ok((None, Some(Remote(Arc::new(shared)))))
    }

    pub(super) fn ask(&self) -> Ask {
        self.0.ask
    }

    /// Tells the launch that the app received its request (once), and lists the stream
    /// in `registry`, so that a release cuts it off.
    pub(super) fn taken(&self, registry: &Registry) {
        let mut out = self.0.lock_out();
        if std::mem::replace(&mut out.taken, true) {
            return;
        }
        drop(out);
        if self.0.conn.send(&Frame::Taken.encode(), Instant::now() + TAKEN_DEADLINE).is_err() {
            self.0.lock_out().gone = true;
        }
        registry.add(&self.0);
        let _ = self.0.registry.set(registry.clone());
    }

    /// Whether the launch went away (or was cut off).
    pub(super) fn is_abandoned(&self) -> bool {
        self.0.lock_out().gone || self.0.conn.is_closed()
    }

    /// Queues a frame that carries no output (`handover`).
    pub(super) fn push(&self, f: &Frame) {
        let mut out = self.0.lock_out();
        if !out.gone && out.reply.is_none() {
            out.frames.push_back((f.encode(), 0));
            Shared::start_writer(&self.0, &mut out);
        }
    }

    /// Sends `reply` after the output queued before it. Waits while the launch takes
    /// output, and at most [`REPLY_DEADLINE`] past the last frame it took.
    pub(super) fn reply(self, reply: &Reply) -> io::Result<Delivery> {
        let s = &self.0;
        let line = frame::reply_line(reply, STREAM_VERSION);
        let mut out = s.lock_out();
        if out.gone {
            return Ok(Delivery::Abandoned);
        }
        if !out.writer && out.frames.is_empty() {
            out.done = Some(false);
            drop(out);
            return match s.conn.send(&line, Instant::now() + REPLY_DEADLINE) {
                Ok(()) => Ok(Delivery::Delivered),
                Err(e) if launch_is_gone(&e) => Ok(Delivery::Abandoned),
                Err(e) => Err(e),
            };
        }
        out.reply = Some(line);
        Shared::start_writer(s, &mut out);
        s.changed.notify_all();
        let mut seen = out.written;
        let mut until = Instant::now() + REPLY_DEADLINE;
        loop {
            if let Some(done) = out.done {
                return Ok(if done { Delivery::Delivered } else { Delivery::Abandoned });
            }
            if out.written != seen {
                seen = out.written;
                until = Instant::now() + REPLY_DEADLINE;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // The launch reads nothing: cut it off (the writer's write fails).
                out.gone = true;
                drop(out);
                s.conn.hang_up();
                return Ok(Delivery::Abandoned);
            }
            out = s.changed.wait_timeout(out, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

impl Shared {
    fn lock_out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the thread that writes the queued frames, if none runs. Without a thread the
    /// output is dropped and the reply goes as it would without output.
    fn start_writer(shared: &Arc<Shared>, out: &mut Out) {
        if out.writer || out.gone {
            return;
        }
        let s = Arc::clone(shared);
        let thread = std::thread::Builder::new().name("solo-instance output".into());
        let spawned = crate::sys::with_signals_blocked(|| thread.spawn(move || s.write_frames()));
        match spawned {
            Ok(_) => out.writer = true,
            Err(_) => {
                out.frames.clear();
                out.held = 0;
                if let Some(reply) = out.reply.take() {
                    let sent = shared.conn.send(&reply, Instant::now() + REPLY_DEADLINE);
                    out.done = Some(sent.is_ok());
                }
            }
        }
    }

    /// The writer thread: frames in order, then the reply. A launch that does not read
    /// holds this thread (not the app's) until it reads, goes, or is cut off.
    fn write_frames(&self) {
        loop {
            let mut out = self.lock_out();
            let (bytes, carried, last) = loop {
                if out.gone {
                    out.frames.clear();
                    out.held = 0;
                    out.done.get_or_insert(false);
                    self.changed.notify_all();
                    return;
                }
                if let Some((f, n)) = out.frames.pop_front() {
                    break (f, n, false);
                }
                if let Some(r) = out.reply.take() {
                    break (r, 0, true);
                }
                out = self.changed.wait(out).unwrap_or_else(|p| p.into_inner());
            };
            drop(out);
            let sent = self.conn.send(&bytes, super::launch::far_deadline(Duration::MAX));
            let mut out = self.lock_out();
            out.held -= carried;
            out.written += 1;
            match sent {
                Ok(()) if last => out.done = Some(true),
                Ok(()) => {}
                Err(_) => out.gone = true,
            }
            self.changed.notify_all();
            if last {
                return;
            }
        }
    }
}

/// The streams a release cuts off (the launches that wait for a request the app took), and
/// the process a replace hands over to.
#[derive(Clone, Default)]
pub(super) struct Registry(Arc<Mutex<Streams>>);

#[derive(Default)]
struct Streams {
    list: Vec<Weak<Shared>>,
    handover: Option<u32>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Streams> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, s: &Arc<Shared>) {
        let mut streams = self.lock();
        streams.list.retain(|w| w.strong_count() > 0);
        streams.list.push(Arc::downgrade(s));
    }

    /// The process an accepted replace hands over to.
    pub(super) fn handover(&self) -> Option<u32> {
        self.lock().handover
    }

    /// The primary releases: each launch still waiting for its reply reads the end now,
    /// and fails (a request the app holds can no longer reach it).
    pub(super) fn cut_off(&self) {
        let list = std::mem::take(&mut self.lock().list);
        for s in list.iter().filter_map(Weak::upgrade) {
            let mut out = s.lock_out();
            if out.done.is_none() {
                out.gone = true;
                s.changed.notify_all();
                drop(out);
                s.conn.hang_up();
            }
        }
    }
}

/// The launch's stdout or stderr, as the primary writes to it: see
/// [`Request::stdout`]. Chunks arrive at the launch in the order written, before the
/// reply.
///
/// A write never blocks by default: it queues what fits in [`OUTPUT_BUFFER`] (what a
/// launch has not read yet counts) and fails with [`io::ErrorKind::WouldBlock`] when
/// nothing fits; a [`blocking`](Self::blocking) writer waits for room instead (for a
/// worker thread). Output to a launch that went away, of protocol version 1 (it gets only
/// the reply), to a D-Bus caller, or after the reply, is dropped: the write succeeds.
pub struct Output {
    remote: Option<Arc<Shared>>,
    stderr: bool,
    blocking: bool,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("stderr", &self.stderr)
            .field("blocking", &self.blocking)
            .field("streams", &self.remote.is_some())
            .finish()
    }
}

impl Output {
    /// Makes writes wait for room while the launch reads (for a thread that may block,
    /// not a GUI's): they end when it has taken enough, or went away.
    #[must_use]
    pub fn blocking(mut self, yes: bool) -> Output {
        self.blocking = yes;
        self
    }

    /// Whether anything written reaches a launch (protocol version 2, still there).
    pub fn is_connected(&self) -> bool {
        self.remote.as_ref().is_some_and(|s| {
            let out = s.lock_out();
            !out.gone && out.reply.is_none() && out.done.is_none()
        })
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(s) = &self.remote else { return Ok(buf.len()) };
        if buf.is_empty() {
            return Ok(0);
        }
        let mut out = s.lock_out();
        let room = loop {
            if out.gone || out.reply.is_some() || out.done.is_some() {
                return Ok(buf.len());
            }
            let room = OUTPUT_BUFFER.saturating_sub(out.held);
            if room > 0 {
                break room;
            }
            if !self.blocking {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            out = s.changed.wait(out).unwrap_or_else(|p| p.into_inner());
        };
        let n = buf.len().min(room).min(MAX_CHUNK);
        let chunk = buf[..n].to_vec();
        let f = if self.stderr { Frame::Stderr(chunk) } else { Frame::Stdout(chunk) };
        out.frames.push_back((f.encode(), n));
        out.held += n;
        Shared::start_writer(s, &mut out);
        s.changed.notify_all();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The launch's stdin, as the primary reads it: see [`Request::stdin`]. Reading blocks
/// until the launch sends more; it ends (`Ok(0)`) at the launch's end of input, at once
/// for a launch that forwards none.
pub struct Input {
    remote: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input").field("forwarded", &self.remote.is_some()).finish()
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(s) = &self.remote else { return Ok(0) };
        let mut inp = s.input.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if inp.pos < inp.ready.len() {
                let n = buf.len().min(inp.ready.len() - inp.pos);
                buf[..n].copy_from_slice(&inp.ready[inp.pos..inp.pos + n]);
                inp.pos += n;
                return Ok(n);
            }
            if let Some((kind, why)) = &inp.error {
                return Err(io::Error::new(*kind, why.clone()));
            }
            if inp.eof || buf.is_empty() {
                return Ok(0);
            }
            if let Some(i) = inp.raw.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = inp.raw.drain(..=i).collect();
                match Frame::decode(&line[..i]) {
                    Ok(Some(Frame::Stdin(bytes))) => {
                        inp.ready = bytes;
                        inp.pos = 0;
                    }
                    Ok(Some(Frame::Eof)) => inp.eof = true,
                    Ok(_) => inp.error = Some((io::ErrorKind::InvalidData, "not a stdin frame".into())),
                    Err(e) => inp.error = Some((io::ErrorKind::InvalidData, e)),
                }
                continue;
            }
            if inp.raw.len() > MAX_FRAME {
                let why = format!("a stdin frame over {MAX_FRAME} bytes");
                inp.error = Some((io::ErrorKind::InvalidData, why));
                continue;
            }
            let mut chunk = [0u8; 16 << 10];
            match s.conn.read(&mut chunk) {
                Ok(0) => {
                    let why = "the launch went away before the end of its stdin";
                    inp.error = Some((io::ErrorKind::UnexpectedEof, why.into()));
                }
                Ok(n) => inp.raw.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    crate::sys::wait_readable(&s.conn, None)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => inp.error = Some((e.kind(), e.to_string())),
            }
        }
    }
}

impl Request {
    /// A writer to the launch's stdout: what it writes reaches the launch's terminal while
    /// the app works, before the reply (a launch of this crate writes each chunk as it
    /// arrives). See [`Output`] for its bounds.
    ///
    /// ```
    /// use std::io::Write;
    /// use solo_instance::{Reply, SingleInstance, Start};
    /// # let dir = std::env::temp_dir().join(format!("doc-stdout-{}", std::process::id()));
    /// # let app = |dir: &std::path::Path| SingleInstance::new("org.example.Build").unwrap().directory(dir);
    /// # let Start::Primary(primary) = app(&dir).start()? else { unreachable!() };
    /// # let launch = app(&dir).argv(["build"]);
    /// # let launcher = std::thread::spawn(move || launch.send());
    /// let request = primary.recv().unwrap();
    /// writeln!(request.stdout(), "step 1 of 2")?;
    /// request.reply(Reply::ok())?;
    /// # launcher.join().unwrap()?;
    /// # drop(primary); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stdout(&self) -> Output {
        Output { remote: self.remote.as_ref().map(|r| Arc::clone(&r.0)), stderr: false, blocking: false }
    }

    /// A writer to the launch's stderr; as [`stdout`](Self::stdout).
    pub fn stderr(&self) -> Output {
        Output { stderr: true, ..self.stdout() }
    }

    /// The launch's stdin, when it forwards it
    /// ([`SingleInstance::forward_stdin`](crate::SingleInstance::forward_stdin)); empty
    /// otherwise. Reading blocks while the launch has sent nothing more: read it on a
    /// thread that may wait. Bytes arrive exactly as the launch read them.
    pub fn stdin(&self) -> Input {
        let forwarded = self.remote.as_ref().filter(|r| r.ask().stdin);
        Input { remote: forwarded.map(|r| Arc::clone(&r.0)) }
    }

    /// Whether the launch forwards its stdin.
    pub fn has_stdin(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.ask().stdin)
    }

    /// Whether the launch waits for the reply past its timeout, for as long as this primary
    /// lives ([`SingleInstance::wait_for_reply`](crate::SingleInstance::wait_for_reply)):
    /// an editor's `--wait`, answered when the user closes the file.
    pub fn is_waiting(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.ask().wait)
    }

    /// Whether the launch asks this primary to hand over to it
    /// ([`SingleInstance::replace`](crate::SingleInstance::replace)). Refuse with
    /// [`reply`](Self::reply) (a [`Reply::error`] fails the launch with its message), or
    /// [`accept_replace`](Self::accept_replace) and then release the primary.
    pub fn is_replace(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.ask().replace)
    }

    /// Accepts the launch's replace: it is told so, with an ok reply, and waits for this
    /// primary to go. Then drop or [release](crate::Primary::release) the primary: once its
    /// lock is free, the launch becomes the primary. Requests still queued are told to
    /// start over, and reach the new primary. For a request that is not a replace, the
    /// same as `reply(Reply::ok())`.
    pub fn accept_replace(self) -> io::Result<Delivery> {
        if let Some(r) = self.remote.as_ref().filter(|r| r.ask().replace) {
            r.push(&Frame::Handover);
            // Launches that find the lock free before the new primary took it wait for it.
            let pid = self.peer.and_then(|p| p.pid).or(self.head.pid);
            if let (Some(registry), Some(pid)) = (r.0.registry.get(), pid) {
                registry.lock().handover = Some(pid);
            }
        }
        self.reply(Reply::ok())
    }

    /// Tells the launch to try again (the primary is busy): it does, within its timeout.
    pub(super) fn refuse_busy(&mut self) {
        if let Some(socket) = self.socket.take() {
            respond(&socket, &Reply::retry(BUSY));
        }
        if let Some(remote) = self.remote.take() {
            let _ = remote.reply(&Reply::retry(BUSY));
        }
    }
}

/// Splits what the loop read into the request line and what followed it (a version-2
/// launch's first stdin frames).
pub(super) fn split_line(mut line: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    match line.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let rest = line.split_off(i + 1);
            line.pop();
            (line, rest)
        }
        None => (line, Vec::new()),
    }
}
