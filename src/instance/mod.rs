//! [`SingleInstance`]: the first launch of an app becomes the primary; later launches
//! forward their arguments to it and exit with its reply.

#[cfg(feature = "tokio")]
mod asynchronous;
mod dbus;
mod location;
mod lock;
mod protocol;
#[cfg(unix)]
mod serve;
#[cfg(all(test, windows))]
mod windows_tests;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
#[cfg(not(unix))]
use std::sync::Condvar;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use location::Location;
pub use location::Scope;
use lock::LockFile;
// D-Bus (issue 15): `Origin` always; the rest with the `dbus` feature.
pub use dbus::Origin;
#[cfg(feature = "dbus")]
pub use dbus::{dbus_object_path, dbus_service_file, DbusBus, DbusStatus};
pub use protocol::{
    decode_os, encode_os, Message, Reply, ACTIVATION_VARS, DEFAULT_MAX_MESSAGE_SIZE, PROTOCOL_VERSION,
};

use crate::{ConnectOptions, Error, LocalServer, LocalSocket, LocalSocketError, PeerCredentials, Result};
use crate::{PendingConnections, SocketOptions};

/// The longest a primary waits for a connected client's request line.
const MAX_REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// The default for [`SingleInstance::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections a primary reads at once (and most queued for reading); more wait in
/// the OS backlog. Windows only: on Unix one thread reads them all (`serve.rs`).
const MAX_READERS: usize = 64;

/// Most bytes of received requests (text and decoded) that wait for the app or are in
/// its hands; past it launches are told to retry. One request is always let in.
const HELD_BUDGET: usize = 16 << 20;

/// Sets up single-instance behaviour for one app id. A consuming builder; see the
/// [crate docs](crate) for a complete program.
#[must_use]
#[derive(Clone, Debug)]
pub struct SingleInstance {
    app_id: String,
    scope: Scope,
    dir: Option<PathBuf>,
    timeout: Duration,
    max_message_size: usize,
    argv: Option<Vec<OsString>>,
    env: Vec<String>,
    data: Value,
    #[cfg(feature = "dbus")]
    dbus_bus: dbus::DbusBus,
}

/// What [`SingleInstance::start`] found.
#[derive(Debug)]
pub enum Start {
    /// This process is the primary: serve the requests of later launches.
    Primary(Primary),
    /// A primary runs; it received this launch and answered.
    Forwarded(Reply),
}

/// Whether a primary runs, from [`SingleInstance::status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Whether a process holds the lock.
    pub running: bool,
    /// The primary's pid, as it recorded it.
    pub pid: Option<u32>,
    /// The socket path (a pipe name on Windows).
    pub socket: PathBuf,
    /// The lock file.
    pub lock: PathBuf,
}

impl SingleInstance {
    /// Starts a builder for `app_id`: 1 to 200 ASCII letters, digits, `.`, `_` or `-`,
    /// not starting with `.` or `-` (reverse-DNS ids such as `org.example.Editor` fit).
    ///
    /// # Errors
    /// [`Error::InvalidAppId`] for any other id.
    pub fn new(app_id: &str) -> Result<Self> {
        location::validate_app_id(app_id)?;
        Ok(SingleInstance {
            app_id: app_id.to_owned(),
            scope: Scope::User,
            dir: None,
            timeout: DEFAULT_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            argv: None,
            env: Vec::new(),
            data: Value::Null,
            #[cfg(feature = "dbus")]
            dbus_bus: dbus::DbusBus::default(),
        })
    }

