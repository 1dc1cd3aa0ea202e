//! A launch's streams at the primary's end (protocol version 2, `protocol::frame`): the
//! `taken` frame when the app receives the request, the app's output to the launch's
//! stdout and stderr, the launch's stdin, and the reply after all output, in order.
//!
//! Output never blocks the app's thread: `Output` (`launch_io`) queues up to
//! [`OUTPUT_BUFFER`] bytes per request, and one thread per request (started by the first
//! output) writes them to the launch; past the bound a write takes nothing
//! (`WouldBlock`), unless the app made the writer blocking. The launch's stdin is read
//! from the connection only while the app reads `Input`, one frame at a time, so a
//! primary that does not read it holds no more than one frame: the launch waits instead.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::request::launch_is_gone;
use super::serve::Context;
use super::{Delivery, Reply};
use crate::protocol::frame::{self, Ask, Frame, STREAM_VERSION};
use crate::sys::Connection;

/// Most bytes of output (stdout and stderr together) a request holds for a launch that
/// has not read them yet; more waits for room (see [`Output`](super::Output)). As frames they take a
/// third more.
pub const OUTPUT_BUFFER: usize = 1 << 20;

/// Most chunks of output a request holds for a launch: writes to the same stream join the
/// chunk before them, so only writes to stdout and stderr in turn make many, each costing
/// some 64 bytes of memory besides its bytes (a million one-byte chunks would take 64 MiB
/// for 1 MiB of output). Past it, a write that would start a chunk waits for room as
/// past [`OUTPUT_BUFFER`].
pub(super) const OUTPUT_CHUNKS: usize = 4096;

/// How long a reply may wait for the launch to take the output before it, and then the
/// reply itself: a launch that reads nothing for this long has gone.
const REPLY_DEADLINE: Duration = Duration::from_secs(2);

/// The longest a reply waits for the launch to take the output before it, however it takes
/// it: one that takes a drop now and then (never silent for [`REPLY_DEADLINE`]) would
/// otherwise hold the app's thread for as long as the output lasts at its pace (hours, a
/// frame each 2 s, where the OS lets a writer on as soon as a few bytes were read).
const REPLY_LIMIT: Duration = Duration::from_secs(10);

/// How long `taken` may wait: it is the first thing written on the connection, so it
/// fits at once unless the launch is gone.
const TAKEN_DEADLINE: Duration = Duration::from_millis(200);

/// A version-2 request's connection, shared by the request, its `Output`s, its `Input` and the thread that writes the output.
pub(super) struct Remote(pub(super) Arc<Shared>);

pub(super) struct Shared {
    pub(super) conn: Connection,
    pub(super) ask: Ask,
    out: Mutex<Out>,
    pub(super) changed: Condvar,
    pub(super) input: Mutex<In>,
    /// The primary's list of streams, once the app took the request.
    pub(super) registry: OnceLock<Registry>,
    /// The primary's loop, whose turns a reader of stdin waits for where the connection's
    /// reads complete through it (`sys::STDIN_THROUGH_LOOP`).
    pub(super) engine: Weak<Context>,
}

/// What waits for the writer thread.
pub(super) enum Item {
    /// Output bytes, for one frame: consecutive writes to the same stream are joined, up
    /// to [`MAX_CHUNK`](crate::protocol::frame::MAX_CHUNK) (a `writeln!` makes several).
    Chunk { stderr: bool, bytes: Vec<u8> },
    /// A frame that carries no output, encoded.
    Frame(Vec<u8>),
}

#[derive(Default)]
pub(super) struct Out {
    /// Output and frames for the writer thread, in order.
    pub(super) frames: VecDeque<Item>,
    /// Output bytes queued or being written.
    pub(super) held: usize,
    /// The reply line, once the app answered: written after the frames.
    pub(super) reply: Option<Vec<u8>>,
    /// The writer thread runs.
    pub(super) writer: bool,
    /// The writer wrote the reply (`true`) or gave up (`false`).
    pub(super) done: Option<bool>,
    /// The launch went away, or was cut off: output is dropped.
    pub(super) gone: bool,
    /// Frames written so far: a reply waits while this moves.
    pub(super) written: u64,
    pub(super) taken: bool,
}

pub(super) struct In {
    /// Bytes read from the connection and not decoded yet (at most one frame and a read).
    pub(super) raw: Vec<u8>,
    /// Decoded stdin not handed out yet, from `pos` on.
    pub(super) ready: Vec<u8>,
    pub(super) pos: usize,
    pub(super) eof: bool,
    pub(super) error: Option<(io::ErrorKind, String)>,
}

