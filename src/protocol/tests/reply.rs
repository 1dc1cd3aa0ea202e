//! Replies: round trips, exit codes, and the texts of a primary of another user.

use serde_json::json;

use crate::protocol::reply::acts_on_a_terminal;
use crate::protocol::*;

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
        Reply::busy(),
        Reply::error("no").with_exit_code(3).with_stdout("out\n").with_stderr("err\n"),
    ] {
        assert_eq!(Reply::decode(r.encode().as_bytes()).unwrap(), r);
    }
    // What `encode` leaves out for a kind of reply, `decode` ignores (found by fuzz/).
    let r = Reply::decode(br#"{"v":1,"ok":true,"retry":true,"error":"e"}"#).unwrap();
    assert_eq!((r.ok, r.retry, r.error.as_deref()), (true, false, None));
    let r = Reply::decode(br#"{"v":1,"ok":false,"stdout":"x","data":[1],"retry":true}"#).unwrap();
    assert_eq!(r, Reply::retry("").with_stdout("x"));
    assert_eq!(
        Reply::ok().encode(),
        r#"{"data":null,"exit_code":0,"ok":true,"stderr":"","stdout":"","v":1}"#
    );
}
