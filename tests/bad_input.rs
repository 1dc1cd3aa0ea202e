//! Bad input never hurts the primary (guarantee 5): malformed, foreign-version, oversized
//! or unrepresentable requests get a clear error reply; silent, slow and flooding clients
//! meet a deadline and do not starve a normal launch; a request's `data` is what decoding
//! took; requests arriving in pieces, and deadlines passed while the app was away, are
//! served. `tests/abuse.rs` has the attacks of other users and of bad luck.
//!
//! Every test has a Watchdog; readiness is a line read or a channel, never a sleep.
#![cfg(unix)]

mod util;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use solo_instance::{ConnectOptions, LocalSocket, Reply};
use util::solo::{
    builder, forwarded, json_line, lock_is_free, output, primary_of, private_dir, read_reply, signal, text,
    Fixture,
};
use util::{Proc, Watchdog};

fn hostile_primary(tag: &str, timeout: &str) -> (Fixture, Proc) {
    let f = Fixture::new(tag);
    let p = f.primary(&["--timeout", timeout]);
    (f, p)
}

/// One raw exchange: connect, write `request`, read the reply line (decoded).
fn raw_exchange(f: &Fixture, request: &[u8]) -> Value {
    let conn = LocalSocket::connect(&f.sock_name()).unwrap();
    (&conn).write_all(request).unwrap();
    let reply = read_reply(&conn, Duration::from_secs(20)).unwrap();
    json_line(&reply.unwrap_or_else(|| panic!("no reply to {:?}", text(request))))
}

fn assert_error_reply(reply: &Value, needle: &str) {
    assert_eq!(reply["v"], 1, "{reply}");
    assert_eq!(reply["ok"], false, "{reply}");
    let error = reply["error"].as_str().unwrap_or_else(|| panic!("no error text: {reply}"));
    assert!(error.contains(needle), "error {error:?} does not mention {needle:?}");
}

/// Guarantee 5: malformed requests get an error reply naming the problem; the primary
/// prints nothing for them and serves the next launch.
#[test]
fn hostile_malformed_json_gets_an_error_reply() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let (f, p) = hostile_primary("malformed", "2");
    for (request, needle) in [
        (&b"this is not json\n"[..], "malformed JSON"),
        (b"{\"v\":1,\"argv\":[\"x\"\n", "malformed JSON"),
        (b"\xff\xfe\n", "malformed JSON"),
        (b"[1,2]\n", "must be a JSON object"),
        (b"{\"v\":1}\n", "argv"),
        (b"{\"v\":1,\"argv\":[{\"bytes\":[300]}]}\n", "0-255"),
    ] {
        assert_error_reply(&raw_exchange(&f, request), needle);
    }
    // 200-deep nesting: serde_json recurses 128 levels on a reader thread before it gives
    // up; a 128 KiB stack aborted the (debug) primary here (found by fuzz/).
    let deep = format!("{{\"v\":1,\"argv\":[],\"data\":{}{}}}\n", "[".repeat(200), "]".repeat(200));
    assert_error_reply(&raw_exchange(&f, deep.as_bytes()), "recursion limit");
    f.send_ok(&p, "after-malformed");
}

/// Guarantee 5: an unknown protocol version gets an error naming the version.
#[test]
fn hostile_unknown_version_gets_an_error_reply() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let (f, p) = hostile_primary("version", "2");
    let reply = raw_exchange(&f, b"{\"v\":99,\"argv\":[\"x\",\"y\"],\"cwd\":\"/\"}\n");
    assert_error_reply(&reply, "version");
    assert!(reply["error"].as_str().unwrap().contains("99"), "{reply}");
    let reply = raw_exchange(&f, b"{\"argv\":[\"x\"]}\n");
    assert_error_reply(&reply, "version");
    f.send_ok(&p, "after-version");
}

/// Guarantee 5: `data` that a `serde_json::Value` cannot hold (a number beyond f64, a
/// 300,000-digit integer, lone surrogates in a string or a key) gets an `ok:false` reply
/// naming `data`, instead of an `ok:true` and a `null` for the app; the primary prints
/// nothing for them (its next line is the next good launch's). The large one goes through
/// the decoder thread, the others through the fast path.
#[test]
fn hostile_data_a_value_cannot_hold_gets_an_error_reply() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let (f, p) = hostile_primary("unholdable", "2");
    let huge = format!("1{}", "0".repeat(300_000));
    for (data, needle) in [
        ("1e400", "number out of range"),
        (&huge[..], "number out of range"),
        ("\"\\udfff\"", "lone surrogate"),
        ("{\"\\ud800\":1}", "lone surrogate"),
    ] {
        let line = format!("{{\"v\":1,\"argv\":[\"x\"],\"data\":{data}}}\n");
        let reply = raw_exchange(&f, line.as_bytes());
        assert_error_reply(&reply, needle);
        assert_error_reply(&reply, "\"data\"");
    }
    f.send_ok(&p, "after-unholdable");
}

