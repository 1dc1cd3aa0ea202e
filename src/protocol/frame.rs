//! Protocol version 2: what a launch may ask for in its request line (`wait`, `stdin`,
//! `replace`), and the frames, one JSON line each, that follow the request line on the same
//! connection until the reply line.
//!
//! Primary to launch: `{"v":2,"taken":true}` (the app received the request; only to a
//! launch that asked for `wait`, `stdin` or `replace`), then any
//! number of `{"v":2,"stdout":"<base64>"}` and `{"v":2,"stderr":"<base64>"}` chunks, a
//! `{"v":2,"handover":true}` for an accepted replace, and last the reply line (the one with
//! `"ok"`). Launch to primary, after `taken` and only when it asked for `"stdin":true`:
//! `{"v":2,"stdin":"<base64>"}` chunks, then `{"v":2,"eof":true}`. Bytes travel as
//! standard base64 with padding, so binary data is kept exactly.

use super::os_str::{base64_decode, base64_encode};
use super::Reply;

/// The version of a conversation with frames.
pub(crate) const STREAM_VERSION: u64 = 2;

/// Most raw bytes one output or stdin chunk carries.
pub(crate) const MAX_CHUNK: usize = 32 << 10;

/// The longest frame line taken (a chunk of [`MAX_CHUNK`] bytes is some 44 KiB as base64):
/// a longer one ends the stream with an error.
pub(crate) const MAX_FRAME: usize = 64 << 10;

/// What a version-2 launch asks for, from its request line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ask {
    /// It waits for the reply past its timeout, once the request is taken.
    pub(crate) wait: bool,
    /// It forwards its stdin, as stdin frames after `taken`.
    pub(crate) stdin: bool,
    /// It asks the primary to hand over.
    pub(crate) replace: bool,
}

impl Ask {
    /// Whether a primary of version 1 cannot serve it.
    pub(crate) fn needs_v2(self) -> bool {
        self.wait || self.stdin || self.replace
    }
}

/// One frame between the request line and the reply line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The app received the request: from now on the launch waits for its reply (without
    /// a bound, if it asked so), and streams its stdin.
    Taken,
    /// A chunk of the launch's stdout.
    Stdout(Vec<u8>),
    /// A chunk of the launch's stderr.
    Stderr(Vec<u8>),
    /// The primary accepts the launch's replace and releases after its reply.
    Handover,
    /// A chunk of the launch's stdin.
    Stdin(Vec<u8>),
    /// The end of the launch's stdin.
    Eof,
}

