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
        // (the same bytes as before), without building a tree of values first.
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
            Some(pid) => out.raw(&pid.to_string()),
            None => out.raw("null"),
        }
        out.raw(&format!(",\"v\":{PROTOCOL_VERSION}}}"));
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

/// Parses `data` that [`decode_head`] checked already.
pub(crate) fn parse_data(text: &[u8]) -> Value {
    serde_json::from_slice(text).unwrap_or(Value::Null)
}

/// Where valid JSON nests arrays and objects 128 deep, serde_json's limit (1-based
/// column), if it does.
fn too_deep(json: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth >= 128 {
                    return Some(i + 1);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// At most 64 characters of client text for an error reply: an error must stay small
/// enough to be written at once, whatever the client sent.
fn clip(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// Decodes a request line but for its `data` (see [`Head`]).
pub(crate) fn decode_head(line: &[u8]) -> Result<Head, String> {
    let o: BTreeMap<String, &RawValue> = serde_json::from_slice(line).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            "a request must be a JSON object".to_owned()
        } else {
            format!("malformed JSON: {e}")
        }
    })?;
    // Raw values are skipped without serde_json's nesting limit: apply it to the whole
    // line, as parsing it into a `Value` would (and as `data` will be parsed later).
    if let Some(column) = too_deep(line) {
        return Err(format!("malformed JSON: recursion limit exceeded at line 1 column {column}"));
    }
    match o.get("v") {
        Some(v) if serde_json::from_str::<u64>(v.get()).ok() == Some(PROTOCOL_VERSION) => {}
        Some(v) => {
            let v: Value = serde_json::from_str(v.get()).unwrap_or(Value::Null);
            let v = clip(&v.to_string());
            return Err(format!("unsupported protocol version {v} (this side speaks {PROTOCOL_VERSION})"));
        }
        None => return Err("missing protocol version \"v\"".into()),
    }
    let argv = match o.get("argv") {
        None => return Err("missing \"argv\"".into()),
        Some(raw) => {
            let items: Vec<&RawValue> =
                serde_json::from_str(raw.get()).map_err(|_| "\"argv\" must be an array".to_owned())?;
            items
                .iter()
                .enumerate()
                .map(|(i, a)| decode_os_raw(a).map_err(|e| format!("argv[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let cwd = match o.get("cwd") {
        None => None,
        Some(v) if is_null(v) => None,
        Some(v) => Some(decode_os_raw(v).map_err(|e| format!("cwd: {e}"))?),
    };
    let env = match o.get("env") {
        None => BTreeMap::new(),
        Some(v) if is_null(v) => BTreeMap::new(),
        Some(v) => {
            let m: BTreeMap<String, &RawValue> =
                serde_json::from_str(v.get()).map_err(|_| "\"env\" must be an object".to_owned())?;
            m.into_iter()
                .map(|(k, v)| match decode_os_raw(v) {
                    Ok(v) => Ok((k, v)),
                    Err(e) => Err(format!("env.{}: {e}", clip(&k))),
                })
                .collect::<Result<_, _>>()?
        }
    };
    let pid = match o.get("pid") {
        None => None,
        Some(p) if is_null(p) => None,
        Some(p) => Some(serde_json::from_str::<u32>(p.get()).map_err(|_| "\"pid\" must be a u32")?),
    };
    // The raw value borrows from `line`: its offset there is where `data` is.
    let data = o.get("data").map(|raw| {
        let start = raw.get().as_ptr() as usize - line.as_ptr() as usize;
        start..start + raw.get().len()
    });
    Ok(Head { argv, cwd, env, pid, data })
}