/// What the primary accepts, `Request::data` gives exactly: a number just below f64's
/// limit, one that underflows to 0, a surrogate pair, a 300,000-digit fraction; and what
/// it refuses reaches the app not at all (the raw client gets `ok:false`).
#[test]
fn lib_request_data_is_exactly_what_decode_accepted() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("data-exact");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let name = primary.socket_path().to_string_lossy().into_owned();
    let tiny = format!("0.{}1", "0".repeat(300_000));
    let good = format!("[1.7976931348623157e308,1e-400,\"\\ud83d\\ude00\",{{\"\\u00e9\":{tiny}}}]");
    let lines = [
        "{\"v\":1,\"argv\":[\"bad\"],\"data\":[1,-1e400]}".to_owned(),
        "{\"v\":1,\"argv\":[\"bad\"],\"data\":{\"k\":\"\\udc00\"}}".to_owned(),
        format!("{{\"v\":1,\"argv\":[\"good\"],\"data\":{good}}}"),
    ];
    let client = thread::spawn(move || {
        lines
            .iter()
            .map(|line| {
                let conn = LocalSocket::connect(&name).unwrap();
                (&conn).write_all(format!("{line}\n").as_bytes()).unwrap();
                json_line(&read_reply(&conn, Duration::from_secs(20)).unwrap().expect("a reply"))
            })
            .collect::<Vec<_>>()
    });
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("the good request");
    assert_eq!(request.argv()[0], "good", "a refused request reached the app");
    let want: Value = serde_json::from_str(&good).unwrap();
    assert_eq!(request.data(), &want);
    assert_eq!(request.data()[3]["é"].as_f64(), Some(0.0));
    request.reply(Reply::ok()).unwrap();
    let replies = client.join().unwrap();
    assert_error_reply(&replies[0], "number out of range");
    assert_error_reply(&replies[1], "lone surrogate");
    assert_eq!(replies[2]["ok"], true, "{}", replies[2]);
}

/// Guarantee 5: a 100 MiB line is cut off at the limit: "too large" reply or a closed
/// connection, within seconds, and the primary goes on serving.
#[test]
fn hostile_oversized_message_is_refused() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let (f, p) = hostile_primary("oversized", "2");
    let conn = LocalSocket::connect(&f.sock_name()).unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let reply = thread::scope(|s| {
        s.spawn(|| {
            let chunk = vec![b'a'; 1 << 20];
            for _ in 0..100 {
                // EPIPE / reset once the primary gives up on us: expected.
                if (&conn).write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = (&conn).write_all(b"\n");
        });
        read_reply(&conn, Duration::from_secs(20))
    });
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    match reply {
        Ok(Some(line)) => assert_error_reply(&json_line(&line), "too large"),
        Ok(None) => {} // closed without a reply: allowed
        Err(e) => panic!("reading the reply: {e}"),
    }
    f.send_ok(&p, "after-oversized");
}

/// Guarantee 5: a client that connects and says nothing does not hold up others: a normal
/// launch is served meanwhile (before the silent one's deadline passes), and the silent
/// one then gets an error reply.
#[test]
fn hostile_silent_client_does_not_block_others() {
    let _w = Watchdog::new(Duration::from_secs(60));
    // The primary reads a request for at most 2 s, whatever its own timeout.
    let (f, p) = hostile_primary("silent", "5");
    let connected = Instant::now();
    let silent = LocalSocket::connect(&f.sock_name()).unwrap();
    // The silent client's reply is read (and timed) on its own thread.
    let (tx, silent_reply) = mpsc::channel();
    let reader = thread::spawn(move || {
        let reply = read_reply(&silent, Duration::from_secs(20));
        tx.send((reply.map_err(|e| e.to_string()), connected.elapsed())).unwrap();
        silent
    });
    f.send_ok(&p, "while-silent");
    let served = connected.elapsed();
    let (reply, replied) =
        silent_reply.recv_timeout(Duration::from_secs(30)).expect("no reply thread result");
    let reply = reply.unwrap().expect("an error reply, not a close");
    assert_error_reply(&json_line(&reply), "no request within 2.0s");
    assert!(
        served < replied,
        "the launch was served at {served:?}, only after the silent client was answered at {replied:?}"
    );
    assert!(replied >= Duration::from_millis(1900), "the silent client was cut off after {replied:?}");
    drop(reader.join().unwrap());
    f.send_ok(&p, "after-silent");
}

