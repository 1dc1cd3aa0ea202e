//! Random clients against a live primary.
//!
//! One primary per fuzz process (app id `fuzz.Primary`, its own 0700 directory under the
//! temp dir, a 300 ms per-connection deadline), answered by a thread that replies
//! `Reply::ok()` to every request. Each input is written raw over a fresh connection; the
//! primary must then answer with one reply line that `Reply::decode` accepts (for a
//! request of protocol version 2, the `taken` frame may come first), or close the
//! connection, within its deadline (a hang past 2 s panics). After every input a normal
//! launch must still get an ok reply.
//!
//! The client half-closes its writing side after the input, so an input without a
//! newline ends at once instead of costing the 300 ms deadline. Set
//! `SOLO_FUZZ_HOLD_OPEN=1` to keep the connection open instead (slow: every such input
//! waits for the deadline), which exercises the primary's "no request within" reply.
#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use solo_instance::{LocalSocket, Reply, SingleInstance, Start};

const APP_ID: &str = "fuzz.Primary";
/// The primary's per-connection deadline.
const DEADLINE: Duration = Duration::from_millis(300);
/// Longer than this without an answer or a close is a hang.
const HANG: Duration = Duration::from_secs(2);

struct Fixture {
    dir: PathBuf,
    socket: String,
    hold_open: bool,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

extern "C" fn remove_dir() {
    if let Some(f) = FIXTURE.get() {
        let _ = std::fs::remove_dir_all(&f.dir);
    }
}

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("solo-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let start = SingleInstance::new(APP_ID)
            .unwrap()
            .directory(&dir)
            .timeout(DEADLINE)
            .start()
            .expect("start the fuzz primary");
        let Start::Primary(primary) = start else { panic!("another process is the fuzz primary") };
        let socket = primary.socket_path().to_string_lossy().into_owned();
        std::thread::spawn(move || {
            for request in primary.requests() {
                let _ = request.reply(Reply::ok());
            }
        });
        // libFuzzer leaves through exit(): remove the directory then.
        unsafe { libc::atexit(remove_dir) };
        let hold_open = std::env::var_os("SOLO_FUZZ_HOLD_OPEN").is_some_and(|v| v == "1");
        Fixture { dir, socket, hold_open }
    })
}

/// Reads until the first newline, the end of the stream, or `HANG`. `Some(line)` for a
/// complete line; `None` when the primary closed without one.
fn read_reply(socket: &LocalSocket, input_len: usize, started: Instant) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = HANG.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "the primary neither answered nor closed within {HANG:?} ({input_len}-byte input)"
        );
        socket.set_read_timeout(Some(left)).unwrap();
        match (&*socket).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if let Some(i) = got.iter().position(|&b| b == b'\n') {
                    got.truncate(i);
                    return Some(got);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the primary neither answered nor closed within {HANG:?} ({input_len}-byte input)")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Closed with our unread bytes in its queue: a reset, which is a close.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the reply: {e}"),
        }
    }
    assert!(
        got.is_empty(),
        "the primary closed in the middle of a reply line: {:?}",
        String::from_utf8_lossy(&got)
    );
    None
}

fuzz_target!(|input: &[u8]| {
    let f = fixture();
    let started = Instant::now();
    let socket = LocalSocket::connect(&f.socket).expect("connect to the primary");
    socket.set_write_timeout(Some(HANG)).unwrap();
    match (&socket).write_all(input) {
        // The primary read a line, answered and closed before taking the rest: fine.
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the primary stopped reading without closing ({}-byte input)", input.len())
        }
        Err(e) => panic!("writing the input: {e}"),
        Ok(()) => {}
    }
    if !f.hold_open {
        unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_WR) };
    }
    if let Some(line) = read_reply(&socket, input.len(), started) {
        // Protocol version 2: the app took the request (its reply follows), else the reply.
        if line != br#"{"v":2,"taken":true}"# {
            if let Err(e) = Reply::decode(&line) {
                panic!("the primary's reply does not decode: {e}\n{}", String::from_utf8_lossy(&line));
            }
        }
    }
    let took = started.elapsed();
    assert!(
        took < DEADLINE + Duration::from_millis(700),
        "the primary took {took:?} to answer or close (deadline {DEADLINE:?})"
    );
    drop(socket);

    let reply = SingleInstance::new(APP_ID)
        .unwrap()
        .directory(&f.dir)
        .timeout(HANG)
        .argv(["x", "probe"])
        .send()
        .unwrap_or_else(|e| panic!("a normal launch after this input failed: {e}"));
    assert!(reply.is_ok(), "a normal launch after this input was refused: {reply:?}");
});
