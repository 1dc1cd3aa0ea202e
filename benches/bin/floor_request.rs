//! The request line a launch sends, built with std alone (shared by `launch_floor` and
//! `counts_loop`'s handoff floor): the same fields, in the same order, as the crate's
//! `Message::encode`: argv, cwd (`getcwd`), data `null`, the activation variables, pid
//! (`getpid`), version. Not UTF-8 is written lossily: a floor, not a protocol.

use std::ffi::OsString;
use std::fmt::Write;

/// `{"argv":[...],"cwd":"...","data":null,"env":{...},"pid":N,"v":1}` and its newline.
pub fn request_line(argv: &[OsString]) -> String {
    let mut out = String::with_capacity(128);
    out.push_str("{\"argv\":[");
    for (i, a) in argv.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(&mut out, &a.to_string_lossy());
    }
    out.push_str("],\"cwd\":");
    match std::env::current_dir() {
        Ok(cwd) => json_str(&mut out, &cwd.to_string_lossy()),
        Err(_) => out.push_str("null"),
    }
    out.push_str(",\"data\":null,\"env\":{");
    let mut first = true;
    for name in ["DESKTOP_STARTUP_ID", "XDG_ACTIVATION_TOKEN"] {
        if let Some(v) = std::env::var_os(name) {
            if !first {
                out.push(',');
            }
            first = false;
            json_str(&mut out, name);
            out.push(':');
            json_str(&mut out, &v.to_string_lossy());
        }
    }
    let _ = write!(out, "}},\"pid\":{},\"v\":1}}", std::process::id());
    out.push('\n');
    out
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