/// Guarantee 5: 200 connections opened at once and held (silent, half a request, garbage,
/// closed at once): a normal launch is still served, every hostile connection ends with
/// an error reply or a close, and the primary serves on.
#[test]
fn hostile_flood_does_not_starve_a_normal_launch() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let (f, p) = hostile_primary("flood", "2");
    let name = f.sock_name();
    // Opening all 200 takes a moment with readers working in parallel; a primary that
    // reads one connection at a time would need minutes (2 s per silent one).
    let deadline = Instant::now() + Duration::from_secs(40);
    let held: Vec<(usize, LocalSocket)> = thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let name = &name;
                s.spawn(move || {
                    let mut held = Vec::new();
                    for i in (t * 50)..(t * 50 + 50) {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let conn = ConnectOptions::new()
                            .timeout(Some(left))
                            .connect(name)
                            .unwrap_or_else(|e| panic!("flood connection {i} not taken within 40 s: {e}"));
                        match i % 4 {
                            0 => {}                                                  // silent
                            1 => (&conn).write_all(b"{\"v\":1,\"argv\":[").unwrap(), // half a request
                            2 => (&conn).write_all(b"garbage\n").unwrap(),           // malformed
                            _ => continue,                                           // closed at once
                        }
                        held.push((i, conn));
                    }
                    held
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(held.len(), 150);

    // All 200 opened, 150 still held: a normal launch gets through.
    let out = output(&mut f.cmd("send", ["--timeout", "60", "--", "during-flood"]));
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    assert_eq!(forwarded(&text(&out.stdout))["ok"], true);
    assert_eq!(json_line(&p.line())["argv"][1], "during-flood");

    for (i, conn) in &held {
        match read_reply(conn, Duration::from_secs(30)) {
            Ok(Some(line)) => {
                let needle = if i % 4 == 2 { "malformed JSON" } else { "no request within 2.0s" };
                assert_error_reply(&json_line(&line), needle);
            }
            Ok(None) => panic!("flood connection {i} closed without the error reply"),
            Err(e) => panic!("flood connection {i}: {e}"),
        }
    }
    drop(held);
    f.send_ok(&p, "after-flood");
}

/// Guarantee 5 and a clean exit: SIGTERM while 100 silent connections are held (readers
/// waiting on them with a 30 s deadline, the acceptor waiting for a free reader) still
/// ends the primary at once, socket removed and lock freed.
#[test]
fn hostile_sigterm_during_a_flood_exits_cleanly() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let (f, p) = hostile_primary("floodterm", "30");
    let held: Vec<LocalSocket> = (0..100)
        .map(|i| {
            ConnectOptions::new()
                .timeout(Some(Duration::from_secs(20)))
                .connect(&f.sock_name())
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    // (No launch is served meanwhile here: more silent clients than reader threads, each
    // with a 30 s deadline, delay others until the deadline; a bounded, same-user case.)
    let started = Instant::now();
    signal(p.id(), libc::SIGTERM);
    let (status, rest) = p.finish();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(took < Duration::from_secs(10), "exit took {took:?} (waited for the silent clients?)");
    assert!(!f.sock().exists(), "the socket file is left behind");
    assert!(lock_is_free(&f.lock()));
    drop(held);
}

/// Guarantee 5 from the launch's side: a request over the limit fails at once and says
/// why (it is not retried until the timeout, nor reported as "did not answer").
#[test]
fn an_oversized_launch_fails_at_once_and_says_why() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("bigsend");
    let p = f.primary(&[]);
    let start = Instant::now();
    let sent = solo_instance::SingleInstance::new(&f.app)
        .unwrap()
        .directory(f.dir.path())
        .argv(["x".to_owned(), "x".repeat(1536 * 1024)])
        .send();
    match sent {
        Err(solo_instance::Error::Protocol(why)) => {
            assert!(why.message().contains("message too large"), "{why}")
        }
        Err(other) => panic!("expected a protocol error, got {other}"),
        Ok(reply) => panic!("an oversized launch was answered: {}", reply.encode()),
    }
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    f.send_ok(&p, "after-big");
}

/// `max_message_size(usize::MAX)` (no limit): a request that arrives in pieces is read and
/// served (the read's room, `limit + 1`, overflowed and panicked the serving thread: the
/// app's own, in `recv`).
#[test]
fn lib_unlimited_message_size_serves_a_request_in_pieces() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-unlimited");
    let primary = primary_of(builder(dir.path(), &[]).max_message_size(usize::MAX).start());
    let sock = primary.socket_path().to_str().unwrap().to_owned();
    let (piece_tx, first_piece) = mpsc::channel();
    let (rest_tx, send_rest) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let mut conn = ConnectOptions::new().connect(&sock).unwrap();
        let line = br#"{"v":1,"argv":["prog","pieces"]}"#;
        conn.write_all(&line[..5]).unwrap();
        piece_tx.send(()).unwrap();
        send_rest.recv().unwrap();
        conn.write_all(&line[5..]).unwrap();
        conn.write_all(b"\n").unwrap();
        read_reply(&conn, Duration::from_secs(20)).unwrap()
    });
    // The first piece alone: one turn accepts the connection and holds what it read; the
    // next reads the rest.
    first_piece.recv().unwrap();
    assert_eq!(primary.try_recv().err(), Some(solo_instance::TryRecvError::Empty));
    rest_tx.send(()).unwrap();
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("no request");
    assert_eq!(request.args(), [OsString::from("pieces")]);
    request.reply(Reply::ok()).unwrap();
    let reply = json_line(&client.join().unwrap().expect("no reply"));
    assert_eq!(reply["ok"], true);
}

