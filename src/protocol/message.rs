//! [`Message`]: what a launch sends, and the primary's decoding of it (all but `data`,
//! which stays text until asked for).

use std::collections::BTreeMap;
use std::ffi::OsString;

use serde_json::value::RawValue;
use serde_json::Value;

use super::os_str::decode_os_raw;
use super::{ProtocolError, PROTOCOL_VERSION};

/// What a launch sends to the primary, decoded.
///
/// ```
/// use solo_instance::Message;
/// let mut m = Message::new(["editor", "a.txt"]);
/// m.pid = Some(42);
/// let line = m.encode();
/// assert!(line.contains("\"v\":1"));
/// assert_eq!(Message::decode(line.as_bytes()).unwrap(), m);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// The launch's full argument vector, program name first.
    pub argv: Vec<OsString>,
    /// The launch's working directory.
    pub cwd: Option<OsString>,
    /// Forwarded environment variables.
    pub env: BTreeMap<String, OsString>,
    /// The launch's process id, as it says.
    pub pid: Option<u32>,
    /// Custom JSON data from the launch.
    pub data: Value,
}

impl Message {
    /// A message with this argument vector (program name first), no working directory,
    /// environment, pid or data. Set the public fields for the rest.
    pub fn new<I, S>(argv: I) -> Message
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Message {
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: None,
            env: BTreeMap::new(),
            pid: None,
            data: Value::Null,
        }
    }
}

impl Message {
    /// The request line, without its newline.
    pub fn encode(&self) -> String {
        // Written straight out, keys in the order a `serde_json::Value` object sorts them
        // (the bytes a `Value` tree writes: `tests::encode` checks), without building one.
        let mut out = super::JsonOut::with_capacity(128);
        out.raw("{\"argv\":[");
        for (i, a) in self.argv.iter().enumerate() {
            if i > 0 {
                out.raw(",");
            }
            out.os(a);
        }
        out.raw("],\"cwd\":");
        match &self.cwd {
            Some(cwd) => out.os(cwd),
            None => out.raw("null"),
        }
        out.raw(",\"data\":");
        out.value(&self.data);
        out.raw(",\"env\":{");
        // A BTreeMap: sorted, as a JSON object of serde_json's is.
        for (i, (k, v)) in self.env.iter().enumerate() {
            if i > 0 {
                out.raw(",");
            }
            out.str(k);
            out.raw(":");
            out.os(v);
        }
        out.raw("},\"pid\":");
        match self.pid {
            Some(pid) => out.int(pid.into()),
            None => out.raw("null"),
        }
        out.raw(",\"v\":");
        out.int(PROTOCOL_VERSION as i64);
        out.raw("}");
        out.finish()
    }

    /// Decodes a request line (without its newline). Unknown fields are ignored, so a
    /// later minor addition does not break older primaries.
    pub fn decode(line: &[u8]) -> Result<Message, ProtocolError> {
        let head = decode_head(line)?;
        let data = match &head.data {
            Some(range) => parse_data(&line[range.clone()]),
            None => Value::Null,
        };
        Ok(Message { argv: head.argv, cwd: head.cwd, env: head.env, pid: head.pid, data })
    }
}

/// A request decoded but for its `data`, which stays text: where it is in the line.
///
/// The primary decodes with this: the whole line is checked (JSON syntax, nesting limit,
/// every field but `data` decoded), yet memory stays about the size of the line, where a
/// `serde_json::Value` of small nested arrays takes some 70 bytes per byte of input.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) argv: Vec<OsString>,
    pub(crate) cwd: Option<OsString>,
    pub(crate) env: BTreeMap<String, OsString>,
    pub(crate) pid: Option<u32>,
    /// The bytes of `data` in the line; `None` when it is missing.
    pub(crate) data: Option<std::ops::Range<usize>>,
}

/// Parses `data` that [`decode_head`] checked already: it holds nothing a `Value` cannot,
/// so this parse does not fail (`null` if it ever did).
pub(crate) fn parse_data(text: &[u8]) -> Value {
    let parsed = serde_json::from_slice(text);
    debug_assert!(parsed.is_ok(), "decode_head took data that does not parse: {parsed:?}");
    parsed.unwrap_or(Value::Null)
}

pub(crate) use super::representable::unrepresentable;
#[cfg(test)]
pub(super) use super::representable::F64_OVERFLOW_TEXT;
use super::representable::RECURSION;