    /// Who shares the primary. Default: [`Scope::User`].
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Puts the lock and socket in `dir` instead of the scope's directory (created 0700
    /// if missing, refused if another user owns it or others may write to it).
    pub fn directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// How long a launch waits for the primary's reply, and how long the primary waits
    /// for a connected client's request (at most 2 s: a launch writes at once). Default: 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest request the primary reads (and reply a launch reads), in bytes.
    /// Default: 1 MiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The arguments to forward, program name first. Default: `std::env::args_os()`.
    pub fn argv<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.argv = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// Also forwards these environment variables (opt-in; the activation variables
    /// `XDG_ACTIVATION_TOKEN` and `DESKTOP_STARTUP_ID` are always forwarded).
    pub fn forward_env<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.env.extend(names.into_iter().map(Into::into));
        self
    }

    /// Custom JSON data to send with the launch. Default: `null`.
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    fn location(&self) -> Result<Location> {
        location::resolve(&self.app_id, self.scope, self.dir.as_deref())
    }

    fn message(&self) -> Message {
        let argv = self.argv.clone().unwrap_or_else(|| std::env::args_os().collect());
        let mut env = BTreeMap::new();
        for name in ACTIVATION_VARS.iter().copied().chain(self.env.iter().map(String::as_str)) {
            if let Some(v) = std::env::var_os(name) {
                env.insert(name.to_owned(), v);
            }
        }
        Message {
            argv,
            cwd: std::env::current_dir().ok().map(PathBuf::into_os_string),
            env,
            pid: Some(std::process::id()),
            data: self.data.clone(),
        }
    }

    /// Becomes the primary, or hands this launch to the running primary and returns its
    /// reply.
    ///
    /// The lock file decides: whoever holds its exclusive lock is the primary. Holding
    /// it, this process removes any socket a crashed primary left behind, listens, and
    /// keeps the lock for the [`Primary`]'s life. Otherwise it connects (retrying while
    /// the primary comes up), sends the request and waits for the reply; a primary that
    /// goes away meanwhile makes it start over, so it may become the primary itself.
    ///
    /// # Errors
    /// [`Error::NoReply`] when a primary holds the lock but does not answer within the
    /// [timeout](Self::timeout); [`Error::Rejected`] when it answers with an error;
    /// [`Error::Insecure`] and [`Error::Io`] for the directory and lock file.
    pub fn start(self) -> Result<Start> {
        self.run(true)
    }

    /// Forwards this launch to the running primary and returns its reply; never becomes
    /// the primary.
    ///
    /// # Errors
    /// [`Error::NoPrimary`] when none runs; otherwise as [`start`](Self::start).
    pub fn send(self) -> Result<Reply> {
        match self.run(false)? {
            Start::Forwarded(reply) => Ok(reply),
            Start::Primary(_) => unreachable!("send never becomes primary"),
        }
    }

    /// Whether a primary runs, and where. Takes nothing from it: a free lock is let go at
    /// once and no file is removed.
    pub fn status(&self) -> Result<Status> {
        let loc = self.location()?;
        if loc.abstract_ns {
            // No lock: a primary runs when its name answers (or cannot be told dead).
            let (running, pid) = match connect_options(&loc)
                .timeout(Some(self.timeout.min(Duration::from_millis(200))))
                .connect(&loc.socket.to_string_lossy())
            {
                Ok(s) => (true, s.peer_credentials().ok().and_then(|c| c.pid)),
                Err(e) => (!is_dead(&e), None),
            };
            return Ok(Status { running, pid, socket: loc.socket, lock: loc.lock });
        }
        let running = LockFile::try_lock(&loc.lock, self.scope == Scope::System)?.is_none();
        Ok(Status {
            running,
            pid: if running { lock::read_pid(&loc.lock) } else { None },
            socket: loc.socket,
            lock: loc.lock,
        })
    }

    fn run(self, may_become_primary: bool) -> Result<Start> {
        // The timeout counts from here: everything below, connects included, fits in it.
        let deadline = far_deadline(self.timeout);
        let loc = self.location()?;
        let line = self.message().encode();
        // Checked only when forwarding: a launch that becomes the primary sends nothing.
        let too_large = (line.len() > self.max_message_size).then(|| {
            Error::Protocol(
                format!("message too large ({} bytes, limit {} bytes)", line.len(), self.max_message_size)
                    .into(),
            )
        });
        let mut backoff = Duration::from_micros(200);
        let mut too_large = too_large;
        loop {
            if loc.abstract_ns && may_become_primary {
                // Binding the name is taking the lock.
                match Primary::serve(&self, loc.clone(), None) {
                    Ok(primary) => return Ok(Start::Primary(primary)),
                    Err(e) if e.socket_error() == Some(LocalSocketError::AddressInUse) => {}
                    Err(e) => return Err(e),
                }
            }
            let free = if loc.abstract_ns {
                None
            } else {
                LockFile::try_lock(&loc.lock, self.scope == Scope::System)?
            };
            if let Some(lock) = free {
                // Holding the lock proves no primary runs, unless the lock file was replaced
                // under a running one (a cleaner removed it): a socket that answers is
                // alive, and is never taken over.
                if !socket_is_live(&loc, deadline) {
                    if !may_become_primary {
                        return Err(Error::NoPrimary);
                    }
                    return Primary::serve(&self, loc, Some(lock)).map(Start::Primary);
                }
                drop(lock);
            }
            if let Some(e) = too_large.take() {
                // A primary runs and would refuse it: say so now rather than after a round trip.
                return Err(e);
            }
            match self.forward(&loc, line.as_bytes(), deadline) {
                Ok(Some(reply)) => return Ok(Start::Forwarded(reply)),
                // No lock to tell: nothing answering the name means no primary.
                Ok(None) if loc.abstract_ns && !may_become_primary => return Err(Error::NoPrimary),
                // The primary is coming up or going away: look again.
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::NoReply(self.timeout));
            }
            std::thread::sleep(backoff.min(deadline - now));
            backoff = (backoff * 2).min(Duration::from_millis(20));
        }
    }

    /// One attempt to hand the request over. `Ok(None)`: no primary to talk to right now
    /// (not listening yet, or it went away before answering), so start over.
    fn forward(&self, loc: &Location, line: &[u8], deadline: Instant) -> Result<Option<Reply>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let name = loc.socket.to_string_lossy();
        let socket = match connect_options(loc)
            .timeout(Some(left.max(Duration::from_millis(1))))
            .connect(&name)
        {
            Ok(s) => s,
            Err(e) => {
                return match e.socket_error() {
                    Some(LocalSocketError::ServerNotFound | LocalSocketError::ConnectionRefused) => Ok(None),
                    Some(LocalSocketError::SocketTimeout) => Err(Error::NoReply(self.timeout)),
                    // Windows: our own primary's pipe always lets us in; one that does not is
                    // another user's.
                    #[cfg(windows)]
                    Some(LocalSocketError::SocketAccess) if self.scope != Scope::System => {
                        Err(Error::Insecure(
                            format!(
                                "the pipe {} refuses this user: another user created it",
                                loc.socket.display()
                            )
                            .into(),
                        ))
                    }
                    _ => Err(e),
                };
            }
        };
        if self.scope != Scope::System && !same_user(&socket) {
            #[cfg(windows)]
            let whose = match crate::sys::peer_sid(socket.as_stream()) {
                Some(owner) if crate::sys::current_user().ok() == Some(owner) => {
                    String::from("made by a process of this user below its integrity level (a sandbox)")
                }
                Some(owner) => format!("owned by {owner}, another user"),
                None => String::from("owned by an unknown user"),
            };
            #[cfg(not(windows))]
            let whose = "served by another user";
            return Err(Error::Insecure(format!("the socket {} is {whose}", loc.socket.display()).into()));
        }
        // Windows gives the right to take the foreground to the launch the user just started;
        // hand it on, so that the primary can raise its window for this request.
        #[cfg(windows)]
        if let Some(pid) = crate::sys::server_pid(socket.as_stream()) {
            crate::sys::allow_foreground(pid);
        }
        let mut out = Vec::with_capacity(line.len() + 1);
        out.extend_from_slice(line);
        out.push(b'\n');
        // Bounded by the deadline itself, not by the time left before connecting: a
        // launch ends within its timeout however slowly the primary drains the request.
        #[cfg(unix)]
        let written = crate::sys::write_all_until(&socket, &out, deadline);
        #[cfg(windows)]
        let written = {
            let left = deadline.saturating_duration_since(Instant::now());
            set_timeout(&socket, false, left)?;
            let _deadline = crate::sys::IoDeadline::arm(socket.as_stream(), deadline);
            (&socket).write_all(&out)
        };
        if let Err(e) = written {
            return match e.kind() {
                // A primary that takes no request within the timeout does not answer.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(Error::NoReply(self.timeout)),
                // The primary may have refused the request (too large) and closed: its
                // reply is still there to read. Otherwise it went away: start over.
                _ if is_disconnect(&e) => {
                    match read_line(&socket, deadline, self.max_message_size).map(|l| Reply::decode(&l)) {
                        Ok(Ok(r)) if !r.ok && !r.retry => {
                            Err(Error::Rejected(r.error.unwrap_or_default().into()))
                        }
                        _ => Ok(None),
                    }
                }
                _ => Err(e.into()),
            };
        }
        match read_line(&socket, deadline, self.max_message_size) {
            Ok(reply) => match Reply::decode(&reply) {
                Ok(r) if r.retry => Ok(None),
                Ok(r) if !r.ok => Err(Error::Rejected(r.error.unwrap_or_default().into())),
                Ok(r) => Ok(Some(r)),
                Err(e) => Err(Error::Protocol(e.into())),
            },
            Err(ReadError::Closed) => Ok(None),
            Err(ReadError::TimedOut) => Err(Error::NoReply(self.timeout)),
            Err(ReadError::TooLarge) => Err(Error::Protocol(
                format!("reply too large (limit {} bytes)", self.max_message_size).into(),
            )),
            Err(ReadError::Io(e)) if is_disconnect(&e) => Ok(None),
            Err(ReadError::Io(e)) => Err(e.into()),
        }
    }
}

