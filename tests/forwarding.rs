//! Forwarding and replies: a launch's arguments, working directory, activation token and
//! data reach the primary byte for byte (guarantees 6 and 7), and the primary's reply
//! (exit code, output, data, refusal) reaches the launch; the quick start and the editor
//! demo do what the README says; invalid app ids are refused.
//!
//! Every test has a Watchdog; readiness is a line read or a channel, never a sleep.
#![cfg(unix)]

mod util;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use serde_json::json;
use solo_instance::{protocol::decode_os, Error, Reply, SingleInstance};
use util::solo::{
    builder, forwarded, json_line, output, primary_of, private_dir, reply_of, set_mode, signal, spawn_launch,
    text, Fixture,
};
use util::{example, Proc, TempDir, Watchdog};

/// Guarantee 6: an argument with bytes 0xFF 0xFE and a working directory whose name is
/// not UTF-8 arrive byte for byte (`{"base64":"..."}`), beside plain Unicode strings.
#[test]
fn non_utf8_argv_and_cwd_round_trip_byte_for_byte() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("bytes");
    let p = f.primary(&[]);
    let cwd = f.dir.path().join(OsStr::from_bytes(b"cwd-\xff\xfe-\xc3("));
    std::fs::create_dir(&cwd).unwrap();
    let cwd = std::fs::canonicalize(&cwd).unwrap();
    let odd = OsStr::from_bytes(b"file-\xff\xfe.txt");
    let unicode = "ü ✓\n\"quoted\"";

    let mut cmd = f.cmd("send", [OsStr::new("--"), odd, OsStr::new(unicode), OsStr::new("")]);
    cmd.current_dir(&cwd);
    let out = output(&mut cmd);
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    assert_eq!(forwarded(&text(&out.stdout))["ok"], true);

    let request = json_line(&p.line());
    let argv = request["argv"].as_array().unwrap();
    assert_eq!(argv.len(), 4, "{request}");
    assert_eq!(argv[1], json!({ "base64": "ZmlsZS3//i50eHQ=" }), "{request}");
    assert_eq!(decode_os(&argv[1]).unwrap().as_bytes(), odd.as_bytes());
    assert_eq!(argv[2], unicode, "Unicode stays a plain string");
    assert_eq!(argv[3], "");
    assert!(request["cwd"].get("base64").is_some(), "{request}");
    let got: OsString = decode_os(&request["cwd"]).unwrap();
    assert_eq!(got.as_bytes(), cwd.as_os_str().as_bytes(), "cwd differs");
}

/// Guarantee 6 for the location itself: a runtime directory whose path is not UTF-8 still
/// works (the socket gets a name the socket API can carry), and two such directories
/// differing only in their non-UTF-8 bytes stay independent.
#[test]
fn non_utf8_runtime_dir_still_elects_and_forwards() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let parent = TempDir::new("rtbytes");
    let make = |bytes: &[u8]| {
        let dir = parent.path().join(OsStr::from_bytes(bytes));
        std::fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o700);
        dir
    };
    let (a, b) = (make(b"rt-\xff"), make(b"rt-\xfe"));
    let solo = |dir: &Path, sub: &str, args: &[&str]| {
        let mut cmd = Command::new(example("solo"));
        cmd.args([sub, "org.test.bytes"]).args(args).env("XDG_RUNTIME_DIR", dir).current_dir("/");
        cmd
    };
    let pa = Proc::spawn(&mut solo(&a, "run", &[]));
    let line = pa.line();
    assert!(line.starts_with("PRIMARY "), "{line}; stderr: {}", pa.stderr());
    // A different directory: its own primary, not a launch forwarded to the first.
    let pb = Proc::spawn(&mut solo(&b, "run", &[]));
    let line_b = pb.line();
    assert!(line_b.starts_with("PRIMARY "), "{line_b}; stderr: {}", pb.stderr());
    assert_ne!(line, line_b);
    for (dir, p, tag) in [(&a, &pa, "to-a"), (&b, &pb, "to-b")] {
        let out = output(&mut solo(dir, "send", &["--", tag]));
        assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
        assert_eq!(json_line(&p.line())["argv"][1], tag);
    }
    for p in [pa, pb] {
        signal(p.id(), libc::SIGTERM);
        assert!(p.finish().0.success());
    }
    // The sockets were in fallback directories made for these runtime directories (named
    // after a secret kept in each): not to be left behind by a test.
    for l in [&line, &line_b] {
        let _ = std::fs::remove_dir(Path::new(l.trim_start_matches("PRIMARY ")).parent().unwrap());
    }
}

