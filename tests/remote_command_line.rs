//! The launch as a remote command line, with real processes (the `solo` example) and raw
//! sockets: `--wait` past the timeout, a primary killed or released during a wait, output
//! streamed before the reply, stdin forwarded byte for byte, a replace in the middle of a
//! burst of launches, protocol versions 1 and 2 both ways, and the primary's memory
//! bounded against a launch that never reads its output or a primary that never reads
//! stdin. And the attacks on it: hostile stdin frames, chunks with JSON escapes, output
//! frames over the limit from a primary written by hand, output in one-byte chunks, a
//! launch that takes its output a drop at a time, a primary killed while another process
//! holds its connection, a replacer that gave up before the primary accepted, a launch cut
//! off after it showed output (it never sends its request again; a replacer starts over).
//! And the errors of a hand-over that stalls: a new primary that never comes, an old one
//! that never releases.
//!
//! Readiness is always a line read or a channel, never a sleep; every test has a Watchdog.
#![cfg(unix)]

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use solo_instance::{LocalServer, LocalSocket, Reply, SingleInstance, Start};
use util::solo::{forwarded, hold_lock, json_line, output, signal, text, Fixture};
use util::{noise, Proc, Watchdog, LINE_TIMEOUT};

/// The request line the primary printed, decoded, and its first argument.
fn request_tag(line: &str) -> String {
    let request = json_line(line);
    request["argv"][1].as_str().unwrap_or_default().to_owned()
}

#[test]
fn wait_outlasts_the_timeout_once_the_request_is_taken() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-wait");
    let p = f.primary(&[]);
    // 0.3 s to be taken; the work takes 1.5 s.
    let out = output(&mut f.cmd("send", ["--timeout", "0.3", "--wait", "--", "--sleep-ms", "1500"]));
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    assert_eq!(forwarded(&text(&out.stdout))["ok"], true);
    assert_eq!(json_line(&p.line())["wait"], true);
    // The same launch without --wait fails: the reply is not there within its timeout.
    let out = output(&mut f.cmd("send", ["--timeout", "0.3", "--", "--sleep-ms", "1500"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("did not answer"), "{}", text(&out.stderr));
}

#[test]
fn kill_9_of_the_primary_ends_a_waiting_launch_at_once() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-kill");
    let p = f.primary(&[]);
    let launch = Proc::spawn_with_stdin(
        &mut f.cmd("send", ["--timeout", "0.3", "--wait", "--", "--sleep-ms", "600000"]),
    );
    // Taken: the primary printed it (the launch was told before the app got it).
    assert_eq!(json_line(&p.line())["wait"], true);
    signal(p.id(), libc::SIGKILL);
    let killed = Instant::now();
    let (status, err) = launch.finish_with_stderr();
    let took = killed.elapsed();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("went away before it answered"), "{err}");
    assert!(took < Duration::from_secs(1), "the wait ended {took:?} after the kill");
}

#[test]
fn a_release_ends_a_launch_waiting_for_a_request_the_app_holds() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-release");
    let Start::Primary(primary) =
        SingleInstance::new(&f.app).unwrap().directory(f.dir.path()).start().unwrap()
    else {
        panic!("not the primary")
    };
    let launch = Proc::spawn_with_stdin(&mut f.cmd("send", ["--timeout", "5", "--wait", "--", "held"]));
    let request = primary.recv().expect("the launch's request");
    assert!(request.is_waiting());
    primary.release();
    let (status, err) = launch.finish_with_stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("went away before it answered"), "{err}");
    assert!(!request.reply(Reply::ok()).unwrap().is_delivered());
}

/// A waker that reads a request's stdin (on the driver thread, which runs the primary's
/// loop) gets it: on Unix the read waits on the connection itself, not for the loop.
#[test]
fn a_waker_reads_a_launchs_stdin_on_the_driver_thread() {
    use std::sync::{Arc, Mutex};
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-waker-stdin");
    let Start::Primary(primary) =
        SingleInstance::new(&f.app).unwrap().directory(f.dir.path()).start().unwrap()
    else {
        panic!("not the primary")
    };
    let slot: Arc<Mutex<Option<solo_instance::Primary>>> = Arc::default();
    let (tx, got) = mpsc::channel();
    let tx = Mutex::new(tx);
    let in_waker = Arc::clone(&slot);
    primary.set_waker(move || {
        let held = in_waker.lock().unwrap();
        let Some(p) = held.as_ref() else { return };
        while let Ok(request) = p.try_recv() {
            let mut all = Vec::new();
            let read = request.stdin().read_to_end(&mut all).map(|_| all).map_err(|e| e.to_string());
            request.reply(Reply::exit(3)).unwrap();
            let _ = tx.lock().unwrap().send((read, thread::current().name().map(str::to_owned)));
        }
    });
    *slot.lock().unwrap() = Some(primary);
    let mut launch = Proc::spawn_with_stdin(&mut f.cmd("send", ["--stdin", "--", "waker"]));
    launch.stdin().write_all(b"read by the waker").unwrap();
    launch.close_stdin();
    let (read, on) = got.recv_timeout(LINE_TIMEOUT).expect("the waker's read of stdin hung");
    assert_eq!(read.as_deref(), Ok(&b"read by the waker"[..]));
    assert_eq!(on.as_deref(), Some("solo-instance serve"), "the waker ran elsewhere");
    let (status, err) = launch.finish_with_stderr();
    assert_eq!(status.code(), Some(3), "{err}");
    let p = slot.lock().unwrap().take();
    drop(p);
}