/// A request deadline runs only while the primary's loop serves: the time the app spends
/// away from it (handling another request between two receive calls, so no turn runs)
/// is not counted against a launch that sent its whole request at once. It is served,
/// not told it sent no request in time (which failed the launch).
#[test]
fn lib_a_deadline_passed_while_the_app_was_away_is_not_the_launchs() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-away");
    // The primary gives a connected client 300 ms for its request line.
    let primary = primary_of(builder(dir.path(), &[]).timeout(Duration::from_millis(300)).start());
    let client = std::os::unix::net::UnixStream::connect(primary.socket_path()).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // A line larger than the first read and one more read of the loop (16 + 64 KiB), sent
    // whole at once: what the socket's buffer does not hold waits for the primary.
    let mut line = br#"{"v":1,"argv":["prog","away"],"data":""#.to_vec();
    line.resize(150 * 1024, b'a');
    line.extend_from_slice(b"\"}\n");
    let mut writer = client.try_clone().unwrap();
    let written = thread::spawn(move || {
        let _ = writer.write_all(&line);
    });
    // One turn: the connection (in the backlog since `connect`) is accepted and held, its
    // request not whole yet.
    assert_eq!(primary.recv_timeout(Duration::ZERO).err(), Some(solo_instance::RecvTimeoutError::Timeout));
    // The app is away (handling another request, say) past that deadline.
    thread::sleep(Duration::from_millis(600));
    // Back in its loop, it reads the rest and serves the launch.
    let got = primary.recv_timeout(Duration::from_secs(20));
    let served = got.is_ok();
    if let Ok(request) = got {
        assert_eq!(request.args(), [OsString::from("away")]);
        request.reply(Reply::exit(7)).unwrap();
    }
    let mut reply = String::new();
    BufReader::new(&client).read_line(&mut reply).unwrap();
    assert!(served, "the app's absence failed the launch: {reply}");
    assert_eq!(json_line(&reply)["exit_code"], 7, "{reply}");
    drop(client);
    written.join().unwrap();
}

/// A primary whose app takes no request holds at most 64 waiting for it; the next launch
/// gets the protocol's one busy reply, exactly the line the README documents (what a
/// peer in another language matches), and is let in once the app takes one.
#[test]
fn a_full_queue_answers_the_protocols_busy_reply() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("busy");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let (tx, ready) = mpsc::channel();
    primary.set_waker(move || {
        let _ = tx.send(());
    });
    let path = primary.socket_path().to_str().unwrap().to_owned();
    let send = |arg: &str| {
        let c = LocalSocket::connect(&path).unwrap();
        (&c).write_all(format!("{{\"v\":1,\"argv\":[\"x\",\"{arg}\"]}}\n").as_bytes()).unwrap();
        c
    };
    let waiting: Vec<LocalSocket> = (0..64).map(|i| send(&i.to_string())).collect();
    for _ in 0..64 {
        ready.recv_timeout(Duration::from_secs(20)).expect("a request was not queued");
    }
    let turned_away = send("65th");
    let line = read_reply(&turned_away, Duration::from_secs(20)).unwrap().expect("no reply");
    assert_eq!(
        line,
        r#"{"error":"the primary instance is busy","exit_code":1,"ok":false,"retry":true,"v":1}"#
    );
    assert_eq!(line, Reply::busy().encode());
    // The app takes one: the next launch waits for it again, unanswered.
    drop(primary.try_recv().unwrap());
    let let_in = send("66th");
    ready.recv_timeout(Duration::from_secs(20)).expect("the next request was not queued");
    drop((waiting, let_in));
}