/// `now + timeout`, or a deadline too far away to matter when that overflows.
fn far_deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).or_else(|| now.checked_add(Duration::from_secs(1 << 32))).unwrap_or(now)
}

/// Whether the app's socket may belong to a running server. Only a connect refused
/// (nothing listens: a dead primary's file) or one finding no socket proves it dead; a
/// connect that times out (a frozen primary, a full backlog) or fails otherwise leaves the
/// socket live, so that it is never removed under a primary that still runs.
fn socket_is_live(loc: &Location, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    let options =
        connect_options(loc).timeout(Some(left.clamp(Duration::from_millis(1), Duration::from_millis(200))));
    match options.connect(&loc.socket.to_string_lossy()) {
        Ok(_) => true,
        Err(e) => !is_dead(&e),
    }
}

/// Whether a failed connect proves nobody serves the name: refused, or nothing there.
fn is_dead(e: &Error) -> bool {
    matches!(e.socket_error(), Some(LocalSocketError::ServerNotFound | LocalSocketError::ConnectionRefused))
}

/// How to connect to the location's socket.
fn connect_options(loc: &Location) -> ConnectOptions {
    let options = ConnectOptions::new();
    if loc.abstract_ns {
        options.socket_options(SocketOptions::ABSTRACT_NAMESPACE)
    } else {
        options
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(unix)]
fn same_user(socket: &LocalSocket) -> bool {
    let me = unsafe { libc::geteuid() };
    socket.peer_credentials().ok().and_then(|c| c.uid) == Some(me)
}

/// Windows: whether the pipe's owner is this process's user. Only the user who created a
/// pipe (or a privileged process) can make a SID its owner, so another user's pipe, created
/// first under this name (a squatter), shows that user's SID. Unknown counts as another.
#[cfg(windows)]
fn same_user(socket: &LocalSocket) -> bool {
    let owner = crate::sys::peer_sid(socket.as_stream());
    matches!((owner, crate::sys::current_user()), (Some(o), Ok(me)) if o == me)
        // The same user's sandboxed (low integrity) process could have made it.
        && crate::sys::server_integrity_ok(socket.as_stream())
}

/// Sets a socket's read or write timeout. Named pipes have none (interprocess offers none
/// on Windows): there each blocking read or write is bounded by a `sys::IoDeadline`
/// instead, which cancels the pipe's I/O when the deadline passes.
fn set_timeout(socket: &LocalSocket, read: bool, t: Duration) -> io::Result<()> {
    let t = Some(t.max(Duration::from_millis(1)));
    let r = if read { socket.set_read_timeout(t) } else { socket.set_write_timeout(t) };
    match r {
        Err(_) if cfg!(windows) => Ok(()),
        r => r,
    }
}

enum ReadError {
    Closed,
    TimedOut,
    TooLarge,
    Io(io::Error),
}

/// Reads one line (without its newline) of at most `limit` bytes before `deadline`.
fn read_line(
    socket: &LocalSocket,
    deadline: Instant,
    limit: usize,
) -> std::result::Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    let mut buf = [0u8; 8192];
    #[cfg(windows)]
    let _deadline = crate::sys::IoDeadline::arm(socket.as_stream(), deadline);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::TimedOut);
        }
        set_timeout(socket, true, left).map_err(ReadError::Io)?;
        let n = match (&*socket).read(&mut buf) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ReadError::TimedOut)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            if line.len() + i > limit {
                return Err(ReadError::TooLarge);
            }
            line.extend_from_slice(&buf[..i]);
            return Ok(line);
        }
        if line.len() + n > limit {
            return Err(ReadError::TooLarge);
        }
        line.extend_from_slice(&buf[..n]);
    }
}