/// A launch that goes away while the primary does not read its stdin (what it sent waits
/// in the socket) is abandoned at once: its request says so, and a reply reaches nobody.
/// (Windows: `instance_launch_gone_with_its_stdin_unread_is_abandoned`.)
#[test]
fn a_launch_gone_with_its_stdin_unread_is_abandoned() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-stdin-gone");
    let Start::Primary(primary) =
        SingleInstance::new(&f.app).unwrap().directory(f.dir.path()).start().unwrap()
    else {
        panic!("not the primary")
    };
    let mut child = f
        .cmd("send", ["--stdin", "--", "gone"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (progress, taken) = mpsc::channel();
    let writer = thread::spawn(move || {
        let chunk = noise(32 * 1024, 13);
        while stdin.write_all(&chunk).is_ok() {
            if progress.send(()).is_err() {
                break;
            }
        }
    });
    let request = primary.recv().expect("the launch's request");
    assert!(request.has_stdin());
    // Until the launch stops taking stdin (everything between it and the app is full).
    while taken.recv_timeout(Duration::from_secs(2)).is_ok() {}
    assert!(!request.is_abandoned());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(request.is_abandoned(), "a launch gone with its stdin unread is not abandoned");
    assert!(!request.reply(Reply::ok()).unwrap().is_delivered());
    drop(taken);
    writer.join().unwrap();
}

#[test]
fn output_chunks_arrive_while_the_primary_still_works() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-progress");
    let p = f.primary(&[]);
    // `--cat` after `--progress 3`: no reply before this test closes the launch's stdin.
    let mut launch =
        Proc::spawn_with_stdin(&mut f.cmd("send", ["--stdin", "--", "--progress", "3", "--cat"]));
    assert_eq!(json_line(&p.line())["stdin"], true);
    for i in 1..=3 {
        assert_eq!(launch.line(), format!("progress {i}/3"));
    }
    launch.stdin().write_all(b"end\n").unwrap();
    assert_eq!(launch.line(), "end");
    launch.close_stdin();
    let reply = forwarded(&launch.line());
    assert_eq!(reply["ok"], true);
    let (status, err) = launch.finish_with_stderr();
    assert!(status.success(), "{err}");
}

#[test]
fn stdin_of_300_kb_is_echoed_back_byte_for_byte() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-cat");
    let _p = f.primary(&[]);
    let input = noise(300 * 1024, 0x5eed);
    let mut child = f
        .cmd("send", ["--stdin", "--", "--cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = input.clone();
    let writer = thread::spawn(move || stdin.write_all(&sent));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (echo, rest) = out.stdout.split_at(input.len().min(out.stdout.len()));
    assert!(echo == input.as_slice(), "the echo differs ({} bytes back)", out.stdout.len());
    assert_eq!(forwarded(&text(rest))["ok"], true);
}

#[test]
fn a_replace_in_the_middle_of_a_burst_loses_no_launch() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let f = Fixture::new("rcl-replace");
    let old = f.primary(&[]);
    let send = |i: usize| {
        let mut cmd = f.cmd("send", ["--timeout".to_owned(), "20".into(), "--".into(), format!("burst{i}")]);
        thread::spawn(move || output(&mut cmd))
    };
    let mut launches: Vec<_> = (0..12).map(send).collect();
    let new = Proc::spawn(&mut f.cmd("run", ["--replace"]));
    launches.extend((12..24).map(send));
    let mut served = std::collections::BTreeSet::new();
    for (i, l) in launches.into_iter().enumerate() {
        let out = l.join().unwrap();
        assert!(out.status.success(), "burst{i}: {:?} {}", out.status, text(&out.stderr));
        assert_eq!(forwarded(&text(&out.stdout))["ok"], true, "burst{i}");
    }
    // The old primary handed over and exited 0; the new one serves.
    let (status, old_lines) = old.finish();
    assert!(status.success(), "{old_lines:?}");
    assert_eq!(old_lines.last().map(String::as_str), Some("REPLACED"), "{old_lines:?}");
    served.extend(old_lines.iter().filter(|l| l.starts_with('{')).map(|l| request_tag(l)));
    assert_eq!(new.line(), format!("PRIMARY {}", f.sock().display()), "{}", new.stderr());
    while served.len() < 24 {
        served.insert(request_tag(&new.line()));
    }
    assert_eq!(served.len(), 24, "{served:?}");
    f.send_ok(&new, "after");
}

#[test]
fn a_version_1_launch_is_served_by_a_version_2_primary_as_before() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-v1launch");
    let p = f.primary(&[]);
    let conn = LocalSocket::connect(&f.sock_name()).unwrap();
    (&conn).write_all(b"{\"v\":1,\"argv\":[\"py\",\"--progress\",\"1\"]}\n").unwrap();
    let mut all = String::new();
    conn.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
    BufReader::new(&conn).read_to_string(&mut all).unwrap();
    // One line, the reply in version 1: no frames, no output (it cannot take any).
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 1, "{all:?}");
    let reply: Value = json_line(lines[0]);
    assert_eq!((reply["v"].as_u64(), reply["ok"].as_bool()), (Some(1), Some(true)), "{reply}");
    assert_eq!(json_line(&p.line())["v"], 1);
}