/// Guarantee 7: `XDG_ACTIVATION_TOKEN` and `DESKTOP_STARTUP_ID` are forwarded; nothing else
/// of the environment is (that is opt-in).
#[test]
fn activation_token_and_startup_id_are_forwarded() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("activate");
    let p = f.primary(&[]);
    let mut cmd = f.cmd("send", ["--", "raise"]);
    cmd.env("XDG_ACTIVATION_TOKEN", "tok123").env("DESKTOP_STARTUP_ID", "id456").env("SOLO_TEST_SECRET", "s");
    let out = output(&mut cmd);
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    let request = json_line(&p.line());
    assert_eq!(request["argv"][1], "raise");
    assert_eq!(request["env"], json!({"XDG_ACTIVATION_TOKEN": "tok123", "DESKTOP_STARTUP_ID": "id456"}));

    let request = f.send_ok(&p, "no-token");
    assert_eq!(request["env"], json!({}), "{request}");
}

/// `requests()`, `reply` with exit code, output and data, the request's accessors, status,
/// `send()` with and without a primary, and error replies (`Error::Rejected`).
#[test]
fn lib_primary_serves_requests_and_replies() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-serve");
    assert!(matches!(builder(dir.path(), &[]).send(), Err(Error::NoPrimary)));
    let status = builder(dir.path(), &[]).status().unwrap();
    assert!(!status.running);

    let primary = primary_of(builder(dir.path(), &["first"]).start());
    assert_eq!(primary.socket_path(), dir.path().join("org.test.Lib.sock"));
    assert_eq!(primary.lock_path(), dir.path().join("org.test.Lib.lock"));
    assert_eq!(primary.app_id(), "org.test.Lib");
    let status = builder(dir.path(), &[]).status().unwrap();
    assert!(status.running);
    assert_eq!(status.pid, Some(std::process::id()));
    assert_eq!(status.socket, primary.socket_path());

    let b = builder(dir.path(), &["second", "x"]).data(json!({"k": 1}));
    let l = thread::spawn(move || b.start());
    let request = primary.requests().next().unwrap();
    assert_eq!(request.args(), [OsString::from("second"), OsString::from("x")]);
    assert_eq!(request.argv()[0], "prog");
    assert_eq!(request.pid(), Some(std::process::id()));
    assert_eq!(request.data(), &json!({"k": 1}));
    assert_eq!(request.cwd(), Some(std::env::current_dir().unwrap().as_path()));
    assert_eq!(request.peer_credentials().and_then(|c| c.uid), Some(unsafe { libc::geteuid() }));
    assert_eq!(json_line(request.raw_json())["argv"][1], "second");
    request.reply(Reply::exit(3).with_stdout("out").with_stderr("err").with_data(json!([1]))).unwrap();
    let reply = reply_of(l.join().unwrap());
    assert!(reply.is_ok());
    assert_eq!((reply.exit_code(), reply.stdout(), reply.stderr()), (3, "out", "err"));
    assert_eq!(reply.data(), &json!([1]));

    // send() forwards too.
    let b = builder(dir.path(), &["via-send"]);
    let l = thread::spawn(move || b.send());
    let request = primary.recv().unwrap();
    assert_eq!(request.args(), [OsString::from("via-send")]);
    request.reply(Reply::ok()).unwrap();
    assert_eq!(l.join().unwrap().unwrap().exit_code(), 0);

    // A refusal, and a request dropped unanswered: the launch gets an error, never a hang.
    let l = spawn_launch(dir.path(), &["refuse-me"]);
    primary.recv().unwrap().reply(Reply::error("nope")).unwrap();
    match l.join().unwrap() {
        Err(Error::Rejected(reply)) => {
            assert_eq!((reply.error_message(), reply.exit_code()), (Some("nope"), 1));
            assert_eq!((reply.stdout(), reply.stderr()), ("", ""));
        }
        other => panic!("expected Rejected: {other:?}"),
    }
    // A refusal keeps its exit code and texts on the way, and says its message.
    let l = spawn_launch(dir.path(), &["refuse-me-loudly"]);
    let refusal =
        Reply::error("no such file").with_exit_code(66).with_stdout("usage\n").with_stderr("b.txt?\n");
    primary.recv().unwrap().reply(refusal.clone()).unwrap();
    match l.join().unwrap() {
        Err(e @ Error::Rejected(_)) => {
            assert_eq!(e.to_string(), "the primary instance answered with an error: no such file");
            let Error::Rejected(reply) = e else { unreachable!() };
            assert_eq!(*reply, refusal);
        }
        other => panic!("expected Rejected: {other:?}"),
    }
    let l = spawn_launch(dir.path(), &["drop-me"]);
    drop(primary.recv().unwrap());
    match l.join().unwrap() {
        Err(Error::Rejected(reply)) => {
            assert!(reply.error_message().unwrap().contains("without answering"), "{reply:?}")
        }
        other => panic!("expected Rejected: {other:?}"),
    }
}

