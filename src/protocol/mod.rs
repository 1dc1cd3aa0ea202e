//! The wire protocol between a launch and the primary: one request line and one reply line
//! of JSON per connection, each with a version, documented so that a program in another
//! language (a Qt app, a Python script) can speak it. Strings that are not valid Unicode travel losslessly as
//! `{"base64":"..."}` (Unix bytes, standard base64 with padding: 4 bytes per 3) or
//! `{"wide":[...]}` (Windows UTF-16 units); `{"bytes":[...]}` (an array of byte values)
//! is still decoded.

pub(crate) mod frame;
mod message;
mod os_str;
mod reply;

use serde_json::{Map, Value};

pub use message::Message;
pub(crate) use message::{decode_head, parse_data, Head};
pub use os_str::{decode_os, encode_os};
pub(crate) use reply::defuse;
pub use reply::Reply;

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
mod tests {
    use std::collections::BTreeMap;
    use std::ffi::OsString;

    use serde_json::{json, Map, Number};

    use super::os_str::{base64_decode, base64_encode};
    use super::reply::acts_on_a_terminal;
    use super::*;

    /// What the encoders replaced: a `serde_json::Value` tree of the message's fields,
    /// written compact (sorted keys). The encoders must write the same bytes.
    fn value_tree_of_message(m: &Message) -> String {
        use serde_json::{Map, Value};
        let env: Map<String, Value> = m.env.iter().map(|(k, v)| (k.clone(), encode_os(v))).collect();
        json!({
            "v": PROTOCOL_VERSION,
            "argv": m.argv.iter().map(|a| encode_os(a)).collect::<Vec<_>>(),
            "cwd": m.cwd.as_deref().map_or(Value::Null, encode_os),
            "env": env,
            "pid": m.pid,
            "data": m.data,
        })
        .to_string()
    }

    /// The same for a reply.
    fn value_tree_of_reply(r: &Reply) -> String {
        use serde_json::{Map, Value};
        let mut o = Map::new();
        o.insert("v".into(), json!(PROTOCOL_VERSION));
        o.insert("ok".into(), json!(r.ok));
        o.insert("exit_code".into(), json!(r.exit_code));
        if r.ok {
            o.insert("stdout".into(), json!(r.stdout));
            o.insert("stderr".into(), json!(r.stderr));
            o.insert("data".into(), r.data.clone());
        } else {
            o.insert("error".into(), json!(r.error.as_deref().unwrap_or("")));
            if r.retry {
                o.insert("retry".into(), json!(true));
            }
        }
        Value::Object(o).to_string()
    }

