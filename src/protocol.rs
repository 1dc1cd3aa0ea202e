//! The wire protocol between a launch and the primary: one request line and one reply line
//! of JSON per connection, each with a version, documented so that a program in another
//! language (a Qt app, a Python script) can speak it. Strings that are not valid Unicode travel losslessly as
//! `{"base64":"..."}` (Unix bytes, standard base64 with padding: 4 bytes per 3) or
//! `{"wide":[...]}` (Windows UTF-16 units); `{"bytes":[...]}` (an array of byte values)
//! is still decoded.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

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

/// Environment variables always forwarded: they let the primary raise its window.
pub const ACTIVATION_VARS: [&str; 2] = ["XDG_ACTIVATION_TOKEN", "DESKTOP_STARTUP_ID"];

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

/// Encodes an OS string: a JSON string when it is Unicode, else the lossless form.
pub fn encode_os(s: &OsStr) -> Value {
    if let Some(t) = s.to_str() {
        return Value::String(t.to_owned());
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        // Base64, not an array of numbers (up to 4 bytes per byte): 360 KB of Latin-1 file
        // names must not become a request over the 1 MiB limit.
        json!({ "base64": base64_encode(s.as_bytes()) })
    }
    #[cfg(windows)]
    {
        use std::os::windows::ffi::OsStrExt;
        json!({ "wide": s.encode_wide().collect::<Vec<u16>>() })
    }
}

/// Decodes what [`encode_os`] produced (on another platform, the foreign form decodes
/// lossily: bytes as UTF-8, UTF-16 units as UTF-16).
///
/// ```
/// use solo_instance::protocol::{decode_os, encode_os};
/// use std::ffi::OsStr;
/// let v = encode_os(OsStr::new("a.txt"));
/// assert_eq!(v, "a.txt");
/// assert_eq!(decode_os(&v).unwrap(), "a.txt");
/// assert!(decode_os(&serde_json::json!({"base64": "not base64!"})).is_err());
/// ```
pub fn decode_os(v: &Value) -> Result<OsString, ProtocolError> {
    decode_os_value(v).map_err(ProtocolError::from)
}

fn decode_os_value(v: &Value) -> Result<OsString, String> {
    match v {
        Value::String(s) => Ok(OsString::from(s)),
        Value::Object(o) if o.len() == 1 => {
            if let Some(Value::String(text)) = o.get("base64") {
                let bytes = base64_decode(text).ok_or("\"base64\" must be standard base64 with padding")?;
                return Ok(bytes_to_os(bytes));
            }
            if let Some(Value::Array(items)) = o.get("bytes") {
                let bytes = items
                    .iter()
                    .map(|b| b.as_u64().filter(|&b| b <= 0xFF).map(|b| b as u8))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or("\"bytes\" must hold integers 0-255")?;
                return Ok(bytes_to_os(bytes));
            }
            if let Some(Value::Array(items)) = o.get("wide") {
                let units = items
                    .iter()
                    .map(|u| u.as_u64().filter(|&u| u <= 0xFFFF).map(|u| u as u16))
                    .collect::<Option<Vec<u16>>>()
                    .ok_or("\"wide\" must hold integers 0-65535")?;
                #[cfg(windows)]
                {
                    use std::os::windows::ffi::OsStringExt;
                    return Ok(OsString::from_wide(&units));
                }
                #[cfg(not(windows))]
                return Ok(OsString::from(String::from_utf16_lossy(&units)));
            }
            Err("an object string must be {\"base64\":\"...\"}, {\"bytes\":[...]} or {\"wide\":[...]}".into())
        }
        _ => Err("expected a string".into()),
    }
}

