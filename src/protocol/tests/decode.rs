//! What decoding takes and refuses, and how it says why.

use serde_json::Value;

use super::Rng;
use crate::protocol::os_str::{base64_decode, base64_encode};
use crate::protocol::*;

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
            let v =
                by_value.unwrap_or_else(|e| panic!("decoded, but a Value parse fails ({e}): {line:.200}"));
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
                let mut digits: Vec<u8> = threshold.bytes().chain(std::iter::repeat(b'0')).take(n).collect();
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
    use serde_json::json;
    use std::ffi::OsString;
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

/// Non-UTF-8 strings take at most 4 bytes per 3 on the wire, so
/// 360 KB of Latin-1 file names fit a 1 MiB request with room to spare.
#[cfg(unix)]
#[test]
fn non_utf8_strings_are_dense_on_the_wire() {
    use std::collections::BTreeMap;
    use std::ffi::OsString;
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