/// A primary of version 1, by hand: it holds the lock, and answers each line with what a
/// version-1 primary says (an unknown version refused, as the crate's older releases do).
fn v1_primary(f: &Fixture, connections: usize) -> (std::fs::File, thread::JoinHandle<Vec<String>>) {
    let lock = hold_lock(&f.lock());
    let mut server = LocalServer::new();
    server.listen(&f.sock_name()).unwrap();
    let t = thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..connections {
            let conn = server.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            let request = json_line(&line);
            let reply = if request["v"] == 1 {
                r#"{"v":1,"ok":true,"exit_code":0,"stdout":"v1 served\n","stderr":"","data":null}"#
            } else {
                r#"{"v":1,"ok":false,"exit_code":1,"error":"unsupported protocol version 2 (this side speaks 1)"}"#
            };
            (&conn).write_all(format!("{reply}\n").as_bytes()).unwrap();
            seen.push(line.trim_end().to_owned());
        }
        seen
    });
    (lock, t)
}

#[test]
fn a_version_2_launch_falls_back_to_a_version_1_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-v1primary");
    let (_lock, primary) = v1_primary(&f, 2);
    let out = output(&mut f.cmd("send", ["--", "old"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(forwarded(&text(&out.stdout))["stdout"], "v1 served\n");
    let seen = primary.join().unwrap();
    assert_eq!(json_line(&seen[0])["v"], 2, "{seen:?}");
    assert_eq!(json_line(&seen[1])["v"], 1, "{seen:?}");
}

#[test]
fn a_version_2_only_launch_gets_a_clear_error_from_a_version_1_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-v1wait");
    let (_lock, primary) = v1_primary(&f, 1);
    let out = output(&mut f.cmd("send", ["--wait", "--", "old"]));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("speaks protocol version 1 only"), "{err}");
    assert_eq!(primary.join().unwrap().len(), 1, "no second attempt");
}

/// Writes stdin frames of 32 KiB to `conn` until a write makes no progress for 0.5 s, or
/// `most` bytes went: how many bytes of stdin it took.
fn push_stdin(conn: &LocalSocket, most: usize) -> usize {
    let chunk = noise(32 * 1024, 7);
    let frame = {
        use std::fmt::Write as _;
        // Standard base64 of the chunk, as the protocol carries it.
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::from("{\"v\":2,\"stdin\":\"");
        for c in chunk.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                let _ = if i <= c.len() {
                    s.write_char(B64[(n >> (18 - 6 * i)) as usize & 63] as char)
                } else {
                    s.write_char('=')
                };
            }
        }
        s.push_str("\"}\n");
        s.into_bytes()
    };
    conn.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut taken = 0;
    while taken < most {
        match (&*conn).write(&frame) {
            Ok(n) => taken += n,
            Err(_) => break,
        }
    }
    taken
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Connects, sends a version-2 request for `args` that forwards stdin, and reads `taken`.
fn v2_launch(f: &Fixture, args: &[&str]) -> LocalSocket {
    let conn = LocalSocket::connect(&f.sock_name()).unwrap();
    let argv: Vec<Value> = std::iter::once("raw").chain(args.iter().copied()).map(Value::from).collect();
    let line = serde_json::json!({"v": 2, "argv": argv, "stdin": true}).to_string();
    (&conn).write_all(format!("{line}\n").as_bytes()).unwrap();
    conn.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
    let mut taken = [0u8; 21];
    (&conn).read_exact(&mut taken).unwrap();
    assert_eq!(&taken, b"{\"v\":2,\"taken\":true}\n");
    conn
}

#[test]
fn a_launch_that_never_reads_its_output_keeps_the_primary_bounded() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let f = Fixture::new("rcl-noread");
    let p = f.primary(&[]);
    let before = rss_kib(p.id());
    let conn = v2_launch(&f, &["--cat"]);
    assert_eq!(json_line(&p.line())["stdin"], true);
    // `--cat` echoes what it reads; nobody reads the echo. Without a bound the primary
    // would take all 64 MiB.
    let taken = push_stdin(&conn, 64 << 20);
    let grown = rss_kib(p.id()).saturating_sub(before);
    eprintln!("output never read: the primary took {taken} bytes of stdin, grew by {grown} KiB");
    assert!(taken < 8 << 20, "the primary took {taken} bytes of stdin it could not echo");
    assert!(grown < 16 << 10, "the primary grew by {grown} KiB");
    drop(conn);
    f.send_ok(&p, "still-serving");
}

#[test]
fn a_primary_that_never_reads_stdin_stays_bounded() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let f = Fixture::new("rcl-nostdin");
    let p = f.primary(&[]);
    let before = rss_kib(p.id());
    let conn = v2_launch(&f, &["--sleep-ms", "600000"]);
    assert_eq!(json_line(&p.line())["stdin"], true);
    let taken = push_stdin(&conn, 64 << 20);
    let grown = rss_kib(p.id()).saturating_sub(before);
    eprintln!("stdin never read: the primary took {taken} bytes of stdin, grew by {grown} KiB");
    assert!(taken < 4 << 20, "the primary took {taken} bytes of stdin it never read");
    assert!(grown < 16 << 10, "the primary grew by {grown} KiB");
    drop(conn);
    f.send_ok(&p, "still-serving");
}