/// A launch's request, as the primary receives it. Answer it with
/// [`reply`](Self::reply); one dropped unanswered gets an error reply, so no launch is
/// left waiting.
///
/// To bring the app's window forward for a request: on Wayland and X11 use
/// [`activation_token`](Self::activation_token); on Windows just focus the window
/// (`SetForegroundWindow`, winit's `focus_window`): before it sent the request, the launch
/// handed its right to take the foreground to the primary (`AllowSetForegroundWindow`).
pub struct Request {
    /// Everything but `data`, decoded; `data` stays text in `raw` until asked for.
    head: protocol::Head,
    data: std::sync::OnceLock<Value>,
    message: std::sync::OnceLock<Message>,
    raw: String,
    /// What this request counts against the primary's [`HELD_BUDGET`], given back on drop.
    weight: usize,
    held: Arc<AtomicUsize>,
    peer: Option<PeerCredentials>,
    socket: Option<LocalSocket>,
    closing: Arc<AtomicBool>,
    /// How it came (issue 15): a launch, or a D-Bus call.
    origin: dbus::Origin,
    /// A D-Bus call's reply goes here (`socket` is `None` then).
    answer: Option<dbus::Answer>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("argv", &self.head.argv)
            .field("peer", &self.peer)
            .field("origin", &self.origin)
            .finish()
    }
}

impl Request {
    /// The launch's full argument vector, program name first, byte for byte.
    pub fn argv(&self) -> &[OsString] {
        &self.head.argv
    }

    /// The launch's arguments after the program name.
    pub fn args(&self) -> &[OsString] {
        self.head.argv.get(1..).unwrap_or(&[])
    }

    /// The launch's working directory, byte for byte: resolve relative paths in
    /// [`args`](Self::args) against it.
    pub fn cwd(&self) -> Option<&Path> {
        self.head.cwd.as_deref().map(Path::new)
    }

    /// The forwarded environment (the activation variables, and those asked for with
    /// [`SingleInstance::forward_env`]).
    pub fn env(&self) -> &BTreeMap<String, OsString> {
        &self.head.env
    }

    /// The token to raise the window with: `XDG_ACTIVATION_TOKEN` (Wayland), else
    /// `DESKTOP_STARTUP_ID` (X11 startup notification).
    pub fn activation_token(&self) -> Option<&OsStr> {
        ACTIVATION_VARS.iter().find_map(|v| self.head.env.get(*v)).map(OsString::as_os_str)
    }

    /// The pid the launch reported.
    pub fn pid(&self) -> Option<u32> {
        self.head.pid
    }

    /// The custom data the launch sent, parsed on the first call.
    ///
    /// The primary keeps `data` as text until then: parsed, a JSON value can take tens of
    /// times its text's size (some 70 bytes per byte for `[[0],[0],...]`), which the
    /// primary's memory bound does not cover. An app that takes `data` from launches it
    /// does not trust can read [`data_json`](Self::data_json) with a parser of its own.
    pub fn data(&self) -> &Value {
        self.data.get_or_init(|| match &self.head.data {
            Some(range) => protocol::parse_data(&self.raw.as_bytes()[range.clone()]),
            None => Value::Null,
        })
    }

    /// The custom data as the launch sent it: JSON text (`null` when it sent none).
    pub fn data_json(&self) -> &str {
        self.head.data.as_ref().and_then(|r| self.raw.get(r.clone())).unwrap_or("null")
    }