impl Remote {
    /// The streams of a request that asks for `ask` (`None`: a version-1 request; `rest`:
    /// what the loop read past its line, the start of the launch's stdin), served by the
    /// loop `engine`. `(Some(conn), None)`: a version-1 request.
    pub(super) fn of(
        conn: Connection,
        ask: Option<Ask>,
        rest: &[u8],
        engine: Weak<Context>,
    ) -> (Option<Connection>, Option<Remote>) {
        let Some(ask) = ask else { return (Some(conn), None) };
        let input = In { raw: rest.to_vec(), ready: Vec::new(), pos: 0, eof: !ask.stdin, error: None };
        let shared = Shared {
            conn,
            ask,
            out: Mutex::new(Out::default()),
            changed: Condvar::new(),
            input: Mutex::new(input),
            registry: OnceLock::new(),
            engine,
        };
        (None, Some(Remote(Arc::new(shared))))
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
        // Only a launch that acts on it is told (one that waits past its timeout, streams
        // its stdin, or asks to replace): any other keeps its one timeout, and starts over
        // if the primary goes away, `taken` or not. One write and one read fewer a launch.
        if self.0.ask.needs_v2()
            && self.0.conn.send(&Frame::Taken.encode(), Instant::now() + TAKEN_DEADLINE).is_err()
        {
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
            out.frames.push_back(Item::Frame(f.encode()));
            Shared::start_writer(&self.0, &mut out);
        }
    }

    /// Sends `reply` after the output queued before it. Waits while the launch takes
    /// output, at most [`REPLY_DEADLINE`] past the last frame it took and
    /// [`REPLY_LIMIT`] in all.
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
        let limit = Instant::now() + REPLY_LIMIT;
        loop {
            if let Some(done) = out.done {
                return Ok(if done { Delivery::Delivered } else { Delivery::Abandoned });
            }
            if out.written != seen {
                seen = out.written;
                until = Instant::now() + REPLY_DEADLINE;
            }
            let left = until.min(limit).saturating_duration_since(Instant::now());
            if left.is_zero() {
                // The launch reads nothing, or too slowly: cut it off (the writer's write
                // fails).
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
    pub(super) fn lock_out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a reader of stdin notes before a read of the connection, for
    /// [`wait_input`](Self::wait_input): the loop's turns so far, where it waits for them.
    pub(super) fn before_read(&self) -> u64 {
        if crate::sys::STDIN_THROUGH_LOOP {
            self.engine.upgrade().map_or(0, |ctx| ctx.turns())
        } else {
            0
        }
    }

    /// Waits until the launch may have sent more stdin since `seen`
    /// ([`before_read`](Self::before_read)), or gone: on the connection itself, or for a
    /// turn of the loop (`sys::STDIN_THROUGH_LOOP`).
    pub(super) fn wait_input(&self, seen: u64) -> io::Result<()> {
        if !crate::sys::STDIN_THROUGH_LOOP {
            return crate::sys::wait_readable(&self.conn, None).map(drop);
        }
        match self.engine.upgrade() {
            Some(ctx) => ctx.await_turn(seen),
            None => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the primary instance was released before the end of the launch's stdin",
            )),
        }
    }

    /// Starts the thread that writes the queued frames, if none runs. Without a thread the
    /// output is dropped and the reply goes as it would without output.
    pub(super) fn start_writer(shared: &Arc<Shared>, out: &mut Out) {
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
                match out.frames.pop_front() {
                    Some(Item::Frame(f)) => break (f, 0, false),
                    Some(Item::Chunk { stderr, bytes }) => {
                        let n = bytes.len();
                        let f = if stderr { Frame::Stderr(bytes) } else { Frame::Stdout(bytes) };
                        break (f.encode(), n, false);
                    }
                    None => {}
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

/// The launches a release cuts off (those whose request the app took, version 1 and 2),
/// and the process a replace hands over to.
#[derive(Clone, Default)]
pub(super) struct Registry(Arc<Mutex<Streams>>);

#[derive(Default)]
pub(super) struct Streams {
    list: Vec<Weak<Shared>>,
    /// Version-1 requests' connections.
    plain: Vec<Weak<Connection>>,
    pub(super) handover: Option<u32>,
}

impl Registry {
    pub(super) fn lock(&self) -> MutexGuard<'_, Streams> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, s: &Arc<Shared>) {
        let mut streams = self.lock();
        streams.list.retain(|w| w.strong_count() > 0);
        streams.list.push(Arc::downgrade(s));
    }

    /// Lists a version-1 request's connection, so that a release ends it.
    pub(super) fn add_plain(&self, conn: &Arc<Connection>) {
        let mut streams = self.lock();
        streams.plain.retain(|w| w.strong_count() > 0);
        streams.plain.push(Arc::downgrade(conn));
    }

    /// The process an accepted replace hands over to.
    pub(super) fn handover(&self) -> Option<u32> {
        self.lock().handover
    }

    /// The primary releases: each launch still waiting for its reply reads the end now,
    /// and fails (a request the app holds can no longer reach it); every connection listed
    /// is closed (on Windows its pipe instance, which would keep the System scope's fixed
    /// pipe name from a successor for as long as the app holds the request, or its output).
    pub(super) fn cut_off(&self) {
        let (list, plain) = {
            let mut streams = self.lock();
            (std::mem::take(&mut streams.list), std::mem::take(&mut streams.plain))
        };
        for s in list.iter().filter_map(Weak::upgrade) {
            let mut out = s.lock_out();
            let waiting = out.done.is_none();
            if waiting {
                out.gone = true;
                s.changed.notify_all();
            }
            drop(out);
            if waiting {
                s.conn.hang_up();
            }
            // A reply written stays readable.
            s.conn.close();
        }
        // Listed while unanswered (a reply takes the connection from the request).
        for c in plain.iter().filter_map(Weak::upgrade) {
            c.hang_up();
            c.close();
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
