//! Side-by-side timings in one run: LocalServer/LocalSocket against `std::os::unix::net`,
//! and a SingleInstance handoff against the same bytes over std sockets.
//!
//! `cargo bench --bench ipc` (add `-- --quick` for a short run, and `rtt`, `stream` or
//! `handoff` to run only those). Rounds alternate between
//! the contenders and each reports its best round: interference on a shared machine only
//! ever adds time, so the best round is the closest to the true cost.

#[cfg(unix)]
fn main() {
    unix::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("the side-by-side benchmarks compare against std::os::unix::net: Unix only");
}

#[cfg(unix)]
mod unix {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use solo_instance::{LocalServer, LocalSocket, Reply, SingleInstance, Start};

    struct Cfg {
        rounds: usize,
        rtt_iters: usize,
        stream_mib: usize,
        handoffs: usize,
    }

    pub fn main() {
        let quick = std::env::args().any(|a| a == "--quick");
        let cfg = if quick {
            Cfg { rounds: 5, rtt_iters: 500, stream_mib: 64, handoffs: 100 }
        } else {
            Cfg { rounds: 15, rtt_iters: 2000, stream_mib: 256, handoffs: 300 }
        };
        let dir = std::env::temp_dir().join(format!("solo-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        println!("solo-instance side-by-side benchmarks ({} rounds, best round each)", cfg.rounds);
        // Named benchmarks only, when any are named (`-- handoff`).
        let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
        if wanted("rtt") {
            rtt(&cfg, &dir);
        }
        if wanted("stream") {
            stream(&cfg, &dir);
        }
        if wanted("handoff") {
            handoff(&cfg, &dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn report(what: &str, unit: &str, ours: f64, base: f64, base_name: &str, lower_is_better: bool) {
        let ratio = ours / base;
        let verdict = if lower_is_better { "time ratio" } else { "throughput ratio" };
        println!(
            "{what:<28} solo {ours:>9.2} {unit}   {base_name} {base:>9.2} {unit}   {verdict} {ratio:.3}"
        );
    }

    /// Best (lowest) per-iteration time over the rounds, in microseconds, for each side.
    fn interleaved(
        rounds: usize,
        mut a: impl FnMut() -> Duration,
        mut b: impl FnMut() -> Duration,
    ) -> (f64, f64) {
        let (mut best_a, mut best_b) = (f64::MAX, f64::MAX);
        for _ in 0..rounds {
            best_a = best_a.min(a().as_secs_f64());
            best_b = best_b.min(b().as_secs_f64());
        }
        (best_a, best_b)
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

    fn rtt(cfg: &Cfg, dir: &std::path::Path) {
        let ours_path = dir.join("rtt-solo.sock");
        let std_path = dir.join("rtt-std.sock");
        let mut server = LocalServer::new();
        server.listen(ours_path.to_str().unwrap()).unwrap();
        let ours_thread = std::thread::spawn(move || serve_rtt(server.incoming().map(Result::unwrap)));
        let listener = UnixListener::bind(&std_path).unwrap();
        let std_thread = std::thread::spawn(move || serve_rtt(listener.incoming().map(Result::unwrap)));
        let name = ours_path.to_str().unwrap().to_owned();
        let n = cfg.rtt_iters;
        let (ours, base) = interleaved(
            cfg.rounds,
            || {
                let t = Instant::now();
                for _ in 0..n {
                    let mut s = LocalSocket::connect(&name).unwrap();
                    s.write_all(b"x").unwrap();
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).unwrap();
                }
                t.elapsed() / n as u32
            },
            || {
                let t = Instant::now();
                for _ in 0..n {
                    let mut s = UnixStream::connect(&std_path).unwrap();
                    s.write_all(b"x").unwrap();
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).unwrap();
                }
                t.elapsed() / n as u32
            },
        );
        report("round trip (connect+1B+1B)", "us", ours * 1e6, base * 1e6, "std", true);
        LocalSocket::connect(&name).unwrap().write_all(b"q").unwrap();
        UnixStream::connect(&std_path).unwrap().write_all(b"q").unwrap();
        ours_thread.join().unwrap();
        std_thread.join().unwrap();
    }

    fn drain(mut r: impl Read, mut w: impl Write) {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) if buf[n - 1] == b'\n' => {
                    let _ = w.write_all(b"done\n");
                }
                Ok(_) => {}
            }
        }
    }

    fn stream(cfg: &Cfg, dir: &std::path::Path) {
        let ours_path = dir.join("stream-solo.sock");
        let std_path = dir.join("stream-std.sock");
        let mut server = LocalServer::new();
        server.listen(ours_path.to_str().unwrap()).unwrap();
        let listener = UnixListener::bind(&std_path).unwrap();
        let ours_client = LocalSocket::connect(ours_path.to_str().unwrap()).unwrap();
        let ours_peer = server.accept().unwrap();
        let std_client = UnixStream::connect(&std_path).unwrap();
        let (std_peer, _) = listener.accept().unwrap();
        let t1 = std::thread::spawn(move || drain(&ours_peer, &ours_peer));
        let t2 = std::thread::spawn(move || {
            let w = std_peer.try_clone().unwrap();
            drain(std_peer, w)
        });
        let mut chunk = vec![b'a'; 64 * 1024];
        *chunk.last_mut().unwrap() = b'\n';
        let plain = vec![b'a'; 64 * 1024];
        let chunks = cfg.stream_mib * 16;
        let mut ours_reader = BufReader::new(&ours_client);
        let mut std_reader = BufReader::new(std_client.try_clone().unwrap());
        let mut line = String::new();
        let (ours, base) = interleaved(
            cfg.rounds,
            || {
                let t = Instant::now();
                for i in 0..chunks {
                    (&ours_client).write_all(if i + 1 == chunks { &chunk } else { &plain }).unwrap();
                }
                line.clear();
                ours_reader.read_line(&mut line).unwrap();
                t.elapsed()
            },
            || {
                let t = Instant::now();
                for i in 0..chunks {
                    (&std_client).write_all(if i + 1 == chunks { &chunk } else { &plain }).unwrap();
                }
                let mut l = String::new();
                std_reader.read_line(&mut l).unwrap();
                t.elapsed()
            },
        );
        let mib = cfg.stream_mib as f64;
        report("stream (64 KiB writes)", "MiB/s", mib / ours, mib / base, "std", false);
        drop(ours_reader);
        drop(ours_client);
        drop(std_reader);
        drop(std_client);
        t1.join().unwrap();
        t2.join().unwrap();
    }

    fn handoff(cfg: &Cfg, dir: &std::path::Path) {
        let app_dir: PathBuf = dir.join("instance");
        let id = "bench.Handoff";
        let Start::Primary(primary) = SingleInstance::new(id).unwrap().directory(&app_dir).start().unwrap()
        else {
            panic!("a primary already runs")
        };
        let socket_path = primary.socket_path().to_owned();
        let stopper = primary.stopper();
        let serving = std::thread::spawn(move || {
            for r in primary.requests() {
                let _ = r.reply(Reply::ok());
            }
        });
        // The floor: the same request and reply lines over bare std sockets.
        let floor_path = dir.join("floor.sock");
        let listener = UnixListener::bind(&floor_path).unwrap();
        let floor_thread = std::thread::spawn(move || {
            for s in listener.incoming() {
                let s = s.unwrap();
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).unwrap_or(0) == 0 || line == "q\n" {
                    return;
                }
                (&s).write_all(Reply::ok().encode().as_bytes()).unwrap();
                (&s).write_all(b"\n").unwrap();
            }
        });
        let request = {
            let mut m = solo_instance::Message::new(["bench", "file.txt"]);
            m.cwd = std::env::current_dir().ok().map(Into::into);
            m.pid = Some(std::process::id());
            format!("{}\n", m.encode())
        };
        let n = cfg.handoffs;
        let (ours, base) = interleaved(
            cfg.rounds,
            || {
                let t = Instant::now();
                for _ in 0..n {
                    let reply = SingleInstance::new(id)
                        .unwrap()
                        .directory(&app_dir)
                        .argv(["bench", "file.txt"])
                        .send()
                        .unwrap();
                    assert!(reply.is_ok());
                }
                t.elapsed() / n as u32
            },
            || {
                let t = Instant::now();
                for _ in 0..n {
                    let s = UnixStream::connect(&floor_path).unwrap();
                    (&s).write_all(request.as_bytes()).unwrap();
                    let mut line = String::new();
                    BufReader::new(&s).read_line(&mut line).unwrap();
                }
                t.elapsed() / n as u32
            },
        );
        report("SingleInstance handoff", "us", ours * 1e6, base * 1e6, "std floor", true);
        stopper.stop();
        serving.join().unwrap();
        let s = UnixStream::connect(&floor_path).unwrap();
        (&s).write_all(b"q\n").unwrap();
        floor_thread.join().unwrap();
        let _ = socket_path;
    }
}