    /// Who connected, as the OS reports it: on Unix the uid (checked already, except in the
    /// System scope), on Windows the SID the client connected as (likewise checked).
    pub fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.peer
    }

    /// The decoded message (`data` parsed on the first call, as [`data`](Self::data)).
    pub fn message(&self) -> &Message {
        self.message.get_or_init(|| Message {
            argv: self.head.argv.clone(),
            cwd: self.head.cwd.clone(),
            env: self.head.env.clone(),
            pid: self.head.pid,
            data: self.data().clone(),
        })
    }

    /// The request line exactly as received.
    pub fn raw_json(&self) -> &str {
        &self.raw
    }

    /// Whether the launch has given up waiting for the reply (it timed out with
    /// [`Error::NoReply`], or was killed): its connection is closed, so a reply would
    /// reach nobody, and acting on the request may surprise a user who saw it fail.
    ///
    /// Delivery is at least once, not exactly once: the primary drops requests found
    /// abandoned before the app receives them, but a launch can give up at any moment
    /// after that, and a launch that starts over (its primary died mid-handoff) sends
    /// its request again. An app that must not act twice can check this before acting.
    /// A client that only half-closes its side after sending is still waiting. Unix
    /// only; elsewhere always `false`.
    pub fn is_abandoned(&self) -> bool {
        #[cfg(unix)]
        if let Some(socket) = &self.socket {
            use std::os::fd::AsRawFd;
            // POLLHUP: both directions are shut, which a close by the peer does (a
            // half-close only shuts our reading side).
            let mut pfd = libc::pollfd { fd: socket.as_raw_fd(), events: 0, revents: 0 };
            return unsafe { libc::poll(&mut pfd, 1, 0) } == 1
                && pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0;
        }
        false
    }

    /// Sends `reply` to the launch, which then exits with its exit code. On Windows it
    /// also waits, up to 2 s, until the launch has read the reply (see `sys::flush`).
    pub fn reply(mut self, reply: Reply) -> io::Result<()> {
        if let Some(answer) = self.answer.take() {
            answer.send(Ok(reply));
            return Ok(());
        }
        let socket = self.socket.take().expect("a request is answered once");
        send_reply(&socket, &reply)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.held.fetch_sub(self.weight, Ordering::SeqCst);
        if let Some(answer) = self.answer.take() {
            let why = if self.closing.load(Ordering::SeqCst) {
                "the primary instance is shutting down"
            } else {
                "the primary instance dropped the request without answering"
            };
            answer.send(Err(why.into()));
        }
        if let Some(socket) = self.socket.take() {
            let reply = if self.closing.load(Ordering::SeqCst) {
                Reply::retry("the primary instance is shutting down")
            } else {
                Reply::error("the primary instance dropped the request without answering")
            };
            let _ = send_reply(&socket, &reply);
        }
    }
}

fn send_reply(socket: &LocalSocket, reply: &Reply) -> io::Result<()> {
    let mut line = reply.encode().into_bytes();
    line.push(b'\n');
    set_timeout(socket, false, Duration::from_secs(2))?;
    #[cfg(windows)]
    let _deadline = crate::sys::IoDeadline::arm(socket.as_stream(), Instant::now() + Duration::from_secs(2));
    (&*socket).write_all(&line)?;
    // A pipe: wait (at most the same 2 s) until the launch has taken the reply, so that
    // dropping the socket closes it at once, not in interprocess' linger pool (see
    // `sys::flush`). As on Unix, a reply written is a reply sent: a launch that does not
    // read it in time is not an error here.
    #[cfg(windows)]
    let _ = crate::sys::flush(socket.as_stream());
    Ok(())
}

enum Event {
    Request(Box<Request>),
    Stop,
}

/// The reader threads: at most [`MAX_READERS`], kept for a while when idle so a burst of
/// launches does not pay a thread start each. When all are busy and as many connections
/// wait for one, the acceptor waits too, so a flood waits in the OS backlog.
#[cfg(not(unix))]
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
    freed: Condvar,
}

#[cfg(not(unix))]
#[derive(Default)]
struct PoolState {
    jobs: std::collections::VecDeque<(LocalSocket, Option<PeerCredentials>)>,
    threads: usize,
    idle: usize,
    acceptor_waiting: bool,
    shutdown: bool,
}

/// The largest request the acceptor reads itself when it is all there on arrival.
const FAST_PATH_BYTES: usize = 16 * 1024;

/// How long an idle reader thread stays for the next launch.
#[cfg(not(unix))]
const READER_IDLE: Duration = Duration::from_secs(30);

type Waker = Arc<dyn Fn() + Send + Sync>;

struct Context {
    closing: Arc<AtomicBool>,
    stopped: AtomicBool,
    timeout: Duration,
    limit: usize,
    check_uid: bool,
    /// Tests: the user the primary takes itself for (an injected SID, where Wine has one
    /// user), so that its own launches count as another user's.
    #[cfg(all(test, windows))]
    pretend_user: Mutex<Option<crate::Sid>>,
    #[cfg(not(unix))]
    pool: Pool,
    #[cfg(unix)]
    mux: serve::Mux,
    /// Bytes of the requests received and not yet dropped by the app (see [`HELD_BUDGET`]).
    held: Arc<AtomicUsize>,
    waker: Mutex<Option<Waker>>,
    /// What `recv_async` waits on: notified with each request queued and on stop.
    #[cfg(feature = "tokio")]
    notify: tokio::sync::Notify,
    tx: SyncSender<Event>,
}