/// The README's quick start is `examples/quickstart.rs` (the test checks the text), and
/// as a forwarded launch it prints what the primary answered, on stdout and stderr, and
/// exits with its code; a refusal (`Reply::error`) prints the primary's message and exits 1.
#[test]
fn quick_start_forwarded_launch_prints_the_answer_and_exits_with_its_code() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let program = include_str!("../examples/quickstart.rs");
    let code = &program[program.find("use std::process").unwrap()..];
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```rust,no_run\n{code}```")),
        "the README's quick start is not examples/quickstart.rs"
    );
    let f = Fixture::in_namespace("org.example", "Editor");
    let primary =
        primary_of(SingleInstance::new(&f.app).unwrap().directory(f.dir.path()).argv(["p"]).start());
    let launch = |arg: &str| {
        let mut cmd = Command::new(example("quickstart"));
        cmd.arg(arg).env("XDG_RUNTIME_DIR", f.dir.path());
        thread::spawn(move || output(&mut cmd))
    };

    let answered = launch("b.txt");
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("the quick start's launch");
    assert_eq!(request.args(), ["b.txt"]);
    request.reply(Reply::exit(3).with_stdout("opened b.txt\n").with_stderr("b.txt is read-only\n")).unwrap();
    let out = answered.join().unwrap();
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("opened b.txt\n".into(), "b.txt is read-only\n".into())
    );
    assert_eq!(out.status.code(), Some(3));

    let refused = launch("c.txt");
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("the quick start's launch");
    request.reply(Reply::error("c.txt: no such file")).unwrap();
    let out = refused.join().unwrap();
    assert!(text(&out.stderr).contains("c.txt: no such file"), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(1));
}