#[test]
fn launches_in_the_hand_over_window_wait_for_the_new_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-window");
    let app = || SingleInstance::new(&f.app).unwrap().directory(f.dir.path());
    let Start::Primary(old) = app().start().unwrap() else { panic!("not the primary") };
    // The replacing launch, by hand, is this process: it is told to take over, and the old
    // primary releases before it does.
    let replacer = LocalSocket::connect(&f.sock_name()).unwrap();
    (&replacer).write_all(b"{\"v\":2,\"argv\":[\"new\"],\"replace\":true}\n").unwrap();
    let request = old.recv().unwrap();
    assert!(request.is_replace());
    assert!(request.accept_replace().unwrap().is_delivered());
    old.release();
    let mut said = String::new();
    replacer.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
    BufReader::new(&replacer).read_to_string(&mut said).unwrap();
    assert!(said.starts_with("{\"v\":2,\"taken\":true}\n{\"v\":2,\"handover\":true}\n{"), "{said:?}");
    // No primary now, and the lock is free: a launch waits for the one handed over to,
    // rather than report none.
    let mut launch =
        f.cmd("send", ["--timeout", "20", "--", "in-the-window"]).stdout(Stdio::null()).spawn().unwrap();
    let looked = Instant::now();
    while looked.elapsed() < Duration::from_millis(500) {
        let status = launch.try_wait().unwrap();
        assert!(status.is_none(), "the launch ended in the window: {status:?}");
        thread::sleep(Duration::from_millis(5));
    }
    let Start::Primary(new) = app().start().unwrap() else { panic!("the new primary") };
    let request = new.recv().unwrap();
    assert_eq!(request.args(), ["in-the-window"]);
    request.reply(Reply::ok()).unwrap();
    assert!(launch.wait().unwrap().success());
}

/// A launch in the hand-over window whose new primary never comes fails saying so, naming
/// the process handed over to: no primary holds the lock, so "did not answer" would be false.
#[test]
fn a_launch_in_a_stalled_hand_over_window_names_the_process_handed_to() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-stalled");
    let app = || SingleInstance::new(&f.app).unwrap().directory(f.dir.path());
    let Start::Primary(old) = app().start().unwrap() else { panic!("not the primary") };
    // The replacing launch, by hand, is this process, which never takes the lock.
    let replacer = LocalSocket::connect(&f.sock_name()).unwrap();
    (&replacer).write_all(b"{\"v\":2,\"argv\":[\"new\"],\"replace\":true}\n").unwrap();
    let request = old.recv().unwrap();
    assert!(request.accept_replace().unwrap().is_delivered());
    old.release();
    assert!(std::fs::read_to_string(f.lock()).unwrap().contains("handover"));
    let out = output(&mut f.cmd("send", ["--timeout", "0.5", "--", "in-the-window"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "solo: the primary instance was handing over to process {}, which did not start serving \
             within 0.5s\n",
            std::process::id()
        )
    );
    drop(replacer);
}

/// A replacer whose replace was accepted by a primary that then never releases fails
/// saying so, not that the primary "did not answer" (it answered: it accepted).
#[test]
fn a_replace_accepted_but_never_released_says_so() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-unreleased");
    let app = || SingleInstance::new(&f.app).unwrap().directory(f.dir.path());
    let Start::Primary(old) = app().start().unwrap() else { panic!("not the primary") };
    let mut run = f.cmd("run", ["--timeout", "0.5", "--replace"]);
    let replacer = thread::spawn(move || output(&mut run));
    let request = old.recv().unwrap();
    assert!(request.is_replace());
    assert!(request.accept_replace().unwrap().is_delivered());
    // This primary holds on.
    let out = replacer.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        "solo: the primary instance accepted the replace but did not release within 0.5s\n"
    );
    drop(old);
}