/// The running primary instance. It serves launches until dropped or
/// [released](Self::release); then its socket is removed and its lock freed, in that
/// order.
pub struct Primary {
    server: LocalServer,
    lock: Option<LockFile>,
    rx: Receiver<Event>,
    ctx: Arc<Context>,
    socket: PathBuf,
    app_id: String,
    /// The D-Bus name and object (issue 15), released before the lock.
    #[cfg(feature = "dbus")]
    dbus: dbus::Dbus,
}

impl fmt::Debug for Primary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Primary").field("app_id", &self.app_id).field("socket", &self.socket).finish()
    }
}

/// Makes a [`Primary`]'s blocking receive calls return, from any thread (a signal
/// handler thread, a GUI's quit action).
#[derive(Clone)]
pub struct Stopper(Arc<Context>);

/// A primary whose requests go to a callback; see [`Primary::on_request`].
#[derive(Debug)]
pub struct CallbackPrimary {
    stopper: Stopper,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for CallbackPrimary {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stopper")
    }
}

impl Stopper {
    /// Ends [`Primary::requests`] and wakes [`Primary::recv`] with `None`.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        // A full queue needs no wake-up: the receiver is busy and sees the flag next.
        let _ = self.0.tx.try_send(Event::Stop);
        #[cfg(feature = "tokio")]
        self.0.notify.notify_waiters();
    }
}

impl Primary {
    /// Becomes the primary: with the lock held (`lock`), or by binding an abstract name
    /// (`None`: then `AddressInUse` means another primary runs).
    fn serve(config: &SingleInstance, loc: Location, mut lock: Option<LockFile>) -> Result<Primary> {
        if let Some(lock) = &mut lock {
            lock.write_pid();
            // We hold the lock and nothing answers there: any socket file is a dead primary's.
            LocalServer::remove_server(&loc.socket.to_string_lossy()).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot remove the stale socket {}: {e}", loc.socket.display()),
                )
            })?;
        }
        let mut server = LocalServer::new();
        let system = config.scope == Scope::System;
        let options = if loc.abstract_ns {
            SocketOptions::ABSTRACT_NAMESPACE
        } else if system {
            SocketOptions::WORLD_ACCESS
        } else {
            SocketOptions::USER_ACCESS
        };
        server.set_socket_options(options);
        // Windows: others may connect to the System scope's pipe, but not add instances of
        // their own to it (Qt's OTHER_ACCESS would let them, and so receive launches).
        #[cfg(windows)]
        if system {
            server.set_pipe_sddl(Some(crate::sys::shared_pipe_sddl()?));
        }
        server.set_max_pending_connections(MAX_READERS);
        // Requests wait here for the app; past this many, launches are told to retry, so
        // a flood holds at most this many requests (each at most the message limit).
        let (tx, rx) = mpsc::sync_channel(64);
        let ctx = Arc::new(Context {
            closing: Arc::new(AtomicBool::new(false)),
            stopped: AtomicBool::new(false),
            // A launch writes its request as soon as it connects: a client that takes longer
            // than this is broken or hostile, and must not hold a reader for a whole timeout.
            timeout: config.timeout.min(MAX_REQUEST_DEADLINE),
            limit: config.max_message_size,
            check_uid: !system,
            #[cfg(all(test, windows))]
            pretend_user: Mutex::new(None),
            #[cfg(not(unix))]
            pool: Pool::default(),
            #[cfg(unix)]
            mux: serve::Mux::new(&loc.socket, options)?,
            held: Arc::new(AtomicUsize::new(0)),
            waker: Mutex::new(None),
            #[cfg(feature = "tokio")]
            notify: tokio::sync::Notify::new(),
            tx,
        });
        let hook_ctx = Arc::clone(&ctx);
        server.set_incoming_connection_hook(move |socket, _: &PendingConnections| {
            Context::incoming(&hook_ctx, socket);
        });
        server.on_new_connection(|_| {});
        server.listen(&loc.socket.to_string_lossy())?;
        #[cfg(unix)]
        serve::Mux::start(&ctx);
        // D-Bus last: only a primary that serves its socket owns the name.
        #[cfg(feature = "dbus")]
        let dbus = dbus::Dbus::start(config, &ctx);
        Ok(Primary {
            server,
            lock,
            rx,
            ctx,
            socket: loc.socket,
            app_id: config.app_id.clone(),
            #[cfg(feature = "dbus")]
            dbus,
        })
    }

    /// The socket path (a pipe name on Windows) launches connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The lock file this primary holds.
    pub fn lock_path(&self) -> &Path {
        self.lock.as_ref().map(LockFile::path).unwrap_or(Path::new(""))
    }

    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// A blocking iterator over requests; it ends when a [`Stopper`] stops it.
    pub fn requests(&self) -> impl Iterator<Item = Request> + '_ {
        std::iter::from_fn(move || self.recv())
    }

    /// Waits for the next request; `None` once a [`Stopper`] stopped the primary.
    ///
    /// Requests whose launch gave up while they waited (it timed out, or was killed) are
    /// dropped here, unseen; see [`Request::is_abandoned`].
    pub fn recv(&self) -> Option<Request> {
        loop {
            if self.ctx.stopped.load(Ordering::SeqCst) {
                return None;
            }
            match self.rx.recv() {
                Ok(Event::Request(r)) if r.is_abandoned() => continue,
                Ok(Event::Request(r)) => return Some(*r),
                Ok(Event::Stop) | Err(_) => return None,
            }
        }
    }

    /// Waits up to `timeout` for the next request (abandoned ones dropped, as by
    /// [`recv`](Self::recv)).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Request> {
        let deadline = far_deadline(timeout);
        loop {
            if self.ctx.stopped.load(Ordering::SeqCst) {
                return None;
            }
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Event::Request(r)) if r.is_abandoned() => continue,
                Ok(Event::Request(r)) => return Some(*r),
                Ok(Event::Stop) | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return None
                }
            }
        }
    }

    /// The next request if one is waiting; never blocks. For GUI loops that poll on
    /// each frame or after a [waker](Self::set_waker) call. Abandoned requests are
    /// dropped, as by [`recv`](Self::recv).
    pub fn try_recv(&self) -> Option<Request> {
        loop {
            match self.rx.try_recv() {
                Ok(Event::Request(r)) if r.is_abandoned() => continue,
                Ok(Event::Request(r)) => return Some(*r),
                Ok(Event::Stop) | Err(TryRecvError::Empty | TryRecvError::Disconnected) => return None,
            }
        }
    }

    /// Calls `waker` (from one of the primary's threads) each time a request is ready to
    /// be received: hand it a GUI event loop's wake-up (such as winit's
    /// `EventLoopProxy::send_event`) and call [`try_recv`](Self::try_recv) when woken.
    ///
    /// The waker must not block: in particular it must not wait for a lock that the
    /// thread dropping the `Primary` holds, since dropping waits for the accept thread.
    pub fn set_waker(&self, waker: impl Fn() + Send + Sync + 'static) {
        *self.ctx.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(waker));
    }

    /// Delivers each request to `callback` on a thread of its own, which owns the
    /// primary from now on. Dropping the returned handle stops that thread and releases
    /// the primary.
    pub fn on_request(self, mut callback: impl FnMut(Request) + Send + 'static) -> CallbackPrimary {
        let stopper = self.stopper();
        let thread = std::thread::spawn(move || {
            for request in self.requests() {
                callback(request);
            }
        });
        CallbackPrimary { stopper, thread: Some(thread) }
    }

    /// Tests: makes this primary take itself for `sid`.
    #[cfg(all(test, windows))]
    pub(crate) fn pretend_user(&self, sid: Option<crate::Sid>) {
        *self.ctx.pretend_user.lock().unwrap() = sid;
    }

    /// A handle that makes the blocking receive calls return.
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.ctx))
    }

    /// Gives up being the primary now: the socket is closed and removed, then the lock
    /// is freed, so a new launch (such as this app restarting itself) becomes the
    /// primary. Requests not yet answered tell their launches to start over.
    pub fn release(self) {
        drop(self)
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.ctx.closing.store(true, Ordering::SeqCst);
        self.ctx.shutdown();
        // Socket first, lock last: only the lock holder ever removes the socket.
        self.server.close();
        while let Ok(event) = self.rx.try_recv() {
            drop(event);
        }
        // The D-Bus name goes with the lock, before it: a successor can take both.
        #[cfg(feature = "dbus")]
        self.dbus.stop();
        drop(self.lock.take());
    }
}

