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

/// The decimal digits of 2^1024 - 2^970, halfway between `f64::MAX` and 2^1024: the
/// smallest number that rounds to infinity (the tie goes to the even 2^1024).
const F64_OVERFLOW: &[u8; 309] =
    b"179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017\
    977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273\
    854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704\
    342711559699508093042880177904174497792";

/// The same digits, for tests.
#[cfg(test)]
pub(super) const F64_OVERFLOW_TEXT: &str = match std::str::from_utf8(F64_OVERFLOW) {
    Ok(s) => s,
    Err(_) => panic!(),
};

const RECURSION: &str = "recursion limit exceeded";

/// What a `serde_json::Value` parse of valid JSON text would refuse, which the raw values
/// that hold `data` (and unknown fields) let through: a `Value` could not hold it, so the
/// app would get `null` instead. Returns the 0-based offset and what it is. One linear
/// pass, no allocation.
///
/// - nesting 128 deep, serde_json's recursion limit;
/// - a number beyond `f64` (`1e400`, a 400-digit integer): serde_json rounds correctly
///   (feature `float_roundtrip`), so it fails exactly from [`F64_OVERFLOW`] on;
/// - a lone surrogate escape (`"\udfff"`, or `"\ud800"` not followed by a trailing one),
///   in a string or an object key: not a Unicode scalar value.
///
/// Raw control characters and invalid UTF-8 are refused by the raw parse already.
pub(crate) fn unrepresentable(json: &[u8]) -> Option<(usize, &'static str)> {
    let (mut i, mut depth) = (0usize, 0usize);
    while i < json.len() {
        match json[i] {
            b'"' => match lone_surrogate(json, i + 1) {
                Ok(end) => i = end,
                Err(found) => return Some(found),
            },
            b'[' | b'{' => {
                depth += 1;
                if depth >= 128 {
                    return Some((i, RECURSION));
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let (end, finite) = number(json, i);
                if !finite {
                    return Some((i, "number out of range (JSON numbers must fit an f64)"));
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    None
}

/// The string starting after its opening quote at `i`: `Ok(end)` (after its closing
/// quote), or the offset of a lone surrogate escape in it.
fn lone_surrogate(json: &[u8], mut i: usize) -> Result<usize, (usize, &'static str)> {
    const LONE: &str = "lone surrogate in a \\u escape (a string must be Unicode)";
    let hex = |at: usize| -> Option<u16> {
        let digits = std::str::from_utf8(json.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    while i < json.len() {
        match json[i] {
            b'"' => return Ok(i + 1),
            b'\\' if json.get(i + 1) == Some(&b'u') => {
                let unit = hex(i + 2).unwrap_or(0);
                match unit {
                    0xD800..=0xDBFF => {
                        let trailing = (json.get(i + 6..i + 8) == Some(b"\\u"))
                            .then(|| hex(i + 8))
                            .flatten()
                            .is_some_and(|u| (0xDC00..=0xDFFF).contains(&u));
                        if !trailing {
                            return Err((i, LONE));
                        }
                        i += 12;
                    }
                    0xDC00..=0xDFFF => return Err((i, LONE)),
                    _ => i += 6,
                }
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(i)
}

/// The number token at `i` (valid JSON): where it ends, and whether it fits an `f64`
/// (finite once parsed).
fn number(json: &[u8], start: usize) -> (usize, bool) {
    let digits_from = |mut i: usize| {
        while json.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let int = start + usize::from(json[start] == b'-');
    let int_end = digits_from(int);
    let (frac, frac_end) = match json.get(int_end) {
        Some(b'.') => (int_end + 1, digits_from(int_end + 1)),
        _ => (int_end, int_end),
    };
    let mut end = frac_end;
    // The explicit exponent, saturated far beyond where any f64 can be reached.
    let mut exp: i64 = 0;
    let mut exp_overflows_i32 = false;
    if matches!(json.get(end), Some(b'e' | b'E')) {
        end += 1;
        let sign = match json.get(end) {
            Some(b'-') => {
                end += 1;
                -1
            }
            Some(b'+') => {
                end += 1;
                1
            }
            _ => 1,
        };
        let exp_start = end;
        end = digits_from(end);
        for &d in &json[exp_start..end] {
            exp = (exp * 10 + i64::from(d - b'0')).min(1 << 40);
        }
        // serde_json gives up on an exponent past i32: out of range when positive.
        exp_overflows_i32 = exp > i64::from(i32::MAX);
        exp *= sign;
    }
    // The significant digits: integer and fraction digits, leading zeros skipped.
    let all = json[int..int_end].iter().chain(&json[frac..frac_end]);
    let Some(first) = all.clone().position(|&d| d != b'0') else {
        return (end, true); // zero, whatever its exponent
    };
    if exp_overflows_i32 {
        return (end, exp < 0);
    }
    // The value is 0.d1d2... x 10^e, d1 the first non-zero digit.
    let e = (int_end - int) as i64 - first as i64 + exp;
    let finite = match e.cmp(&(F64_OVERFLOW.len() as i64)) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        // As many integer digits as the threshold: compare digit by digit.
        std::cmp::Ordering::Equal => {
            let mut significant = all.skip(first).copied();
            let mut below = None;
            for &t in F64_OVERFLOW {
                let d = significant.next().unwrap_or(b'0');
                if d != t {
                    below = Some(d < t);
                    break;
                }
            }
            // All of the threshold's digits: at or above it.
            below.unwrap_or(false)
        }
    };
    (end, finite)
}

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