#[test]
fn editor_wait_serves_as_git_editor_until_the_file_is_closed() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-git");
    let repo = f.dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let cmd = |program: &std::path::Path, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("XDG_RUNTIME_DIR", f.dir.path())
            .env("HOME", f.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("XDG_ACTIVATION_TOKEN")
            .env_remove("DESKTOP_STARTUP_ID")
            .current_dir(&repo);
        cmd
    };
    let git = std::path::Path::new("git");
    if cmd(git, &["init", "-q"]).status().map(|s| !s.success()).unwrap_or(true) {
        eprintln!("skipped: no git");
        return;
    }
    let editor = util::example("editor");
    let primary = Proc::spawn(&mut cmd(&editor, &[]));
    assert!(primary.line().starts_with("editor: running as the primary instance"));
    primary.line();
    let mut commit =
        cmd(git, &["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "--allow-empty"]);
    commit.env("GIT_EDITOR", format!("{} --wait", editor.display()));
    let waiting = Proc::spawn_with_stdin(&mut commit);
    // The running editor's answer streams to git's terminal while git waits.
    let said = waiting.line();
    assert!(said.contains("waiting until closed"), "{said}");
    let opened = primary.line();
    let file = opened.strip_prefix("editor: opened ").and_then(|l| l.split(" (").next()).unwrap().to_owned();
    assert!(file.ends_with("COMMIT_EDITMSG"), "{opened}");
    std::fs::write(&file, "written in the running editor\n").unwrap();
    let out = output(&mut cmd(&editor, &["--close", &file]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(waiting.line(), format!("editor: closed {file}"));
    let (status, err) = waiting.finish_with_stderr();
    assert!(status.success(), "git: {err}");
    let log = output(&mut cmd(git, &["log", "-1", "--format=%s"]));
    assert_eq!(text(&log.stdout), "written in the running editor\n");
    assert!(output(&mut cmd(&editor, &["--quit"])).status.success());
}

#[test]
fn stdin_sent_with_the_request_line_is_the_start_of_stdin() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-early");
    let p = f.primary(&[]);
    let conn = LocalSocket::connect(&f.sock_name()).unwrap();
    // One write: the request line, then stdin frames before `taken` ("early", base64).
    (&conn)
        .write_all(
            b"{\"v\":2,\"argv\":[\"raw\",\"--cat\"],\"stdin\":true}\n{\"v\":2,\"stdin\":\"ZWFybHk=\"}\n{\"v\":2,\"eof\":true}\n",
        )
        .unwrap();
    conn.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
    let mut all = String::new();
    BufReader::new(&conn).read_to_string(&mut all).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines[0], r#"{"v":2,"taken":true}"#, "{all:?}");
    assert_eq!(lines[1], r#"{"v":2,"stdout":"ZWFybHk="}"#, "{all:?}");
    assert_eq!(json_line(lines[2])["ok"], true, "{all:?}");
    assert_eq!(json_line(&p.line())["stdin"], true);
}

#[test]
fn wait_for_exit_becomes_primary_once_the_old_one_exits_without_forwarding() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-update");
    let old = f.primary(&[]);
    let update = SingleInstance::new(&f.app).unwrap().directory(f.dir.path()).argv(["updated"]);
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let r = update.wait_for_exit(Some(Duration::from_secs(30)));
        let _ = tx.send(());
        r
    });
    // It waits while the old primary runs (it would have been served at once).
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "it did not wait");
    signal(old.id(), libc::SIGTERM);
    let (status, printed) = old.finish();
    assert!(status.success());
    assert!(printed.is_empty(), "the old primary was sent a request: {printed:?}");
    let primary = waiter.join().unwrap().expect("the updater became the primary");
    assert_eq!(primary.socket_path(), f.sock());
    // It serves while this thread waits in recv.
    let mut send = f.cmd("send", ["--", "to-the-update"]);
    let launch = thread::spawn(move || output(&mut send));
    let request = primary.recv().unwrap();
    assert_eq!(request.args(), ["to-the-update"]);
    request.reply(Reply::ok()).unwrap();
    let out = launch.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// At its timeout, `wait_for_exit` says the primary still runs, not that it did not
/// answer: it asks nothing. The primary was sent nothing.
#[test]
fn wait_for_exit_times_out_saying_the_primary_still_runs() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-stillruns");
    let old = f.primary(&[]);
    let update = SingleInstance::new(&f.app).unwrap().directory(f.dir.path()).argv(["updated"]);
    let e = update.wait_for_exit(Some(Duration::from_millis(300))).expect_err("the primary still runs");
    assert!(matches!(e, solo_instance::Error::StillRunning(_)), "{e:?}");
    assert_eq!(e.to_string(), "the primary instance neither exited nor released within 0.3s");
    assert_eq!(e.io_kind(), std::io::ErrorKind::TimedOut);
    signal(old.id(), libc::SIGTERM);
    let (status, printed) = old.finish();
    assert!(status.success());
    assert!(printed.is_empty(), "the primary was sent a request: {printed:?}");
}

#[test]
fn hostile_stdin_frames_end_stdin_with_an_error_and_the_primary_serves_on() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-hostile");
    let p = f.primary(&[]);
    // A frame line of 70 KiB, whole: its newline comes within the read that passes 64 KiB.
    let long = format!("{{\"v\":2,\"stdin\":\"{}\"}}\n", "A".repeat(70 << 10));
    let cases: [(&[u8], &str); 4] = [
        (b"{\"v\":2,\"stdin\":\"!!!!\"}\n", "base64"),
        (b"{\"v\":2,\"stdout\":\"QQ==\"}\n", "not a stdin frame"),
        (&[b'x'; 100 << 10], "a stdin frame over 65536 bytes"),
        (long.as_bytes(), "a stdin frame over 65536 bytes"),
    ];
    for (bytes, why) in cases {
        let conn = v2_launch(&f, &["--cat"]);
        assert_eq!(json_line(&p.line())["stdin"], true);
        // Written from a thread: the primary may stop reading once it gave up.
        let conn = std::sync::Arc::new(conn);
        let writer = {
            let (conn, bytes) = (std::sync::Arc::clone(&conn), bytes.to_vec());
            thread::spawn(move || drop((&*conn).write_all(&bytes)))
        };
        let mut all = String::new();
        let _ = BufReader::new(&*conn).read_to_string(&mut all);
        let reply = json_line(all.lines().last().unwrap_or_default());
        assert_eq!(reply["ok"], false, "{all:?}");
        assert!(reply["error"].as_str().unwrap().contains(why), "{reply}");
        drop(conn);
        writer.join().unwrap();
    }
    f.send_ok(&p, "still-serving");
}