impl Context {
    /// The `incomingConnection` hook: check the peer, then queue the socket for a reader
    /// thread, starting one if none is idle.
    fn incoming(ctx: &Arc<Context>, socket: LocalSocket) {
        let peer = socket.peer_credentials().ok();
        #[cfg(unix)]
        if ctx.check_uid && peer.and_then(|p| p.uid) != Some(unsafe { libc::geteuid() }) {
            // A stranger: dropped before a byte is read.
            return;
        }
        // Windows: the client's user SID, as it connected (see `PeerCredentials::sid`); one
        // that cannot be read counts as a stranger's.
        #[cfg(windows)]
        if ctx.check_uid && !matches!((peer.and_then(|p| p.sid), ctx.user()), (Some(c), Ok(me)) if c == me) {
            return;
        }
        // A launch writes its request right after connecting, so it is usually here
        // already: then it is delivered from this thread, without a reader's hop.
        // At most `limit + 1` bytes are looked at, so a line over the limit is never taken
        // here: it goes to a reader, which refuses it.
        let fast_max = FAST_PATH_BYTES.min(ctx.limit.saturating_add(1));
        if let Some(line) = crate::sys::take_ready_line(&socket, fast_max) {
            ctx.deliver(socket, peer, line);
            return;
        }
        #[cfg(unix)]
        serve::Mux::add(ctx, socket, peer);
        #[cfg(not(unix))]
        Context::pool_add(ctx, socket, peer);
    }

