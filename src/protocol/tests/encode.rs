//! The encoders write the bytes a `serde_json::Value` tree writes.

use std::collections::BTreeMap;
use std::ffi::OsString;

use serde_json::{json, Value};

use super::Rng;
use crate::protocol::*;

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
        for (k, v) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            if !v.is_empty() {
                o.insert(k.into(), json!(v));
            }
        }
    }
    Value::Object(o).to_string()
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
        Reply::busy(),
        Reply::error("no").with_exit_code(4).with_stderr("why\n"),
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

/// Integers are written as `Display` writes them, at both ends of their range.
#[test]
fn encode_integers_as_display_writes_them() {
    for n in [0i64, 7, -1, 10, -10, i32::MIN.into(), i32::MAX.into(), u32::MAX.into(), i64::MIN, i64::MAX] {
        let mut out = super::super::JsonOut::with_capacity(0);
        out.int(n);
        assert_eq!(out.finish(), n.to_string());
    }
}