/// The demo: the first `editor` opens its files and stays; a later one hands its file over
/// (resolved against its own directory) and prints the primary's answer; `--quit` ends it.
#[test]
fn editor_demo_hands_files_over() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("editor");
    let work = f.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("b.txt"), "one\ntwo\n").unwrap();
    let editor = |args: &[&str]| {
        let mut cmd = Command::new(example("editor"));
        cmd.args(args)
            .env("XDG_RUNTIME_DIR", f.dir.path())
            .env_remove("XDG_ACTIVATION_TOKEN")
            .env_remove("DESKTOP_STARTUP_ID")
            .current_dir(&work);
        cmd
    };
    let primary = Proc::spawn(&mut editor(&["a.txt"]));
    assert!(primary
        .line()
        .starts_with(&format!("editor: running as the primary instance (pid {})", primary.id())));
    primary.line();
    assert_eq!(primary.line(), format!("editor: opened {} (new file)", work.join("a.txt").display()));

    let out = output(editor(&["b.txt"]).env("XDG_ACTIVATION_TOKEN", "tok"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("editor: opened b.txt in the running editor (pid {})\n", primary.id())
    );
    assert_eq!(primary.line(), "editor: raising the window (activation token tok)");
    assert_eq!(primary.line(), format!("editor: opened {} (2 lines)", work.join("b.txt").display()));

    let out = output(&mut editor(&["--quit"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "editor: the editor is closing\n");
    let (status, rest) = primary.finish();
    assert!(status.success());
    assert_eq!(rest, ["editor: closed 2 file(s)"]);
}

/// Invalid app ids are refused up front, by the library and by `solo`.
#[test]
fn lib_invalid_app_ids() {
    let _w = Watchdog::new(Duration::from_secs(60));
    for ok in ["org.example.Editor", "a", "my_app-2", "A1"] {
        assert!(SingleInstance::new(ok).is_ok(), "{ok}");
    }
    let long = "x".repeat(201);
    for bad in ["", ".hidden", "-flag", "a/b", "../up", "a b", "ü", "a\0b", long.as_str()] {
        match SingleInstance::new(bad) {
            Err(e @ Error::InvalidAppId(_)) => assert!(e.to_string().starts_with("invalid app id"), "{e}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let f = Fixture::new("badid");
    let out = output(Command::new(example("solo")).args(["run", "a/b"]).env("XDG_RUNTIME_DIR", f.dir.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("invalid app id"), "{}", text(&out.stderr));
    assert!(f.dir.entries().is_empty(), "{:?}", f.dir.entries());
}

/// A reply longer than one read (the launch reads 8 KiB at a time) reaches the launch
/// whole; one over the launch's message limit is refused, not cut.
#[test]
fn forwarding_a_reply_longer_than_one_read_arrives_whole() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("bigreply");
    let primary = util::solo::lib_primary(dir.path(), "org.test.Lib");
    for (len, limit) in [(100_000, 1 << 20), (100_000, 50_000)] {
        let b = builder(dir.path(), &["big"]).max_message_size(limit);
        let launch = thread::spawn(move || b.start());
        let request = primary.recv_timeout(Duration::from_secs(20)).expect("the launch");
        let _ = request.reply(Reply::ok().with_stdout("y".repeat(len)));
        match launch.join().unwrap() {
            Ok(solo_instance::Start::Forwarded(reply)) if len < limit => {
                assert_eq!(reply.stdout().len(), len)
            }
            Err(e) if len > limit => assert!(e.to_string().contains("too large"), "{e}"),
            other => panic!("a {len}-byte reply with a {limit}-byte limit: {other:?}"),
        }
    }
}

/// A request over the launch's own message limit is refused by the launch once its
/// primary answers, and never sent: the primary receives nothing.
#[test]
fn forwarding_a_request_over_the_limit_is_refused_unsent() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("overlimit");
    let primary = util::solo::lib_primary(dir.path(), "org.test.Lib");
    let long = "z".repeat(200);
    let r = builder(dir.path(), &[&long]).max_message_size(100).start();
    match r {
        Err(Error::Protocol(why)) => assert!(why.message().contains("message too large"), "{why}"),
        other => panic!("a 200-byte argument with a 100-byte limit: {other:?}"),
    }
    // A launch under the limit is answered: the one refused sent nothing before it.
    let launch = spawn_launch(dir.path(), &["small"]);
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("the small launch");
    assert_eq!(request.argv().last().and_then(|a| a.to_str()), Some("small"));
    let _ = request.reply(Reply::ok());
    reply_of(launch.join().unwrap());
}