/// At most 64 characters of client text for an error reply: an error must stay small
/// enough to be written at once, whatever the client sent.
fn clip(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// Decodes a request line but for its `data` (see [`Head`]).
pub(crate) fn decode_head(line: &[u8]) -> Result<Head, String> {
    head_and_asks(line).map(|(head, _)| head)
}

/// Decodes a request line but for its `data` (see [`Head`]), and what it asks for
/// (`frame::Ask`; `None` for a version-1 line), in the same pass over its fields: the
/// head's errors first, then the asks'.
pub(crate) fn decode_request(line: &[u8]) -> Result<(Head, Option<super::frame::Ask>), String> {
    let (head, asks) = head_and_asks(line)?;
    Ok((head, super::frame::ask_of(asks)?))
}

/// The head of a request line, and the raw `v`, `wait`, `stdin` and `replace` for
/// `frame::ask_of`.
fn head_and_asks(line: &[u8]) -> Result<(Head, [Option<&str>; 4]), String> {
    let names = ["v", "argv", "cwd", "env", "pid", "data", "wait", "stdin", "replace"];
    let found = super::fields::fields(line, names).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            "a request must be a JSON object".to_owned()
        } else {
            format!("malformed JSON: {e}")
        }
    })?;
    // Raw values are skipped without serde_json's checks of what a `Value` can hold: apply
    // them to the whole line, as parsing it into a `Value` would, so that what is accepted
    // here `data` is parsed to exactly later (`Request::data`), never to `null`.
    // (A line the plain scan read holds nothing of that kind.)
    let [v, argv, cwd, env, pid, data, wait, stdin, replace] = found.values;
    if let Some((at, what)) = if found.plain { None } else { unrepresentable(line) } {
        if what == RECURSION {
            return Err(format!("malformed JSON: {RECURSION} at line 1 column {}", at + 1));
        }
        // The field it is in, for the message (a second parse, on this path alone).
        let o: BTreeMap<String, &RawValue> = serde_json::from_slice(line).unwrap_or_default();
        let field = o
            .iter()
            .find(|(_, raw)| {
                let start = raw.get().as_ptr() as usize - line.as_ptr() as usize;
                (start..start + raw.get().len()).contains(&at)
            })
            .map_or_else(String::new, |(k, _)| format!("\"{}\": ", clip(k)));
        return Err(format!("{field}{what} at line 1 column {}", at + 1));
    }
    match v {
        // Version 2 (`frame`) adds fields and frames after the line.
        Some(v) if matches!(serde_json::from_str::<u64>(v).ok(), Some(1 | 2)) => {}
        Some(v) => {
            let v: Value = serde_json::from_str(v).unwrap_or(Value::Null);
            let v = clip(&v.to_string());
            return Err(format!("unsupported protocol version {v} (this side speaks 1 and 2)"));
        }
        None => return Err("missing protocol version \"v\"".into()),
    }
    let argv = match argv {
        None => return Err("missing \"argv\"".into()),
        Some(raw) => {
            let items: Vec<&RawValue> =
                serde_json::from_str(raw).map_err(|_| "\"argv\" must be an array".to_owned())?;
            items
                .iter()
                .enumerate()
                .map(|(i, a)| decode_os_raw(a.get()).map_err(|e| format!("argv[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let cwd = match cwd {
        None => None,
        Some("null") => None,
        Some(v) => Some(decode_os_raw(v).map_err(|e| format!("cwd: {e}"))?),
    };
    let env = match env {
        None => BTreeMap::new(),
        Some("null") => BTreeMap::new(),
        Some(v) => {
            let m: BTreeMap<String, &RawValue> =
                serde_json::from_str(v).map_err(|_| "\"env\" must be an object".to_owned())?;
            m.into_iter()
                .map(|(k, v)| match decode_os_raw(v.get()) {
                    Ok(v) => Ok((k, v)),
                    Err(e) => Err(format!("env.{}: {e}", clip(&k))),
                })
                .collect::<Result<_, _>>()?
        }
    };
    let pid = match pid {
        None => None,
        Some("null") => None,
        Some(p) => Some(serde_json::from_str::<u32>(p).map_err(|_| "\"pid\" must be a u32")?),
    };
    // The raw value borrows from `line`: its offset there is where `data` is.
    let data = data.map(|raw| {
        let start = raw.as_ptr() as usize - line.as_ptr() as usize;
        start..start + raw.len()
    });
    Ok((Head { argv, cwd, env, pid, data }, [v, wait, stdin, replace]))
}
