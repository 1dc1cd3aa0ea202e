//! The wire protocol between a launch and the primary: one request line and one reply line
//! of JSON per connection, each with a version, documented so that a program in another
//! language (a Qt app, a Python script) can speak it. Strings that are not valid Unicode
//! travel losslessly as `{"base64":"..."}` (Unix bytes, standard base64 with padding: 4
//! bytes per 3) or `{"wide":[...]}` (Windows UTF-16 units); `{"bytes":[...]}` (an array of
//! byte values) is decoded too.
//!
//! The request is a [`Message`], the answer a [`Reply`];
//! both types live at the crate root (`solo_instance::Reply`), their only public path.
//! A reply is one of three kinds, told apart by its fields:
//!
//! - an answer, `"ok":true` ([`Reply::ok`],
//!   [`Reply::exit`]): the launch prints `stdout` and `stderr` and
//!   exits with `exit_code`;
//! - a refusal, `"ok":false` with an `error` ([`Reply::error`]): the
//!   launch fails with that message and `exit_code`;
//! - "start over", `"ok":false,"retry":true` ([`Reply::retry`]):
//!   the primary is going away, or busy ([`Reply::busy`], whose
//!   message is [`BUSY`]); the launch connects again until its timeout. A peer written in
//!   another language matches `"retry":true`, not the message.

mod fields;
pub(crate) mod frame;
pub(crate) mod message;
mod os_str;
pub(crate) mod reply;
mod representable;

use serde_json::{Map, Value};

pub(crate) use message::Message;
pub(crate) use message::{decode_request, parse_data, Head};
pub use os_str::{decode_os, encode_os};
pub(crate) use reply::defuse;
pub(crate) use reply::Reply;

/// A line that does not follow the protocol: malformed JSON, an unknown version, a field
/// of the wrong type. Its text says which, and never repeats more than a few dozen
/// characters of what was received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(Box<str>);

impl ProtocolError {
    /// What is wrong, for a log or an error reply.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl From<String> for ProtocolError {
    fn from(s: String) -> Self {
        ProtocolError(s.into())
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// The default limit on one message, in bytes (1 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// The message of [`Reply::busy`], the retry reply of a primary that
/// holds as much as its limits allow (bytes of requests, connections, D-Bus calls).
pub const BUSY: &str = "the primary instance is busy";

/// Environment variables always forwarded: they let the primary raise its window.
pub const ACTIVATION_VARS: [&str; 2] = ["XDG_ACTIVATION_TOKEN", "DESKTOP_STARTUP_ID"];

pub(crate) fn version(o: &Map<String, Value>) -> Result<(), String> {
    match o.get("v") {
        // Version 2 (`frame`) has the same reply line.
        Some(v) if matches!(v.as_u64(), Some(1 | 2)) => Ok(()),
        Some(v) => Err(format!("unsupported protocol version {v} (this side speaks 1 and 2)")),
        None => Err("missing protocol version \"v\"".into()),
    }
}

/// A JSON text written piece by piece (the encoders of [`Message`] and [`Reply`]).
pub(crate) struct JsonOut(Vec<u8>);

impl JsonOut {
    pub(crate) fn with_capacity(n: usize) -> Self {
        JsonOut(Vec::with_capacity(n))
    }

    /// JSON text as it is.
    pub(crate) fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// An integer, in decimal (as `Display` writes it, without its machinery).
    pub(crate) fn int(&mut self, n: i64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut m = n.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (m % 10) as u8;
            m /= 10;
            if m == 0 {
                break;
            }
        }
        if n < 0 {
            self.0.push(b'-');
        }
        self.0.extend_from_slice(&digits[at..]);
    }

    /// A string, quoted and escaped as serde_json escapes it.
    pub(crate) fn str(&mut self, s: &str) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, s);
    }

    /// A value, as `Value::to_string` writes it (compact).
    pub(crate) fn value(&mut self, v: &serde_json::Value) {
        let _ = serde_json::to_writer(&mut self.0, v);
    }

    /// An OS string as [`encode_os`] encodes it.
    pub(crate) fn os(&mut self, s: &std::ffi::OsStr) {
        match s.to_str() {
            Some(t) => self.str(t),
            None => self.value(&encode_os(s)),
        }
    }

    pub(crate) fn finish(self) -> String {
        // Only UTF-8 was written: `raw` takes `&str`, and serde_json writes UTF-8.
        String::from_utf8(self.0).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

#[cfg(test)]
mod tests;