#[test]
fn output_to_a_launch_that_does_not_read_never_blocks_the_apps_thread() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-nonblock");
    let app = SingleInstance::new(&f.app).unwrap().directory(f.dir.path());
    let Start::Primary(primary) = app.start().unwrap() else { panic!("not the primary") };
    // A launch of version 2 by hand, that never reads past its request.
    let conn = LocalSocket::connect(&f.sock_name()).unwrap();
    (&conn).write_all(b"{\"v\":2,\"argv\":[\"raw\"]}\n").unwrap();
    let request = primary.recv().unwrap();
    let mut out = request.stdout();
    let chunk = noise(64 << 10, 3);
    let mut taken = 0usize;
    let refused = loop {
        match out.write(&chunk) {
            Ok(n) => taken += n,
            Err(e) => break e,
        }
        assert!(taken < 64 << 20, "the primary took {taken} bytes of output for a launch that does not read");
    };
    assert_eq!(refused.kind(), std::io::ErrorKind::WouldBlock);
    assert!(taken >= solo_instance::OUTPUT_BUFFER, "only {taken} bytes before WouldBlock");
    // The launch goes: the reply finds it gone, and output is dropped from then on.
    drop(conn);
    assert!(!request.reply(Reply::ok()).unwrap().is_delivered());
    assert_eq!(out.write(&chunk).unwrap(), chunk.len());
}

#[test]
fn reply_timeout_bounds_the_wait_once_taken() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-replyto");
    let p = f.primary(&[]);
    let launch = |reply: Duration, work: &str| {
        SingleInstance::new(&f.app)
            .unwrap()
            .directory(f.dir.path())
            .timeout(Duration::from_millis(200))
            .reply_timeout(Some(reply))
            .argv(["launch", "--sleep-ms", work])
            .send()
    };
    // Taken within 0.2 s, answered within the 5 s after that.
    assert!(launch(Duration::from_secs(5), "600").unwrap().is_ok());
    p.line();
    // Answered after 3 s: past the 0.3 s it waits once taken.
    match launch(Duration::from_millis(300), "3000") {
        Err(solo_instance::Error::NoReply(t)) => assert_eq!(t, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
    assert_eq!(json_line(&p.line())["wait"], true);
}

/// A primary by hand, for a launch of the `solo` example: it holds the lock, listens, and
/// gives the first launch's connection and request line to `script`.
fn hand_primary(
    f: &Fixture,
    script: impl FnOnce(&LocalSocket, String) + Send + 'static,
) -> (std::fs::File, thread::JoinHandle<()>) {
    let lock = hold_lock(&f.lock());
    let mut server = LocalServer::new();
    server.listen(&f.sock_name()).unwrap();
    let t = thread::spawn(move || {
        let conn = server.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).unwrap();
        script(&conn, line);
    });
    (lock, t)
}

/// A chunk is a JSON string, escapes included (PHP's `json_encode` writes `/` as `\/`, and
/// base64 has `/`): both ends decode it, stdin at the primary and output at the launch.
#[test]
fn chunks_with_json_escapes_are_decoded_at_both_ends() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-escapes");
    let p = f.primary(&[]);
    let conn = LocalSocket::connect(&f.sock_name()).unwrap();
    // "P\/8K" is "P/8K": the bytes 3f ff 0a.
    (&conn)
        .write_all(b"{\"v\":2,\"argv\":[\"raw\",\"--cat\"],\"stdin\":true}\n{\"v\":2,\"stdin\":\"P\\/8K\"}\n{\"v\":2,\"eof\":true}\n")
        .unwrap();
    conn.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
    let mut all = String::new();
    BufReader::new(&conn).read_to_string(&mut all).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.get(1).copied(), Some(r#"{"v":2,"stdout":"P/8K"}"#), "{all:?}");
    assert_eq!(json_line(lines[2])["ok"], true, "{all:?}");
    assert_eq!(json_line(&p.line())["stdin"], true);
    drop(p);

    let f = Fixture::new("rcl-escapes-out");
    let (_lock, primary) = hand_primary(&f, |conn, _| {
        let said = b"{\"v\":2,\"stdout\":\"P\\/8K\"}\n{\"v\":2,\"ok\":true,\"exit_code\":0}\n";
        let _ = (&*conn).write_all(said);
    });
    let out = output(&mut f.cmd("send", ["--", "escaped"]));
    primary.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout.get(..3), Some(&[0x3f, 0xff, 10][..]), "{}", text(&out.stdout));
    assert_eq!(forwarded(&text(&out.stdout[3..]))["ok"], true);
}

/// A frame line over 64 KiB ends the stream with an error at the launch too, as the README
/// says (the reply line alone may be longer, up to the message size limit).
#[test]
fn an_output_frame_over_64_kib_ends_the_launch_with_an_error() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-bigframe");
    let (_lock, primary) = hand_primary(&f, |conn, _| {
        // 96 KiB of base64 ("AAAA" is three zero bytes), then a reply the launch must not
        // take.
        let mut said = b"{\"v\":2,\"stdout\":\"".to_vec();
        said.extend(std::iter::repeat_n(b'A', 96 << 10));
        said.extend_from_slice(b"\"}\n{\"v\":2,\"ok\":true,\"exit_code\":0}\n");
        let _ = (&*conn).write_all(&said);
    });
    let out = output(&mut f.cmd("send", ["--", "big"]));
    primary.join().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("a frame line over 65536 bytes"), "{err}");
    assert!(out.stdout.is_empty(), "{} bytes written", out.stdout.len());
}

