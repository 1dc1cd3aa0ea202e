//! [`Request`]: one launch as the primary receives it, answered with [`Request::reply`].

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;

use std::time::{Duration, Instant};

use super::Reply;
use crate::protocol::{self, Message, ACTIVATION_VARS};
use crate::sys::Connection;
use crate::PeerCredentials;

/// How long a reply may wait for the launch to make room for it.
const REPLY_DEADLINE: Duration = Duration::from_secs(2);

/// Writes `reply` as one line to the launch at `conn`, waiting at most
/// [`REPLY_DEADLINE`] for it to read.
pub(super) fn send_reply(conn: &Connection, reply: &Reply) -> io::Result<()> {
    let mut line = reply.encode().into_bytes();
    line.push(b'\n');
    conn.send(&line, Instant::now() + REPLY_DEADLINE)
}

/// Answers the launch at `conn` with `reply`; a launch that went away is nobody's error.
pub(super) fn respond(conn: &Connection, reply: &Reply) {
    let _ = send_reply(conn, reply);
}

/// Tells the launch at `conn` that the primary is busy: it retries until its timeout.
pub(super) fn busy(conn: &Connection) {
    respond(conn, &Reply::busy());
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
    pub(super) head: protocol::Head,
    pub(super) data: std::sync::OnceLock<Value>,
    pub(super) message: std::sync::OnceLock<Message>,
    pub(super) raw: String,
    /// What this request counts against the primary's [`HELD_BUDGET`], given back on drop.
    pub(super) weight: usize,
    pub(super) held: Arc<AtomicUsize>,
    pub(super) peer: Option<PeerCredentials>,
    /// A launch of protocol version 1: its connection (shared with the list a release
    /// closes, see `stream::Registry`).
    pub(super) socket: Option<Arc<Connection>>,
    pub(super) closing: Arc<AtomicBool>,
    /// How it came: a launch, or a D-Bus call.
    pub(super) origin: super::origin::Origin,
    /// A D-Bus call's reply goes here (`socket` is `None` then).
    pub(super) answer: Option<super::origin::Answer>,
    /// A launch of protocol version 2: its connection and streams (`socket` is `None`).
    pub(super) remote: Option<super::stream::Remote>,
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
    /// [`SingleInstance::forward_env`](crate::SingleInstance::forward_env)).
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

    /// The custom data the launch sent, parsed on the first call, exactly: a request whose
    /// `data` a `serde_json::Value` cannot hold (a number beyond `f64`, a lone surrogate
    /// escape, nesting past 126 levels: the request's own object is the 127th of the 127
    /// the whole line may have) was refused when it arrived, so this is `null` only
    /// when the launch sent `null` or nothing. Numbers are `f64` where they do not fit
    /// an `i64` or `u64` (serde_json's reading of a JSON number).
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
    /// [`Error::NoReply`](crate::Error::NoReply), or was killed): its connection is closed, so a reply would
    /// reach nobody, and acting on the request may surprise a user who saw it fail.
    ///
    /// Delivery is at least once, not exactly once: the primary drops requests found
    /// abandoned before the app receives them, but a launch can give up at any moment
    /// after that, and a launch that starts over (its primary died mid-handoff) sends
    /// its request again. An app that must not act twice can check this before acting.
    /// A client that only half-closes its side after sending is still waiting. A D-Bus
    /// call is never abandoned.
    pub fn is_abandoned(&self) -> bool {
        self.socket.as_ref().is_some_and(|c| c.is_closed())
            || self.remote.as_ref().is_some_and(super::stream::Remote::is_abandoned)
    }

    /// Sends `reply` to the launch, which then exits with its exit code. A reply larger
    /// than the connection's buffer waits, up to 2 s, for the launch to read.
    ///
    /// A launch that went away before its reply (Ctrl-C'd, killed, timed out with
    /// [`Error::NoReply`](crate::Error::NoReply), or not reading its reply for 2 s) is not
    /// the app's error: the reply is then `Ok(`[`Delivery::Abandoned`]`)`, so `?` on it is
    /// safe and never ends the primary. `Err` is left for an OS error that says nothing
    /// about the launch (none is known to happen); a D-Bus request's reply never fails.
    ///
    /// ```
    /// use solo_instance::{Reply, SingleInstance, Start};
    /// # let dir = std::env::temp_dir().join(format!("doc-reply-{}", std::process::id()));
    /// # let app = || SingleInstance::new("org.example.Doc").unwrap().directory(&dir);
    /// # let Start::Primary(primary) = app().start()? else { unreachable!() };
    /// # let launch = app().argv(["doc", "--version"]);
    /// # let launcher = std::thread::spawn(move || launch.send());
    /// let request = primary.recv().unwrap();
    /// let reply = if request.args().iter().any(|a| a == "--version") {
    ///     // Answered in the launching terminal, as GApplication lets a primary do.
    ///     Reply::ok().with_stdout("doc 1.0\n")
    /// } else {
    ///     Reply::error("unknown arguments") // the launch fails with Error::Rejected
    /// };
    /// request.reply(reply)?;
    /// # assert_eq!(launcher.join().unwrap()?.stdout(), "doc 1.0\n");
    /// # drop(primary); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reply(mut self, reply: Reply) -> io::Result<Delivery> {
        if let Some(answer) = self.answer.take() {
            return Ok(answer.send(Ok(reply)));
        }
        if let Some(remote) = self.remote.take() {
            return remote.reply(&reply);
        }
        let socket = self.socket.take().expect("a request is answered once");
        match send_reply(&socket, &reply) {
            Ok(()) => Ok(Delivery::Delivered),
            Err(e) if launch_is_gone(&e) => Ok(Delivery::Abandoned),
            Err(e) => Err(e),
        }
    }
}

/// What became of a [`Request::reply`]: whether the launch was still there to take it.
///
/// Most apps ignore it (`request.reply(Reply::ok())?;`): a launch that went away is the
/// user's choice, not the app's error. Check it to log, or to undo work nobody waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The reply was handed to the launch (to the D-Bus caller's method call): written
    /// whole to its connection, which the launch still held open.
    Delivered,
    /// The launch had gone (its connection was closed or reset, or it did not read its
    /// reply within 2 s), so nobody got the reply. The same launches
    /// [`Request::is_abandoned`] reports, and also one that left while the reply was
    /// being written.
    Abandoned,
}

impl Delivery {
    /// Whether the launch got the reply.
    pub fn is_delivered(self) -> bool {
        self == Delivery::Delivered
    }
}

/// Whether a failed write of a reply means only that the launch is no longer there to read
/// it: closed (a broken pipe, a reset connection), or not reading it in time (the 2 s
/// write deadline: `TimedOut`). `sys::Connection::send` reports them in these kinds.
pub(super) fn launch_is_gone(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | WouldBlock | TimedOut
    )
}

impl Drop for Request {
    fn drop(&mut self) {
        self.held.fetch_sub(self.weight, Ordering::SeqCst);
        if let Some(answer) = self.answer.take() {
            // Shutting down: the D-Bus call goes to the successor, as a launch starts over.
            answer.unanswered(self.closing.load(Ordering::SeqCst));
        }
        if self.socket.is_some() || self.remote.is_some() {
            let reply = if self.closing.load(Ordering::SeqCst) {
                Reply::retry("the primary instance is shutting down")
            } else {
                Reply::error("the primary instance dropped the request without answering")
            };
            if let Some(socket) = self.socket.take() {
                respond(&socket, &reply);
            }
            if let Some(remote) = self.remote.take() {
                let _ = remote.reply(&reply);
            }
        }
    }
}
