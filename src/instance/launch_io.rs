//! The launch's stdout, stderr and stdin as the primary's app sees them ([`Output`],
//! [`Input`]) and the [`Request`] methods of protocol version 2 (`stream`).

use std::io::{self, Read, Write};
use std::sync::Arc;

use super::request::respond;
use super::stream::{Item, Shared, OUTPUT_BUFFER, OUTPUT_CHUNKS};
use super::{Delivery, Reply, Request};
use crate::protocol::frame::{Frame, MAX_CHUNK, MAX_FRAME};

/// The launch's stdout or stderr, as the primary writes to it: see
/// [`Request::stdout`]. Chunks arrive at the launch in the order written, before the
/// reply.
///
/// A write never blocks by default: it queues what fits in [`OUTPUT_BUFFER`] (what a
/// launch has not read yet counts; and at most 4096 chunks, a chunk being a run of writes
/// to one stream, so that stdout and stderr written in turn a byte at a time stay in the
/// bound) and fails with [`io::ErrorKind::WouldBlock`] when nothing fits; a [`blocking`](Self::blocking) writer waits for room instead (for a
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
        let stderr = self.stderr;
        let mut out = s.lock_out();
        let (room, joins) = loop {
            if out.gone || out.reply.is_some() || out.done.is_some() {
                return Ok(buf.len());
            }
            let room = OUTPUT_BUFFER.saturating_sub(out.held);
            // Joined to the chunk that waits, or a chunk of its own while they are few.
            let joins = matches!(
                out.frames.back(),
                Some(Item::Chunk { stderr: same, bytes }) if *same == stderr && bytes.len() < MAX_CHUNK
            );
            if room > 0 && (joins || out.frames.len() < OUTPUT_CHUNKS) {
                break (room, joins);
            }
            if !self.blocking {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            out = s.changed.wait(out).unwrap_or_else(|p| p.into_inner());
        };
        let n = match out.frames.back_mut() {
            // Joined to the chunk that waits, while it has room (`joins`, under this lock).
            Some(Item::Chunk { bytes, .. }) if joins => {
                let n = buf.len().min(room).min(MAX_CHUNK - bytes.len());
                bytes.extend_from_slice(&buf[..n]);
                n
            }
            _ => {
                let n = buf.len().min(room).min(MAX_CHUNK);
                out.frames.push_back(Item::Chunk { stderr, bytes: buf[..n].to_vec() });
                n
            }
        };
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
            let newline = inp.raw.iter().position(|&b| b == b'\n');
            // The line's length, whether or not its end has come (a read may bring it
            // along with the bytes past the limit).
            if newline.unwrap_or(inp.raw.len()) > MAX_FRAME {
                let why = format!("a stdin frame over {MAX_FRAME} bytes");
                inp.error = Some((io::ErrorKind::InvalidData, why));
                continue;
            }
            if let Some(i) = newline {
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
            let mut chunk = [0u8; 16 << 10];
            let seen = s.before_read();
            match s.conn.read(&mut chunk) {
                Ok(0) => {
                    let why = "the launch went away before the end of its stdin";
                    inp.error = Some((io::ErrorKind::UnexpectedEof, why.into()));
                }
                Ok(n) => inp.raw.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.wait_input(seen)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => inp.error = Some((e.kind(), e.to_string())),
            }
        }
    }
}

impl Request {
    /// A writer to the launch's stdout: what it writes reaches the launch's terminal while
    /// the app works, before the reply (a launch of this crate writes each chunk as it
    /// arrives). See [`Output`] for its bounds. The [`reply`](Self::reply) goes after the
    /// output written before it, waiting while the launch takes it (at most 2 s past the
    /// last chunk taken, and 10 s in all: then the launch counts as gone).
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
    /// otherwise. Reading blocks while the launch has sent nothing more, for as long as it
    /// stays connected or until the primary releases (a launch is untrusted: read it on a
    /// thread that may wait). Bytes arrive exactly as the launch read them. On Windows
    /// the connection's reads complete through the primary's loop: while no other thread
    /// runs it (no receive call waits, no [waker](crate::Primary::set_waker) is set), the
    /// reading thread runs it meanwhile, serving launches as a receive call does; so does
    /// a [waker](crate::Primary::set_waker) that reads it (it runs on the thread that runs
    /// the loop, which serves nothing else meanwhile). On Unix the read waits on the
    /// launch's connection alone, on any thread. Either way the read never waits for a
    /// turn that only its own thread could run.
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
    /// primary to go. Then, if the reply was [delivered](Delivery::Delivered), drop or
    /// [release](crate::Primary::release) the primary: once its lock is free, the launch
    /// becomes the primary. Requests still queued are told to start over, and reach the new
    /// primary. A launch that gave up meanwhile ([`Delivery::Abandoned`]) takes nothing
    /// over: keep serving. For a request that is not a replace, the same as
    /// `reply(Reply::ok())`.
    pub fn accept_replace(self) -> io::Result<Delivery> {
        let mut handed_to = None;
        if let Some(r) = self.remote.as_ref().filter(|r| r.ask().replace) {
            r.push(&Frame::Handover);
            // Launches that find the lock free before the new primary took it wait for it.
            let pid = self.peer.and_then(|p| p.pid).or(self.head.pid);
            if let (Some(registry), Some(pid)) = (r.0.registry.get(), pid) {
                registry.lock().handover = Some(pid);
                handed_to = Some((registry.clone(), pid));
            }
        }
        let delivery = self.reply(Reply::ok());
        if !matches!(delivery, Ok(Delivery::Delivered)) {
            // Nobody takes over: a release leaves the lock to whoever comes (unless another
            // replace was accepted since).
            if let Some((registry, pid)) = handed_to {
                let mut streams = registry.lock();
                if streams.handover == Some(pid) {
                    streams.handover = None;
                }
            }
        }
        delivery
    }

    /// Tells the launch to try again (the primary is busy): it does, within its timeout.
    pub(super) fn refuse_busy(&mut self) {
        if let Some(socket) = self.socket.take() {
            respond(&socket, &Reply::busy());
        }
        if let Some(remote) = self.remote.take() {
            let _ = remote.reply(&Reply::busy());
        }
    }
}