/// Output written a byte at a time to stdout and stderr in turn makes a chunk per byte: the
/// bound holds for them too (each chunk costs some 64 bytes of the primary's memory: a
/// million of them, 64 MiB for 1 MiB of output).
#[test]
fn one_byte_writes_to_stdout_and_stderr_in_turn_keep_the_output_bound() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-tiny");
    let app = SingleInstance::new(&f.app).unwrap().directory(f.dir.path());
    let Start::Primary(primary) = app.start().unwrap() else { panic!("not the primary") };
    let conn = LocalSocket::connect(&f.sock_name()).unwrap();
    (&conn).write_all(b"{\"v\":2,\"argv\":[\"raw\"]}\n").unwrap();
    let request = primary.recv().unwrap();
    let (mut out, mut err) = (request.stdout(), request.stderr());
    let before = rss_kib(std::process::id());
    let mut taken = 0usize;
    let refused = loop {
        let w = if taken % 2 == 0 { &mut out } else { &mut err };
        match w.write(b"x") {
            Ok(n) => taken += n,
            Err(e) => break e,
        }
    };
    let grown = rss_kib(std::process::id()).saturating_sub(before);
    eprintln!("one-byte writes in turn: {taken} taken, the process grew by {grown} KiB");
    assert_eq!(refused.kind(), std::io::ErrorKind::WouldBlock);
    assert!(grown < 16 << 10, "{taken} bytes of output held grew the primary by {grown} KiB");
    drop(conn);
    assert!(!request.reply(Reply::ok()).unwrap().is_delivered());
}

/// A launch that takes its output a drop at a time (1 KiB every 50 ms: never silent for
/// 2 s) cannot hold the app's thread in `reply` for the hours a million one-byte chunks
/// would take at that pace: the bound on chunks (4096) and the reply's own (10 s in all)
/// each end it. (Where the OS lets a writer on after a few bytes were read, as macOS's
/// 8 KiB socket buffers do, 4096 chunks at a frame per 2 s would still be two hours: the
/// second bound is the one for every platform.)
#[test]
fn a_launch_that_takes_its_output_drop_by_drop_cannot_hold_the_reply() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-drip");
    let app = SingleInstance::new(&f.app).unwrap().directory(f.dir.path());
    let Start::Primary(primary) = app.start().unwrap() else { panic!("not the primary") };
    let conn = std::sync::Arc::new(LocalSocket::connect(&f.sock_name()).unwrap());
    (&*conn).write_all(b"{\"v\":2,\"argv\":[\"raw\"]}\n").unwrap();
    let request = primary.recv().unwrap();
    // A byte to stdout and stderr in turn: a frame each, as many as the primary takes.
    let (mut out, mut err) = (request.stdout(), request.stderr());
    let mut written = 0usize;
    loop {
        let w = if written % 2 == 0 { &mut out } else { &mut err };
        match w.write(b"x") {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    drop((out, err));
    let (done_tx, done) = mpsc::channel::<()>();
    let dripper = {
        let conn = std::sync::Arc::clone(&conn);
        thread::spawn(move || {
            let mut drop_ = [0u8; 1024];
            let mut took = 0usize;
            while let Err(mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(Duration::from_millis(50)) {
                match (&*conn).read(&mut drop_) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => took += n,
                }
            }
            took
        })
    };
    let delivery = request.reply(Reply::ok()).unwrap();
    drop(done_tx);
    let took = dripper.join().unwrap();
    eprintln!("{written} one-byte chunks; the launch took {took} bytes; the reply: {delivery:?}");
}

/// Copies of every socket of the process `pid`, taken into this one (`pidfd_getfd`, Linux
/// 5.6): what a child it forked without exec would hold. `None` where the kernel or its
/// policy does not allow it.
#[cfg(target_os = "linux")]
fn copy_sockets(pid: u32) -> Option<Vec<std::os::fd::OwnedFd>> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor, or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if pidfd < 0 {
        return None;
    }
    // SAFETY: pidfd_open returned a descriptor this process owns from now on.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(pidfd as i32) };
    let mut copies = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()? {
        let entry = entry.ok()?;
        let is_socket =
            std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if !is_socket {
            continue;
        }
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_getfd takes a pidfd, a descriptor number in that process and flags,
        // and returns a new descriptor of this process, or -1.
        let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        if copy < 0 {
            return None;
        }
        // SAFETY: a new descriptor this process owns from now on.
        copies.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(copy as i32) });
    }
    Some(copies)
}