    /// Queues the socket for a reader thread, starting one if none is idle.
    #[cfg(not(unix))]
    fn pool_add(ctx: &Arc<Context>, socket: LocalSocket, peer: Option<PeerCredentials>) {
        let pool = &ctx.pool;
        let mut st = pool.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.jobs.len() >= MAX_READERS && !st.shutdown {
            st.acceptor_waiting = true;
            st = pool.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.acceptor_waiting = false;
        st.jobs.push_back((socket, peer));
        if st.idle > 0 {
            drop(st);
            pool.work.notify_one();
            return;
        }
        if st.threads >= MAX_READERS {
            return;
        }
        st.threads += 1;
        drop(st);
        let worker = Arc::clone(ctx);
        let spawned = std::thread::Builder::new()
            .name("solo-instance request".into())
            // serde_json recurses up to 128 levels on nested input: a debug build needs
            // about 224 KiB for that (ASan 256 KiB), and 128 KiB let one request abort the
            // primary (found by fuzz/). Untouched stack pages cost no memory.
            .stack_size(512 * 1024)
            .spawn(move || worker.reader_loop());
        if spawned.is_err() {
            // No thread: read it here rather than leave the launch waiting.
            let mut st = pool.state.lock().unwrap_or_else(|p| p.into_inner());
            st.threads -= 1;
            let job = st.jobs.pop_back();
            drop(st);
            if let Some((socket, peer)) = job {
                ctx.read_request(socket, peer);
            }
        }
    }

    /// The user this primary serves: its process's.
    #[cfg(windows)]
    fn user(&self) -> io::Result<crate::Sid> {
        #[cfg(test)]
        if let Some(sid) = *self.pretend_user.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(sid);
        }
        crate::sys::current_user()
    }

    #[cfg(not(unix))]
    fn reader_loop(&self) {
        let pool = &self.pool;
        let mut st = pool.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some((socket, peer)) = st.jobs.pop_front() {
                let wake_acceptor = st.acceptor_waiting;
                drop(st);
                if wake_acceptor {
                    pool.freed.notify_one();
                }
                self.read_request(socket, peer);
                st = pool.state.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let (next, timeout) = pool.work.wait_timeout(st, READER_IDLE).unwrap_or_else(|p| p.into_inner());
            st = next;
            st.idle -= 1;
            if timeout.timed_out() && st.jobs.is_empty() {
                break;
            }
        }
        st.threads -= 1;
    }

    #[cfg(unix)]
    fn shutdown(&self) {
        self.mux.shutdown();
    }

    #[cfg(not(unix))]
    fn shutdown(&self) {
        let mut st = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        st.shutdown = true;
        drop(st);
        self.pool.work.notify_all();
        self.pool.freed.notify_all();
    }

    #[cfg(not(unix))]
    fn read_request(&self, socket: LocalSocket, peer: Option<PeerCredentials>) {
        let deadline = Instant::now() + self.timeout;
        let line = match read_line(&socket, deadline, self.limit) {
            Ok(line) => line,
            Err(ReadError::TooLarge) => {
                let _ = send_reply(
                    &socket,
                    &Reply::error(format!("message too large (limit {} bytes)", self.limit)),
                );
                return;
            }
            Err(ReadError::TimedOut) => {
                let msg = format!("no request within {:.1}s", self.timeout.as_secs_f64());
                let _ = send_reply(&socket, &Reply::error(msg));
                return;
            }
            Err(ReadError::Closed | ReadError::Io(_)) => return,
        };
        self.deliver(socket, peer, line);
    }

    /// Decodes a request line and hands the request to the app (or answers the error).
    fn deliver(&self, socket: LocalSocket, peer: Option<PeerCredentials>, line: Vec<u8>) {
        // Everything but `data` is decoded (and checked); `data` stays text in the line.
        let head = match protocol::decode_head(&line) {
            Ok(h) => h,
            Err(e) => {
                let _ = send_reply(&socket, &Reply::error(e));
                return;
            }
        };
        // The line's text and its decoded fields, at most about as much again.
        let weight = 2 * line.len() + 256;
        let before = self.held.fetch_add(weight, Ordering::SeqCst);
        let raw =
            String::from_utf8(line).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let request = Request {
            head,
            data: std::sync::OnceLock::new(),
            message: std::sync::OnceLock::new(),
            raw,
            weight,
            held: Arc::clone(&self.held),
            peer,
            socket: Some(socket),
            closing: Arc::clone(&self.closing),
            origin: dbus::Origin::Launch,
            answer: None,
        };
        if self.closing.load(Ordering::SeqCst) {
            return; // dropped: tells the launch to start over
        }
        if before > 0 && before + weight > HELD_BUDGET {
            // Too many bytes wait already: this launch tries again until its timeout.
            let mut r = request;
            if let Some(socket) = r.socket.take() {
                let _ = send_reply(&socket, &Reply::retry("the primary instance is busy"));
            }
            return;
        }
        match self.tx.try_send(Event::Request(Box::new(request))) {
            Ok(()) => {}
            // The app is not keeping up: this launch tries again until its timeout.
            Err(mpsc::TrySendError::Full(Event::Request(mut r))) => {
                if let Some(socket) = r.socket.take() {
                    let _ = send_reply(&socket, &Reply::retry("the primary instance is busy"));
                }
                return;
            }
            Err(_) => return,
        }
        #[cfg(feature = "tokio")]
        self.notify.notify_waiters();
        {
            let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(w) = waker {
                w();
            }
        }
    }
}