impl Frame {
    /// The frame's line, newline included.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut line = match self {
            Frame::Taken => r#"{"v":2,"taken":true}"#.to_owned(),
            Frame::Handover => r#"{"v":2,"handover":true}"#.to_owned(),
            Frame::Eof => r#"{"v":2,"eof":true}"#.to_owned(),
            Frame::Stdout(b) => format!(r#"{{"v":2,"stdout":"{}"}}"#, base64_encode(b)),
            Frame::Stderr(b) => format!(r#"{{"v":2,"stderr":"{}"}}"#, base64_encode(b)),
            Frame::Stdin(b) => format!(r#"{{"v":2,"stdin":"{}"}}"#, base64_encode(b)),
        }
        .into_bytes();
        line.push(b'\n');
        line
    }

    /// Decodes a frame line (without its newline). `Ok(None)`: the line is a reply (it has
    /// `"ok"`), for [`Reply::decode`].
    pub(crate) fn decode(line: &[u8]) -> Result<Option<Frame>, String> {
        // One pass over the fields (the last where a name repeats, as a map keeps it).
        let found =
            super::fields::fields(line, ["ok", "v", "stdout", "stderr", "stdin", "taken", "handover", "eof"])
                .map_err(|e| format!("malformed frame: {e}"))?;
        let [ok, v, stdout, stderr, stdin, taken, handover, eof] = found.values;
        if ok.is_some() {
            return Ok(None);
        }
        match v {
            Some("2") => {}
            Some(v) => return Err(format!("unsupported frame version {}", clip(v))),
            None => return Err("a frame without a version \"v\"".into()),
        }
        let bytes = |raw: &str| -> Result<Vec<u8>, String> {
            // Borrowed where the string has no escapes (base64 needs none); any escape
            // (`\/`, as PHP's json_encode writes `/`) is the same string.
            let text: std::borrow::Cow<'_, str> = match serde_json::from_str::<&str>(raw) {
                Ok(text) => text.into(),
                Err(_) => serde_json::from_str::<String>(raw).map_err(|_| "a chunk must be a string")?.into(),
            };
            base64_decode(&text).ok_or_else(|| "a chunk must be standard base64 with padding".to_owned())
        };
        if let Some(raw) = stdout {
            return bytes(raw).map(|b| Some(Frame::Stdout(b)));
        }
        if let Some(raw) = stderr {
            return bytes(raw).map(|b| Some(Frame::Stderr(b)));
        }
        if let Some(raw) = stdin {
            return bytes(raw).map(|b| Some(Frame::Stdin(b)));
        }
        // A raw value's text is the JSON value without the spaces around it.
        match () {
            () if taken == Some("true") => Ok(Some(Frame::Taken)),
            () if handover == Some("true") => Ok(Some(Frame::Handover)),
            () if eof == Some("true") => Ok(Some(Frame::Eof)),
            () => Err("an unknown frame".into()),
        }
    }
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(32) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// How a version-1 request line (a [`Message`](super::Message) line) ends.
pub(crate) const V1_END: &str = ",\"v\":1}";

/// Makes the version-1 request line `line` the line of version 2, in place: `"v":2` and
/// what `ask` asks for. Returns the length of the start both lines share (the version-1
/// line is that and [`V1_END`]); `None`: not a version-1 line, left as it is.
pub(crate) fn request_line(line: &mut String, ask: Ask) -> Option<usize> {
    let head = line.strip_suffix(V1_END)?.len();
    line.truncate(head);
    line.reserve(48);
    if ask.replace {
        line.push_str(",\"replace\":true");
    }
    if ask.stdin {
        line.push_str(",\"stdin\":true");
    }
    line.push_str(",\"v\":2");
    if ask.wait {
        line.push_str(",\"wait\":true");
    }
    line.push('}');
    Some(head)
}

/// What a request line (checked by `decode_head` already) asks for: `Ok(None)` for a
/// version-1 line.
#[cfg(test)]
pub(crate) fn decode_ask(line: &[u8]) -> Result<Option<Ask>, String> {
    let found = super::fields::fields(line, ["v", "wait", "stdin", "replace"])
        .map_err(|e| format!("malformed JSON: {e}"))?;
    ask_of(found.values)
}

/// What a request line asks for, from the raw values of its fields `v`, `wait`, `stdin`
/// and `replace` (`super::fields`): `Ok(None)` for a line of another version than 2.
pub(crate) fn ask_of([v, wait, stdin, replace]: [Option<&str>; 4]) -> Result<Option<Ask>, String> {
    if v != Some("2") {
        return Ok(None);
    }
    // A raw value's text is the JSON value without the spaces around it.
    let flag = |key: &str, raw: Option<&str>| match raw {
        None | Some("false" | "null") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(format!("\"{key}\" must be true or false")),
    };
    Ok(Some(Ask {
        wait: flag("wait", wait)?,
        stdin: flag("stdin", stdin)?,
        replace: flag("replace", replace)?,
    }))
}

/// The reply line for a launch that spoke `version`, newline included.
pub(crate) fn reply_line(reply: &Reply, version: u64) -> Vec<u8> {
    let line = reply.encode();
    let mut line = match line.strip_suffix(",\"v\":1}") {
        Some(head) if version == STREAM_VERSION => format!("{head},\"v\":2}}"),
        _ => line,
    }
    .into_bytes();
    line.push(b'\n');
    line
}

/// Whether a refusal says the primary does not speak version 2 (a version-1 primary's
/// answer to a version-2 line).
pub(crate) fn is_version_refusal(message: &str) -> bool {
    message.starts_with("unsupported protocol version 2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_bytes_exactly() {
        let bytes: Vec<u8> = (0..=255u8).chain([0, 10, 13, 255]).collect();
        for f in [
            Frame::Taken,
            Frame::Handover,
            Frame::Eof,
            Frame::Stdout(bytes.clone()),
            Frame::Stderr(Vec::new()),
            Frame::Stdin(bytes.clone()),
        ] {
            let line = f.encode();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(Frame::decode(&line[..line.len() - 1]), Ok(Some(f)));
        }
        assert_eq!(Frame::decode(br#"{"v":2,"ok":true}"#), Ok(None));
        assert!(Frame::decode(br#"{"v":3,"taken":true}"#).is_err());
        assert!(Frame::decode(br#"{"v":2,"stdout":"%%%"}"#).is_err());
        assert!(Frame::decode(br#"{"v":2}"#).is_err());
    }

    #[test]
    fn chunks_are_json_strings_escapes_included() {
        // PHP's json_encode writes `/` as `\/`; any escape is the same string.
        assert_eq!(
            Frame::decode(br#"{"v":2,"stdout":"P\/8K"}"#),
            Ok(Some(Frame::Stdout(vec![0x3f, 0xff, 10])))
        );
        assert_eq!(Frame::decode(br#"{"v":2,"stdin":"\u0059Q=="}"#), Ok(Some(Frame::Stdin(b"a".to_vec()))));
        assert!(Frame::decode(br#"{"v":2,"stderr":"\u00e9Q=="}"#).is_err(), "not base64 once unescaped");
    }

    #[test]
    fn request_line_of_version_two_asks_and_decodes() {
        let v1 = super::super::Message::new(["a", "b"]).encode();
        assert_eq!(decode_ask(v1.as_bytes()), Ok(None));
        let ask = Ask { wait: true, stdin: true, replace: false };
        let mut v2 = v1.clone();
        let shared = request_line(&mut v2, ask);
        assert!(v2.contains("\"v\":2"), "{v2}");
        assert_eq!(shared.map(|n| format!("{}{V1_END}", &v2[..n])), Some(v1.clone()));
        assert_eq!(decode_ask(v2.as_bytes()), Ok(Some(ask)));
        assert!(decode_ask(br#"{"v":2,"argv":[],"wait":1}"#).is_err());
        for r in [Reply::ok(), Reply::busy(), Reply::error("no").with_stderr("why\n")] {
            let line = reply_line(&r, 2);
            assert!(line.ends_with(b",\"v\":2}\n"), "{}", String::from_utf8_lossy(&line));
            assert_eq!(Reply::decode(&line[..line.len() - 1]), Ok(r));
        }
    }

    /// `decode_ask` as a map of the line's fields reads it (the last of a repeated name).
    fn ask_by_map(line: &[u8]) -> Result<Option<Ask>, String> {
        use std::collections::BTreeMap;
        let o: BTreeMap<String, &serde_json::value::RawValue> =
            serde_json::from_slice(line).map_err(|e| format!("malformed JSON: {e}"))?;
        if o.get("v").map(|v| v.get()) != Some("2") {
            return Ok(None);
        }
        let flag = |key: &str| match o.get(key).map(|r| serde_json::from_str::<serde_json::Value>(r.get())) {
            None => Ok(false),
            Some(Ok(serde_json::Value::Bool(b))) => Ok(b),
            Some(Ok(serde_json::Value::Null)) => Ok(false),
            Some(_) => Err(format!("\"{key}\" must be true or false")),
        };
        Ok(Some(Ask { wait: flag("wait")?, stdin: flag("stdin")?, replace: flag("replace")? }))
    }

    #[test]
    fn decode_ask_reads_the_fields_as_a_map_does() {
        for line in [
            r#"{"argv":[],"v":1,"wait":true}"#,
            r#"{"argv":[],"v":2}"#,
            r#"{"argv":[],"v":2,"wait":true,"stdin":false,"replace":null}"#,
            r#" { "argv" : [ ] , "v" : 2 , "wait" : true , "stdin" : true , "replace" : true } "#,
            r#"{"v":2,"wait":false,"wait":true}"#,
            r#"{"v":2,"wait":true,"wait":false}"#,
            r#"{"v":1,"v":2,"stdin":true}"#,
            r#"{"v":2,"v":1,"stdin":true}"#,
            r#"{"v":2.0,"stdin":true}"#,
            r#"{"v":2,"wait":1}"#,
            r#"{"v":2,"stdin":"true"}"#,
            r#"{"v":2,"replace":[true]}"#,
            r#"{"v":2,"w\u0061it":true,"x":"\ud800"}"#,
            r#"{"v":2,"wait":tru}"#,
        ] {
            assert_eq!(decode_ask(line.as_bytes()), ask_by_map(line.as_bytes()), "{line}");
            let with_argv = line.replacen('{', r#"{"argv":[],"#, 1);
            if let (Ok(_), Ok(by_map)) =
                (super::super::message::decode_head(with_argv.as_bytes()), ask_by_map(with_argv.as_bytes()))
            {
                let asked = super::super::decode_request(with_argv.as_bytes()).map(|(_, ask)| ask);
                assert_eq!(asked, Ok(by_map), "{with_argv}");
            }
        }
    }

    #[test]
    fn frames_decode_the_last_of_a_repeated_field_and_escaped_keys() {
        assert_eq!(Frame::decode(br#"{"v":2,"taken":false,"taken":true}"#), Ok(Some(Frame::Taken)));
        assert!(Frame::decode(br#"{"v":2,"taken":true,"taken":false}"#).is_err());
        assert_eq!(Frame::decode(br#"{"v":2,"\u0065of":true}"#), Ok(Some(Frame::Eof)));
        assert_eq!(
            Frame::decode(br#"{"v":3,"v":2, "stdin" : "YQ==" }"#),
            Ok(Some(Frame::Stdin(b"a".to_vec())))
        );
        assert_eq!(Frame::decode(br#"{"v":2,"ok":false}"#), Ok(None));
        // An escaped key sends the line to serde_json's reading: the last value there too.
        assert_eq!(Frame::decode(br#"{"v":2,"\u0074aken":false,"taken":true}"#), Ok(Some(Frame::Taken)));
        assert!(Frame::decode(br#"{"v":2,"taken":true,"t\u0061ken":false}"#).is_err());
        assert_eq!(
            Frame::decode(br#"{"v":3,"\u0076":2,"stdin":"YQ=="}"#),
            Ok(Some(Frame::Stdin(b"a".to_vec())))
        );
    }
}