/// A primary that dies ends a waiting launch's wait even when its connection lives on in
/// another process (a child it forked without exec keeps every descriptor), and before
/// its parent reaps it: the launch looks whether the primary's process still runs, and a
/// zombie does not.
#[test]
#[cfg(target_os = "linux")]
fn a_waiting_launch_ends_when_the_primary_dies_though_its_connection_lives_on() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let f = Fixture::new("rcl-heir");
    let p = f.primary(&[]);
    let launch = Proc::spawn_with_stdin(
        &mut f.cmd("send", ["--timeout", "0.3", "--wait", "--", "--sleep-ms", "600000"]),
    );
    assert_eq!(json_line(&p.line())["wait"], true);
    let Some(heir) = copy_sockets(p.id()) else {
        eprintln!("skipped: pidfd_getfd is not allowed here");
        return;
    };
    signal(p.id(), libc::SIGKILL);
    // Not reaped until the launch ended: a zombie has not run since it died.
    let (status, err) = launch.finish_with_stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("went away before it answered"), "{err}");
    drop(heir);
    let _ = p.finish();
}

/// A replacer that gave up before the primary accepted (the demo answers a replace only once
/// its work for earlier launches is done) takes nothing over: the primary serves on, rather
/// than leave no primary at all.
#[test]
fn a_replace_accepted_after_the_replacer_gave_up_leaves_the_primary_serving() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-gaveup");
    let p = f.primary(&[]);
    // Work that lasts until this test closes the launch's stdin.
    let mut busy = Proc::spawn_with_stdin(&mut f.cmd("send", ["--wait", "--stdin", "--", "--cat"]));
    assert_eq!(json_line(&p.line())["stdin"], true);
    let out = output(&mut f.cmd("run", ["--timeout", "0.5", "--replace"]));
    assert_eq!(out.status.code(), Some(1), "{} {}", text(&out.stdout), text(&out.stderr));
    busy.close_stdin();
    let (status, err) = busy.finish_with_stderr();
    assert!(status.success(), "{err}");
    f.send_ok(&p, "still-primary");
    // Nor does its release send later launches to wait for the replacer that left (the lock
    // file names a process handed over to only for an accepted replace the launch got).
    signal(p.id(), libc::SIGTERM);
    let (status, printed) = p.finish();
    assert!(status.success(), "{printed:?}");
    let record = std::fs::read_to_string(f.lock()).unwrap();
    assert!(!record.contains("handover"), "the lock file says {record:?}");
}

/// A launch that showed output of its request and then lost the primary (here cut off: its
/// own stdout stalled, so it took nothing for longer than the primary waits) must not send
/// the request again: the app ran it already, and would run it, and print its output, twice.
#[test]
fn a_launch_cut_off_after_output_does_not_send_its_request_again() {
    let _w = Watchdog::new(Duration::from_secs(90));
    let f = Fixture::new("rcl-again");
    let app = SingleInstance::new(&f.app).unwrap().directory(f.dir.path());
    let Start::Primary(primary) = app.start().unwrap() else { panic!("not the primary") };
    // A plain launch (no --wait, no --stdin) with a long timeout; its stdout is read only
    // once the app has replied.
    let mut launch = f
        .cmd("send", ["--timeout", "60", "--", "dump"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let request = primary.recv().unwrap();
    assert_eq!(request.args(), ["dump"]);
    // Far more than the launch's stdout pipe and socket hold (as much as the primary
    // queues): the launch stops reading, and the reply cuts it off.
    let mut out = request.stdout();
    let chunk = noise(64 << 10, 5);
    while out.write(&chunk).is_ok() {}
    drop(out);
    assert!(!request.reply(Reply::ok()).unwrap().is_delivered());
    // Now the launch's stdout drains; the launch ends. Any request it sends meanwhile is
    // answered, so that it ends.
    let mut stdout = launch.stdout.take().unwrap();
    let drained = thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink);
        sink.len()
    });
    let (exited_tx, exited) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let status = launch.wait().unwrap();
        let mut err = String::new();
        let _ = launch.stderr.take().unwrap().read_to_string(&mut err);
        let _ = exited_tx.send(());
        (status, err)
    });
    let mut again = 0;
    while let Err(mpsc::RecvTimeoutError::Timeout) = exited.recv_timeout(Duration::from_millis(20)) {
        if let Ok(r) = primary.try_recv() {
            again += 1;
            r.reply(Reply::ok()).unwrap();
        }
    }
    let (status, err) = waiter.join().unwrap();
    let shown = drained.join().unwrap();
    assert_eq!(again, 0, "the launch sent its request {again} more time(s), after {shown} bytes of output");
    assert!(!status.success(), "{status:?} {err}");
    assert!(err.contains("went away before it answered"), "{err}");
}

/// A replacer shown output by the primary it asked, which then releases without answering,
/// starts over (unlike a plain launch that was shown output): it finds no primary, and
/// becomes the primary.
#[test]
fn a_replacer_shown_output_starts_over_when_the_primary_releases() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("rcl-replout");
    let app = SingleInstance::new(&f.app).unwrap().directory(f.dir.path());
    let Start::Primary(primary) = app.start().unwrap() else { panic!("not the primary") };
    let replacer = Proc::spawn(&mut f.cmd("run", ["--timeout", "20", "--replace"]));
    let request = primary.recv().unwrap();
    assert!(request.is_replace());
    let mut out = request.stdout();
    out.write_all(b"handing over soon\n").unwrap();
    // The replacer shows it: the output reached it before the release.
    assert_eq!(replacer.line(), "handing over soon");
    primary.release();
    assert_eq!(replacer.line(), format!("PRIMARY {}", f.sock().display()), "{}", replacer.stderr());
    drop((out, request));
}