    /// A small deterministic generator for the property tests (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn string(&mut self) -> String {
            const ODD: [char; 12] = [
                '"',
                '\\',
                '/',
                '\u{7f}',
                '\u{2028}',
                '\u{2029}',
                '\u{fffd}',
                '\u{feff}',
                'é',
                '€',
                '\u{1f600}',
                '\u{10ffff}',
            ];
            let len = self.below(12);
            (0..len)
                .map(|_| match self.below(4) {
                    0 => char::from_u32(self.below(0x20) as u32).unwrap(),
                    1 => ODD[self.below(ODD.len() as u64) as usize],
                    2 => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('x'),
                    _ => char::from(b'a' + self.below(26) as u8),
                })
                .collect()
        }
        fn os(&mut self) -> OsString {
            #[cfg(unix)]
            if self.below(3) == 0 {
                use std::os::unix::ffi::OsStringExt;
                let len = self.below(10);
                return OsString::from_vec((0..len).map(|_| self.next() as u8).collect());
            }
            OsString::from(self.string())
        }
        fn value(&mut self, depth: u32) -> Value {
            match self.below(if depth == 0 { 6 } else { 8 }) {
                0 => Value::Null,
                1 => Value::Bool(self.below(2) == 0),
                2 => match self.below(4) {
                    0 => json!(i64::MIN),
                    1 => json!(u64::MAX),
                    2 => json!(self.next() as i64),
                    _ => json!(self.next()),
                },
                3 => Number::from_f64(f64::from_bits(self.next())).map_or(Value::Null, Value::Number),
                4 => json!(self.below(1000) as f64 / 8.0 - 60.0),
                5 => Value::String(self.string()),
                6 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
                _ => {
                    let o: Map<String, Value> =
                        (0..self.below(4)).map(|_| (self.string(), self.value(depth - 1))).collect();
                    Value::Object(o)
                }
            }
        }
    }

    /// The encoders write the very bytes a `serde_json::Value` tree of the same fields
    /// writes (sorted keys, compact): what scripts and older peers have always seen.
    #[test]
    fn encoders_write_what_a_value_tree_writes() {
        let mut full = Message::new(["prog", "a \"quoted\"\n\u{1}", "ü€"]);
        full.cwd = Some("/tmp/ü".into());
        full.pid = Some(4242);
        full.env = BTreeMap::from([
            ("XDG_ACTIVATION_TOKEN".to_owned(), OsString::from("tok")),
            ("A".to_owned(), OsString::from("")),
        ]);
        full.data = json!({"z": [1, 2.5, null, {"k": "v"}], "a": true});
        #[cfg_attr(not(unix), allow(unused_mut))]
        let mut messages = vec![Message::new(Vec::<OsString>::new()), full];
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let mut odd = Message::new([OsString::from_vec(b"x\xff".to_vec())]);
            odd.cwd = Some(OsString::from_vec(b"/\xfe".to_vec()));
            odd.env.insert("DESKTOP_STARTUP_ID".into(), OsString::from_vec(vec![0xc3]));
            messages.push(odd);
        }
        for m in &messages {
            assert_eq!(m.encode(), value_tree_of_message(m));
        }
        for r in [
            Reply::ok(),
            Reply::exit(-3).with_stdout("out \"x\"\n").with_stderr("é\t").with_data(json!([{"b": 1}, "s"])),
            Reply::error("bad \"thing\""),
            Reply::retry("busy"),
        ] {
            assert_eq!(r.encode(), value_tree_of_reply(&r));
        }
    }

    /// The same on random input, 3000 messages and replies: strings of every escape class
    /// (controls, quotes, backslashes, U+2028, non-BMP), non-UTF-8 OS strings (Unix),
    /// integers at the extremes, floats of random bits, nested data.
    #[test]
    fn encoders_write_what_a_value_tree_writes_on_random_input() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let mut m = Message::new((0..rng.below(5)).map(|_| rng.os()).collect::<Vec<_>>());
            m.cwd = (rng.below(2) == 0).then(|| rng.os());
            m.env = (0..rng.below(4)).map(|_| (rng.string(), rng.os())).collect();
            m.pid = (rng.below(2) == 0).then(|| rng.next() as u32);
            m.data = rng.value(3);
            let line = m.encode();
            assert_eq!(line, value_tree_of_message(&m));
            // And it decodes to what was encoded.
            assert_eq!(Message::decode(line.as_bytes()).unwrap(), m, "{line}");
            let r = Reply {
                ok: rng.below(2) == 0,
                exit_code: rng.next() as i32,
                stdout: rng.string(),
                stderr: rng.string(),
                data: rng.value(3),
                error: (rng.below(2) == 0).then(|| rng.string()),
                retry: rng.below(2) == 0,
                from_another_user: false,
            };
            assert_eq!(r.encode(), value_tree_of_reply(&r));
        }
    }

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

    /// `data` as a line, for the tests below.
    fn with_data(data: &str) -> String {
        format!("{{\"v\":1,\"argv\":[\"x\"],\"data\":{data}}}")
    }

    /// Whether `Message::decode` takes `line`, and then that its `data` is exactly what a
    /// `Value` parse of the whole line gives: never the `null` that a failed parse of
    /// `data` used to become.
    fn decode_agrees_with_a_value_parse(line: &str) -> bool {
        let by_value = serde_json::from_str::<Value>(line);
        match Message::decode(line.as_bytes()) {
            Ok(m) => {
                let v = by_value
                    .unwrap_or_else(|e| panic!("decoded, but a Value parse fails ({e}): {line:.200}"));
                assert_eq!(m.data, v["data"], "{line:.200}");
                true
            }
            Err(e) => {
                assert!(by_value.is_err(), "refused ({e}), but a Value parse takes it: {line:.200}");
                false
            }
        }
    }

    /// Data a `serde_json::Value` cannot hold (beyond f64, lone surrogates in strings and
    /// keys) is refused at decode with a clear error naming the field, instead of being
    /// accepted and read as `null`; what it can hold is accepted and read exactly.
    #[test]
    fn data_a_value_cannot_hold_is_refused_at_decode() {
        let huge = format!("1{}", "0".repeat(300_000));
        let tiny = format!("0.{}1", "0".repeat(300_000));
        // f64's limit: 2^1024 - 2^970 rounds up to infinity; anything below, to f64::MAX.
        let at_threshold = format!("{}.0e0", message::F64_OVERFLOW_TEXT);
        let below_threshold = format!("0.{}e309", &message::F64_OVERFLOW_TEXT[..308]);
        // 300,000 zeros after the point, and an exponent that brings the digit back: 1e308
        // fits, 2e308 does not.
        let e308 = format!("0.{}1e300309", "0".repeat(300_000));
        let two_e308 = format!("0.{}2e300309", "0".repeat(300_000));
        let refused = [
            ("1e400", "number out of range"),
            ("-1e400", "number out of range"),
            ("[1,{\"k\":1.5e309}]", "number out of range"),
            (&huge, "number out of range"),
            ("1e2147483648", "number out of range"),
            (message::F64_OVERFLOW_TEXT, "number out of range"),
            (&at_threshold, "number out of range"),
            (&two_e308, "number out of range"),
            ("1.7976931348623159e308", "number out of range"),
            ("\"\\udfff\"", "lone surrogate"),
            ("\"\\ud800\"", "lone surrogate"),
            ("\"a\\ud800b\"", "lone surrogate"),
            ("\"\\ud800\\u0041\"", "lone surrogate"),
            ("\"\\ud800\\ud800\"", "lone surrogate"),
            ("\"\\ud800\\n\"", "lone surrogate"),
            ("{\"\\udfff\":1}", "lone surrogate"),
            ("[{\"ok\":{\"\\uDBFF\":null}}]", "lone surrogate"),
        ];
        for (data, want) in refused {
            let line = with_data(data);
            assert!(!decode_agrees_with_a_value_parse(&line), "{data:.80}");
            let e = Message::decode(line.as_bytes()).unwrap_err();
            assert!(e.message().contains(want) && e.message().starts_with("\"data\": "), "{e} ({data:.80})");
            assert!(e.message().len() < 200, "{e}");
        }
        let taken = [
            "1e308",
            "1.7976931348623157e308",
            "-1.7976931348623158e308",
            "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791.999999",
            "1e-400",
            "0e99999999999",
            "-0.0e400",
            "0.0000000000000000000000000001e327",
            "123456789012345678901234567890e-400",
            &tiny,
            &below_threshold,
            &e308,
            "\"\\ud83d\\ude00 \\u00e9\\ufffd\"",
            "{\"\\ud83d\\ude00\":[\"\\\\ud800\"]}",
        ];
        for data in taken {
            let line = with_data(data);
            assert!(decode_agrees_with_a_value_parse(&line), "{data:.80}");
            assert!(!Message::decode(line.as_bytes()).unwrap().data.is_null(), "{data:.80}");
        }
    }

    /// The other fields: a lone surrogate in argv, cwd, an environment value (the
    /// activation token), an environment key or an unknown field is refused, naming it.
    #[test]
    fn lone_surrogates_are_refused_in_every_field() {
        for (line, field) in [
            (r#"{"v":1,"argv":["a\udfffb"]}"#, "\"argv\""),
            (r#"{"v":1,"argv":[],"cwd":"/tmp/\ud800"}"#, "\"cwd\""),
            (r#"{"v":1,"argv":[],"env":{"XDG_ACTIVATION_TOKEN":"\udc00"}}"#, "\"env\""),
            (r#"{"v":1,"argv":[],"env":{"\udc00":"t"}}"#, "\"env\""),
            (r#"{"v":1,"argv":[],"later":["\udc00"]}"#, "\"later\""),
            (r#"{"v":1,"argv":[],"\udc00":1}"#, "surrogate"),
        ] {
            let e = Message::decode(line.as_bytes()).unwrap_err();
            assert!(e.message().contains("surrogate") && e.message().contains(field), "{e} ({line})");
            assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
        }
    }

    /// Property: on 20,000 lines with numbers around f64's limit (the threshold's own
    /// digits perturbed, shifted by the decimal point and the exponent, padded with zeros)
    /// and strings of random escapes around the surrogates, `Message::decode` takes a line
    /// exactly when a `Value` parse does, and then gives the same `data`.
    #[test]
    fn decode_takes_what_a_value_parse_takes_on_random_input() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let threshold = message::F64_OVERFLOW_TEXT;
        let (mut refused, mut taken) = (0, 0);
        for _ in 0..20_000 {
            let data = match rng.below(3) {
                0 | 1 => {
                    // Digits: a prefix of the threshold's, one perhaps changed by one.
                    let n = 1 + rng.below(threshold.len() as u64 + 40) as usize;
                    let mut digits: Vec<u8> =
                        threshold.bytes().chain(std::iter::repeat(b'0')).take(n).collect();
                    if rng.below(2) == 0 {
                        let at = rng.below(n as u64) as usize;
                        digits[at] = if rng.below(2) == 0 {
                            digits[at].saturating_sub(1).max(b'0')
                        } else {
                            (digits[at] + 1).min(b'9')
                        };
                    }
                    if rng.below(4) == 0 {
                        digits.push(b'0' + rng.below(10) as u8);
                    }
                    let digits = String::from_utf8(digits).unwrap();
                    // Where the point goes, and the exponent that puts it back near 10^308.
                    let point = rng.below(digits.len() as u64 + 1) as usize;
                    let zeros = "0".repeat(rng.below(3) as usize * rng.below(30) as usize);
                    let (int, frac) = digits.split_at(point);
                    let mantissa = match (int.trim_start_matches('0'), frac) {
                        ("", "") => "0".to_owned(),
                        ("", f) => format!("0.{zeros}{f}"),
                        (i, "") => i.to_owned(),
                        (i, f) => format!("{i}.{f}"),
                    };
                    let shift = 309 - int.trim_start_matches('0').len() as i64
                        + if int.trim_start_matches('0').is_empty() { zeros.len() as i64 } else { 0 };
                    let exp = shift + rng.below(5) as i64 - 3;
                    let sign = if rng.below(2) == 0 { "-" } else { "" };
                    match rng.below(3) {
                        0 => format!("{sign}{mantissa}e{exp}"),
                        1 => format!("{sign}{mantissa}E+{exp}"),
                        _ => format!("[{sign}{mantissa}e{}]", exp - 1),
                    }
                }
                _ => {
                    let escape = |rng: &mut Rng| match rng.below(5) {
                        0 => format!("\\u{:04x}", 0xD800 + rng.below(0x800)),
                        1 => format!("\\u{:04X}", 0xD7F0 + rng.below(0x20)),
                        2 => "\\n".to_owned(),
                        3 => "x".to_owned(),
                        _ => format!("\\u{:04x}", 0xDFF0 + rng.below(0x20)),
                    };
                    let text: String = (0..rng.below(5)).map(|_| escape(&mut rng)).collect();
                    if rng.below(2) == 0 {
                        format!("\"{text}\"")
                    } else {
                        format!("{{\"{text}\":0}}")
                    }
                }
            };
            if decode_agrees_with_a_value_parse(&with_data(&data)) {
                taken += 1;
            } else {
                refused += 1;
            }
        }
        // Both sides of the limits were tried.
        assert!(refused > 2000 && taken > 2000, "{refused} refused, {taken} taken");
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
            (b"{\"v\":3,\"argv\":[]}", "unsupported protocol version 3"),
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

    /// What a primary of another user sends for a terminal: escape sequences (clear,
    /// title, colour), a bare carriage return and a backspace (overwriting), a C1 CSI,
    /// a right-to-left override; each shows as `\u{..}`. Newline, tab, a CRLF line end,
    /// right-to-left marks and other text stay as they are.
    pub(crate) const HOSTILE_OUTPUT: &str =
        "\x1b[2J\x1b]0;pwned\x07red:\x1b[31mX\x1b[0m\rOVER\x08\u{9b}31m\u{202e}txt.exe\u{2066}\x7f\0\n\tok é\u{200f}😀\r\n";
    pub(crate) const HOSTILE_OUTPUT_DEFUSED: &str = "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}red:\\u{1b}[31mX\\u{1b}[0m\\u{d}OVER\\u{8}\\u{9b}31m\\u{202e}txt.exe\\u{2066}\\u{7f}\\u{0}\n\tok é\u{200f}😀\r\n";

    #[test]
    fn replies_from_another_user_are_defused_for_the_terminal() {
        assert_eq!(defuse(HOSTILE_OUTPUT), HOSTILE_OUTPUT_DEFUSED);
        for plain in ["", "v1.0\n", "a\tb\r\nc", "ü€😀\u{200e}"] {
            assert!(matches!(defuse(plain), std::borrow::Cow::Borrowed(_)), "{plain:?}");
        }
        let sent = Reply::exit(3)
            .with_stdout(HOSTILE_OUTPUT)
            .with_stderr("\x1b[31merr\x1b[0m\n")
            .with_data(json!({"k": "\x1b"}));
        let got = Reply::decode(sent.encode().as_bytes()).unwrap();
        assert!(!got.is_from_another_user());
        assert_eq!(got, sent, "the app's own decoding keeps the texts");
        let got = got.received_from_another_user();
        assert!(got.is_from_another_user());
        assert_eq!((got.stdout(), got.stderr()), (HOSTILE_OUTPUT_DEFUSED, "\\u{1b}[31merr\\u{1b}[0m\n"));
        assert_eq!((got.exit_code(), got.data()), (3, &json!({"k": "\x1b"})), "kept as sent");
        let refused = Reply::error("no\x1b]52;c;cGF5bG9hZA==\x07").received_from_another_user();
        assert_eq!(refused.error_message(), Some("no\\u{1b}]52;c;cGF5bG9hZA==\\u{7}"));
    }

    /// `encode` of a reply from another user is a line an app may print (the `solo`
    /// example prints it as is). JSON escapes C0 controls but writes DEL, C1 controls (CSI
    /// U+009B) and bidi overrides raw: in `data`, which is kept as sent, they would reach
    /// the terminal. They are written as JSON `\u` escapes instead: the same value, once
    /// decoded, and nothing for a terminal to act on.
    #[test]
    fn a_foreign_replys_encoding_escapes_what_json_leaves_raw() {
        let data = json!({"k\u{9b}": ["\u{9b}31m\u{202e}txt.exe\u{2066}\x7f\u{85}", "é\u{200f}😀"]});
        let got = Reply::decode(Reply::exit(3).with_data(data.clone()).encode().as_bytes())
            .unwrap()
            .received_from_another_user();
        let line = got.encode();
        for c in line.chars() {
            assert!(!acts_on_a_terminal(c), "{c:?} raw in {line}");
        }
        assert!(line.contains("é\u{200f}😀"), "other text stays: {line}");
        assert_eq!(Reply::decode(line.as_bytes()).unwrap().data(), &data, "the same value");
        // The app's own replies are written as ever.
        assert!(Reply::exit(3).with_data(data).encode().contains('\u{9b}'));
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
