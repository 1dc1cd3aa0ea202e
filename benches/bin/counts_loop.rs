//! Per-launch and per-connection work in one process, for `benches/counts.sh` to count
//! (instructions under callgrind, system calls under perf or strace), the crate's side and
//! its std floor run alike:
//!
//! - `handoff`: a launch handed to a primary served on a thread of this process, to reply.
//!   `crate`: `SingleInstance::send` against `Primary::requests()` answering
//!   `Reply::ok()`. `floor`: a std `UnixStream` that builds the request as a launch does
//!   (`getcwd`, `getpid`), writes it and reads the reply line, against a std
//!   `UnixListener` thread that reads each connection's request line and writes one
//!   reply line.
//! - `rtt`: what `echo rtt` does per connection (connect, 1 byte each way, close) against a
//!   server thread that echoes each connection's byte. `crate`: `LocalSocket` and
//!   `LocalServer`; `floor`: std's `UnixStream` and `UnixListener`.
//!
//! `counts_loop handoff|rtt crate|floor N DIR`: a few rounds first, then a pause past the
//! primary's removal-watch delay (100 ms) and one more round, so that everything done
//! once is done before the N rounds; a run with 2N rounds minus one with N leaves N
//! rounds' cost, whatever the process's start and end cost.

#[cfg(unix)]
#[path = "floor_request.rs"]
mod floor_request;

#[cfg(not(unix))]
fn main() {}

#[cfg(unix)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [what, side, n, dir] = args.as_slice() else {
        panic!("usage: counts_loop handoff|rtt crate|floor N DIR");
    };
    let n: usize = n.parse().expect("N");
    let dir = std::path::Path::new(dir);
    std::fs::create_dir_all(dir).expect("DIR");
    match (what.as_str(), side.as_str()) {
        ("handoff", "crate") => unix::handoff_crate(n, dir),
        ("handoff", "floor") => unix::handoff_floor(n, dir),
        ("rtt", "crate") => unix::rtt_crate(n, dir),
        ("rtt", "floor") => unix::rtt_floor(n, dir),
        _ => panic!("usage: counts_loop handoff|rtt crate|floor N DIR"),
    }
}

#[cfg(unix)]
mod unix {
    use std::ffi::OsString;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::Path;
    use std::time::Duration;

    use solo_instance::{LocalServer, LocalSocket, Reply, SingleInstance, Start};

    use super::floor_request::request_line;

    /// Rounds before the pause: first connections, lazy set-up.
    const WARM_UP: usize = 3;
    /// Past the primary's removal-watch delay (100 ms), so that the watch is set up in the
    /// round after it, before the counted rounds.
    const PAUSE: Duration = Duration::from_millis(150);

    fn rounds(n: usize, mut round: impl FnMut()) {
        for _ in 0..WARM_UP {
            round();
        }
        std::thread::sleep(PAUSE);
        for _ in 0..n + 1 {
            round();
        }
    }

    pub fn handoff_crate(n: usize, dir: &Path) {
        let id = "counts.Handoff";
        let app = || SingleInstance::new(id).unwrap().directory(dir);
        let Start::Primary(primary) = app().start().unwrap() else {
            panic!("a primary already runs in {dir:?}")
        };
        let stopper = primary.stopper();
        let serving = std::thread::spawn(move || {
            for r in primary.requests() {
                let _ = r.reply(Reply::ok());
            }
        });
        rounds(n, || {
            let reply = app().argv(["bench", "file.txt"]).send().unwrap();
            assert!(reply.is_ok());
        });
        stopper.stop();
        serving.join().unwrap();
    }

    /// The primary's reply to every launch, as `Reply::ok()` encodes it.
    const OK_LINE: &[u8] =
        b"{\"data\":null,\"exit_code\":0,\"ok\":true,\"stderr\":\"\",\"stdout\":\"\",\"v\":1}\n";

    pub fn handoff_floor(n: usize, dir: &Path) {
        let path = dir.join("handoff-floor.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let serving = std::thread::spawn(move || {
            for s in listener.incoming() {
                let s = s.unwrap();
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).unwrap_or(0) == 0 || line == "q\n" {
                    return;
                }
                let _ = (&s).write_all(OK_LINE);
            }
        });
        let argv: Vec<OsString> = vec!["bench".into(), "file.txt".into()];
        rounds(n, || {
            let request = request_line(&argv);
            let s = UnixStream::connect(&path).unwrap();
            (&s).write_all(request.as_bytes()).unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            assert!(line.contains("\"ok\":true"));
        });
        (&UnixStream::connect(&path).unwrap()).write_all(b"q\n").unwrap();
        serving.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    /// Echoes each connection's one byte, until a connection sends `q`.
    fn serve_rtt<S: Read + Write>(connections: impl Iterator<Item = S>) {
        for mut socket in connections {
            let mut b = [0u8; 1];
            match socket.read_exact(&mut b) {
                Ok(()) if b[0] == b'q' => return,
                Ok(()) => {
                    let _ = socket.write_all(&b);
                }
                Err(_) => {}
            }
        }
    }

    pub fn rtt_crate(n: usize, dir: &Path) {
        let path = dir.join("rtt-crate.sock");
        let name = path.to_str().expect("a UTF-8 DIR").to_owned();
        let mut server = LocalServer::new();
        server.listen(&name).unwrap();
        let serving = std::thread::spawn(move || serve_rtt(server.incoming().map(Result::unwrap)));
        rounds(n, || {
            let mut s = LocalSocket::connect(&name).unwrap();
            s.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
        });
        LocalSocket::connect(&name).unwrap().write_all(b"q").unwrap();
        serving.join().unwrap();
    }

    pub fn rtt_floor(n: usize, dir: &Path) {
        let path = dir.join("rtt-floor.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let serving = std::thread::spawn(move || serve_rtt(listener.incoming().map(Result::unwrap)));
        rounds(n, || {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
        });
        UnixStream::connect(&path).unwrap().write_all(b"q").unwrap();
        serving.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