/// Raw bytes as an OS string: exact on Unix, UTF-8 decoded (lossily) elsewhere.
fn bytes_to_os(bytes: Vec<u8>) -> OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        OsString::from_vec(bytes)
    }
    #[cfg(not(unix))]
    OsString::from(String::from_utf8_lossy(&bytes).into_owned())
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648, section 4) with `=` padding.
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes [`base64_encode`]'s form exactly; `None` for anything else (other alphabets,
/// missing padding, stray characters, non-zero padding bits).
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| BASE64.iter().position(|&b| b == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (i, quad) in text.chunks(4).enumerate() {
        let last = i + 1 == text.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - pad;
        if bytes[keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Some(out)
}

fn version(o: &Map<String, Value>) -> Result<(), String> {
    match o.get("v") {
        Some(v) if v.as_u64() == Some(PROTOCOL_VERSION) => Ok(()),
        Some(v) => Err(format!("unsupported protocol version {v} (this side speaks {PROTOCOL_VERSION})")),
        None => Err("missing protocol version \"v\"".into()),
    }
}

impl Message {
    /// The request line, without its newline.
    pub fn encode(&self) -> String {
        let env: Map<String, Value> = self.env.iter().map(|(k, v)| (k.clone(), encode_os(v))).collect();
        let msg = json!({
            "v": PROTOCOL_VERSION,
            "argv": self.argv.iter().map(|a| encode_os(a)).collect::<Vec<_>>(),
            "cwd": self.cwd.as_deref().map_or(Value::Null, encode_os),
            "env": env,
            "pid": self.pid,
            "data": self.data,
        });
        msg.to_string()
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

/// One JSON value of a request, decoded from its text: a string, or an object string
/// (`{"base64":...}`, `{"bytes":[...]}`, `{"wide":[...]}`), without a `Value` tree.
fn decode_os_raw(raw: &RawValue) -> Result<OsString, String> {
    let text = raw.get();
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text).map(OsString::from).map_err(|e| e.to_string());
    }
    if !text.starts_with('{') {
        return Err("expected a string".into());
    }
    let o: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|_| "expected a string".to_owned())?;
    if o.len() == 1 {
        if let Some(v) = o.get("base64") {
            let text: String = serde_json::from_str(v.get()).map_err(|_| "\"base64\" must be a string")?;
            let bytes = base64_decode(&text).ok_or("\"base64\" must be standard base64 with padding")?;
            return Ok(bytes_to_os(bytes));
        }
        if let Some(v) = o.get("bytes") {
            let bytes: Vec<u8> =
                serde_json::from_str(v.get()).map_err(|_| "\"bytes\" must hold integers 0-255")?;
            return Ok(bytes_to_os(bytes));
        }
        if let Some(v) = o.get("wide") {
            let units: Vec<u16> =
                serde_json::from_str(v.get()).map_err(|_| "\"wide\" must hold integers 0-65535")?;
            #[cfg(windows)]
            {
                use std::os::windows::ffi::OsStringExt;
                return Ok(OsString::from_wide(&units));
            }
            #[cfg(not(windows))]
            return Ok(OsString::from(String::from_utf16_lossy(&units)));
        }
    }
    Err("an object string must be {\"base64\":\"...\"}, {\"bytes\":[...]} or {\"wide\":[...]}".into())
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

/// The primary's answer to a launch: success or an error, an exit code, and text for the
/// launch to print on its own stdout and stderr.
///
/// ```
/// use solo_instance::Reply;
/// let r = Reply::exit(2).with_stderr("no such file\n");
/// assert!(r.is_ok()); // answered; the exit code says how it went
/// assert_eq!((r.exit_code(), r.stderr()), (2, "no such file\n"));
/// let refused = Reply::error("busy");
/// assert!(!refused.is_ok());
/// assert_eq!(refused.error_message(), Some("busy"));
/// // In the launch: print what the primary said and exit with its code.
/// # #[allow(dead_code)]
/// # fn launch(reply: Reply) -> std::process::ExitCode {
/// reply.print_output();
/// reply.process_exit_code()
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub(crate) ok: bool,
    pub(crate) exit_code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) data: Value,
    pub(crate) error: Option<String>,
    /// Set when the primary is going away: the launch should start over.
    pub(crate) retry: bool,
}

impl Default for Reply {
    fn default() -> Self {
        Reply::ok()
    }
}

