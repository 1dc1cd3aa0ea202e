//! [`Context`]: what a primary's loop shares with the thread that runs it (the app's, in
//! a receive call, or the driver): the primary's settings, the peer check, and decoding a
//! launch's request for the [`Inbox`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::super::inbox::{Inbox, Refused};
use super::super::request::respond;
use super::super::{protocol, Reply, Request};
use super::Mux;
use crate::sys::Connection;
use crate::PeerCredentials;

/// The largest request taken at once from a fresh connection, when it is all there on
/// arrival (larger ones are read and decoded as held connections).
pub(in crate::instance) const FAST_PATH_BYTES: usize = 16 * 1024;

pub(in crate::instance) struct Context {
    pub(in crate::instance) timeout: Duration,
    pub(in crate::instance) limit: usize,
    /// Only the primary's user (on Windows, at its integrity level or above) is served;
    /// off in the System scope.
    pub(in crate::instance) check_uid: bool,
    /// Who the primary serves, read once when it starts (`None`: it could not be told,
    /// and every client counts as a stranger). Behind a lock for the tests, which make a
    /// primary take itself for another user or level.
    pub(in crate::instance) owner: Mutex<Option<crate::sys::Owner>>,
    pub(in crate::instance) mux: Mux,
    pub(in crate::instance) inbox: Arc<Inbox>,
    /// Linux, with `dbus`: gives the bus name back, run once by the loop when the primary
    /// steps down (the name belongs to the lock holder, as at a release).
    #[cfg(feature = "dbus")]
    #[allow(dead_code)] // read by the removal watch (none on Windows)
    pub(in crate::instance) on_step_down: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Context {
    /// Whether the client at `conn` may be served: the primary's user (on Windows at its
    /// integrity level or above: a non-elevated process driving an elevated primary would
    /// be a silent elevation), unless anyone may (the System scope).
    pub(super) fn admits(&self, conn: &Connection, peer: Option<&PeerCredentials>) -> bool {
        if !self.check_uid {
            return true;
        }
        let owner = *self.owner.lock().unwrap_or_else(|p| p.into_inner());
        owner.is_some_and(|o| o.admits(conn, peer))
    }

    pub(in crate::instance) fn shutdown(&self) {
        self.mux.shutdown();
    }

    /// Decodes a request line and hands the request to the app (or answers the error):
    /// whether it is queued for the app.
    pub(super) fn deliver(
        self: &Arc<Self>,
        socket: Connection,
        peer: Option<PeerCredentials>,
        line: Vec<u8>,
    ) -> bool {
        // What followed the line is a version-2 launch's stdin.
        let (line, rest) = super::super::stream::split_line(line);
        // Everything but `data` is decoded (and checked); `data` stays text in the line.
        // What a version-2 line asks for is read in the same pass.
        let (head, ask) = match protocol::decode_request(&line) {
            Ok(h) => h,
            Err(e) => {
                respond(&socket, &Reply::error(e));
                return false;
            }
        };
        let (socket, remote) = super::super::stream::Remote::of(socket, ask, &rest, Arc::downgrade(self));
        // The line's text and its decoded fields, at most about as much again; and what
        // the connection pins while the request lives (Windows: its read in flight).
        let weight = 2 * line.len() + rest.len() + 256 + Connection::PINNED;
        let held = self.inbox.hold(weight);
        // Held for as long as the app keeps the request: no spare capacity from reading.
        let mut line = line;
        line.shrink_to_fit();
        let raw =
            String::from_utf8(line).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let request = Request {
            head,
            data: std::sync::OnceLock::new(),
            message: std::sync::OnceLock::new(),
            raw,
            weight,
            held,
            peer,
            socket: socket.map(Arc::new),
            closing: Arc::clone(&self.inbox.closing),
            origin: super::super::origin::Origin::Launch,
            answer: None,
            remote,
        };
        match self.inbox.admit(Box::new(request)) {
            Ok(()) => true,
            // Dropped, it tells the launch to start over.
            Err(Refused::Closing(request)) => {
                drop(request);
                false
            }
            // Too many bytes wait already, or the app is not keeping up: this launch tries
            // again until its timeout.
            Err(Refused::OverBudget(mut r) | Refused::Full(mut r)) => {
                r.refuse_busy();
                false
            }
        }
    }
}