impl Reply {
    /// Success, exit code 0.
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            exit_code: 0,
            stdout: String::new(),
            stderr: String::new(),
            data: Value::Null,
            error: None,
            retry: false,
        }
    }

    /// Success with the given exit code for the launch.
    pub fn exit(code: i32) -> Reply {
        Reply { exit_code: code, ..Reply::ok() }
    }

    /// A refusal: the launch reports `message` and exits with code 1.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply { ok: false, exit_code: 1, error: Some(message.into()), ..Reply::ok() }
    }

    pub(crate) fn retry(message: &str) -> Reply {
        Reply { retry: true, ..Reply::error(message) }
    }

    /// Text for the launch to print on its stdout (like a `--version` answer).
    #[must_use]
    pub fn with_stdout(mut self, text: impl Into<String>) -> Reply {
        self.stdout = text.into();
        self
    }

    /// Text for the launch to print on its stderr.
    #[must_use]
    pub fn with_stderr(mut self, text: impl Into<String>) -> Reply {
        self.stderr = text.into();
        self
    }

    /// Custom JSON data for the launch.
    #[must_use]
    pub fn with_data(mut self, data: Value) -> Reply {
        self.data = data;
        self
    }

    /// Whether the primary accepted the launch.
    pub fn is_ok(&self) -> bool {
        self.ok
    }

    /// The exit code the primary chose for the launch.
    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }

    /// Text for the launch's stdout.
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    /// Text for the launch's stderr.
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// The primary's custom data.
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// The exit status for the launch: the primary's exit code, or 1 for one outside
    /// 0-255 (a negative code is a failure, never success).
    pub fn process_exit_code(&self) -> std::process::ExitCode {
        std::process::ExitCode::from(u8::try_from(self.exit_code).unwrap_or(1))
    }

    /// Prints the primary's `stdout` and `stderr` texts on this process's own streams,
    /// as a launch does before it exits with [`process_exit_code`](Self::process_exit_code).
    pub fn print_output(&self) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(self.stdout.as_bytes()).and_then(|()| out.flush());
        let _ = std::io::stderr().lock().write_all(self.stderr.as_bytes());
    }

    /// The primary's error message, for a refusal.
    pub fn error_message(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The reply line, without its newline.
    pub fn encode(&self) -> String {
        let mut o = Map::new();
        o.insert("v".into(), json!(PROTOCOL_VERSION));
        o.insert("ok".into(), json!(self.ok));
        o.insert("exit_code".into(), json!(self.exit_code));
        if self.ok {
            o.insert("stdout".into(), json!(self.stdout));
            o.insert("stderr".into(), json!(self.stderr));
            o.insert("data".into(), self.data.clone());
        } else {
            o.insert("error".into(), json!(self.error.as_deref().unwrap_or("")));
            if self.retry {
                o.insert("retry".into(), json!(true));
            }
        }
        Value::Object(o).to_string()
    }

    /// Decodes a reply line (without its newline).
    ///
    /// ```
    /// use solo_instance::Reply;
    /// let line = Reply::exit(3).with_stdout("done\n").encode();
    /// let reply = Reply::decode(line.as_bytes()).unwrap();
    /// assert_eq!((reply.exit_code(), reply.stdout()), (3, "done\n"));
    /// assert!(Reply::decode(b"{\"v\":99,\"ok\":true}").is_err());
    /// ```
    pub fn decode(line: &[u8]) -> Result<Reply, ProtocolError> {
        Self::decode_text(line).map_err(ProtocolError::from)
    }

    fn decode_text(line: &[u8]) -> Result<Reply, String> {
        let value: Value = serde_json::from_slice(line).map_err(|e| format!("malformed JSON: {e}"))?;
        let Value::Object(o) = value else { return Err("a reply must be a JSON object".into()) };
        version(&o)?;
        let ok = o.get("ok").and_then(Value::as_bool).ok_or("missing \"ok\"")?;
        let text = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let exit_code = match o.get("exit_code") {
            None => i32::from(!ok),
            Some(c) => {
                c.as_i64().and_then(|c| i32::try_from(c).ok()).ok_or("\"exit_code\" must be an i32")?
            }
        };
        // Keep only what `encode` sends for this kind of reply, so a decoded reply
        // re-encodes to itself: output and data only with `"ok":true`, `retry` only with
        // `"ok":false` (an ok reply saying retry is an ok reply, not "start over").
        let output = |k: &str| if ok { text(k) } else { String::new() };
        Ok(Reply {
            ok,
            exit_code,
            stdout: output("stdout"),
            stderr: output("stderr"),
            data: if ok { o.get("data").cloned().unwrap_or(Value::Null) } else { Value::Null },
            error: (!ok).then(|| text("error")),
            retry: !ok && o.get("retry").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let mut env = BTreeMap::new();
        env.insert("XDG_ACTIVATION_TOKEN".to_owned(), OsString::from("tok"));
        let m = Message {
            argv: vec!["prog".into(), "a b".into(), "ü\n\"".into()],
            cwd: Some("/home/x".into()),
            env,
            pid: Some(42),
            data: json!({"k": [1, 2]}),
        };
        assert_eq!(Message::decode(m.encode().as_bytes()).unwrap(), m);
        assert!(!m.encode().contains('\n'));
    }

    #[test]
    fn nesting_limit_is_serde_jsons() {
        for n in 120..135 {
            let line = format!("{{\"v\":1,\"argv\":[],\"data\":{}{}}}", "[".repeat(n), "]".repeat(n));
            let by_value = serde_json::from_str::<Value>(&line).is_ok();
            assert_eq!(Message::decode(line.as_bytes()).is_ok(), by_value, "{n}");
        }
        let quoted = format!("{{\"v\":1,\"argv\":[\"{}\\\"\"]}}", "[".repeat(300));
        assert!(Message::decode(quoted.as_bytes()).is_ok(), "brackets in a string are text");
    }

    #[test]
    fn data_floats_round_trip_exactly() {
        // Without serde_json's float_roundtrip this one changed its last digit (fuzz/).
        let line = br#"{"v":1,"argv":[],"data":[-92246744073709551616,0.1,5e-324]}"#;
        let m = Message::decode(line).unwrap();
        assert_eq!(Message::decode(m.encode().as_bytes()).unwrap(), m);
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_is_lossless() {
        use std::os::unix::ffi::OsStringExt;
        let raw = OsString::from_vec(vec![b'a', 0xFF, 0xFE, b'/', 0]);
        let v = encode_os(&raw);
        assert_eq!(v, json!({"base64": "Yf/+LwA="}));
        assert_eq!(decode_os(&v).unwrap(), raw);
        // The older array form still decodes.
        assert_eq!(decode_os(&json!({"bytes": [97, 255, 254, 47, 0]})).unwrap(), raw);
    }

    #[test]
    fn base64_is_exact_and_strict() {
        for n in 0..64 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 200) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)).as_deref(), Some(&bytes[..]), "{n}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        for bad in ["Zm8", "Zm9=", "Z===", "Zm8=Zm8=", "Zm-_", "Zm8 ", "===="] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    /// Issue 11, item 6: non-UTF-8 strings take at most 4 bytes per 3 on the wire, so
    /// 360 KB of Latin-1 file names fit a 1 MiB request with room to spare.
    #[cfg(unix)]
    #[test]
    fn non_utf8_strings_are_dense_on_the_wire() {
        use std::os::unix::ffi::OsStringExt;
        let names: Vec<OsString> =
            (0..360).map(|i| OsString::from_vec(vec![0xE9u8.wrapping_add(i as u8 & 1); 1000])).collect();
        let m = Message { argv: names, cwd: None, env: BTreeMap::new(), pid: None, data: Value::Null };
        let line = m.encode();
        assert!(line.len() < 360_000 * 4 / 3 + 360 * 20, "{} bytes", line.len());
        assert_eq!(Message::decode(line.as_bytes()).unwrap(), m);
    }

    #[test]
    fn bad_requests_are_clear_errors() {
        for (line, want) in [
            (&b"{"[..], "malformed JSON"),
            (b"[1]", "must be a JSON object"),
            (b"{\"argv\":[]}", "missing protocol version"),
            (b"{\"v\":2,\"argv\":[]}", "unsupported protocol version 2"),
            (b"{\"v\":1}", "missing \"argv\""),
            (b"{\"v\":1,\"argv\":[1]}", "argv[0]"),
            (b"{\"v\":1,\"argv\":[{\"bytes\":[256]}]}", "0-255"),
            (b"{\"v\":1,\"argv\":[],\"pid\":-1}", "pid"),
        ] {
            let e = Message::decode(line).unwrap_err();
            assert!(e.message().contains(want), "{e} does not say {want}");
        }
    }

    #[test]
    fn error_replies_stay_small_whatever_the_client_sent() {
        let long = "x".repeat(99_999);
        for line in [
            format!("{{\"v\":\"{long}\",\"argv\":[]}}"),
            format!("{{\"v\":1,\"argv\":[],\"env\":{{\"{long}\":1}}}}"),
            format!("{{\"v\":1,\"argv\":[],\"pid\":\"{long}\"}}"),
            format!("{{\"v\":1,\"argv\":[{{\"base64\":\"{long}\"}}]}}"),
        ] {
            let e = Message::decode(line.as_bytes()).unwrap_err();
            let e = e.message();
            assert!(e.len() < 300, "{} bytes: {}", e.len(), &e[..200]);
        }
    }

    #[test]
    fn exit_codes_outside_a_byte_are_failures() {
        use std::process::ExitCode;
        assert_eq!(Reply::exit(3).process_exit_code(), ExitCode::from(3));
        assert_eq!(Reply::ok().process_exit_code(), ExitCode::from(0));
        assert_eq!(Reply::exit(-1).process_exit_code(), ExitCode::from(1));
        assert_eq!(Reply::exit(256).process_exit_code(), ExitCode::from(1));
    }

    #[test]
    fn replies_round_trip() {
        for r in [
            Reply::ok(),
            Reply::exit(3).with_stdout("v1.0\n").with_data(json!(1)),
            Reply::error("no"),
            Reply::retry("closing"),
        ] {
            assert_eq!(Reply::decode(r.encode().as_bytes()).unwrap(), r);
        }
        // What `encode` leaves out for a kind of reply, `decode` ignores (found by fuzz/).
        let r = Reply::decode(br#"{"v":1,"ok":true,"retry":true,"error":"e"}"#).unwrap();
        assert_eq!((r.ok, r.retry, r.error.as_deref()), (true, false, None));
        let r = Reply::decode(br#"{"v":1,"ok":false,"stdout":"x","data":[1],"retry":true}"#).unwrap();
        assert_eq!(r, Reply::retry(""));
        assert_eq!(
            Reply::ok().encode(),
            r#"{"data":null,"exit_code":0,"ok":true,"stderr":"","stdout":"","v":1}"#
        );
    }
}
