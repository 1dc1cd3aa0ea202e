//! Issue 11's figures under abuse, measured: a primary's peak memory under a flood of
//! nested-array requests, launch latency with 256 hostile connections held, and how
//! long a launch takes past its timeout when the primary drains it slowly.
//!
//! `cargo bench --bench abuse` (release build; the primary runs in a child process,
//! this same binary re-run with `SOLO_BENCH_PRIMARY` set, so its RSS is its own).

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the abuse benchmark reads /proc/<pid>/status: Linux only");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use solo_instance::{
        ConnectOptions, LocalServer, LocalSocket, Reply, SingleInstance, SocketOptions, Start,
    };

    const PRIMARY_VAR: &str = "SOLO_BENCH_PRIMARY";
    const APP: &str = "bench.Abuse";

    pub fn main() {
        if let Ok(dir) = std::env::var(PRIMARY_VAR) {
            return primary(Path::new(&dir));
        }
        let dir = std::env::temp_dir().join(format!("solo-bench-abuse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        memory(&dir);
        starvation(&dir);
        timeouts(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The child: a primary that answers every launch ok, as `solo run` does.
    fn primary(dir: &Path) {
        let Ok(Start::Primary(p)) = SingleInstance::new(APP).unwrap().directory(dir).argv(["bench"]).start()
        else {
            panic!("the bench primary could not start");
        };
        println!("PRIMARY {}", p.socket_path().display());
        for r in p.requests() {
            let _ = r.reply(Reply::ok());
        }
    }

    /// The child primary, killed when dropped (also when a measurement panics).
    struct Child(std::process::Child);

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    impl Child {
        fn id(&self) -> u32 {
            self.0.id()
        }
    }

    fn spawn_primary(dir: &Path) -> (Child, String) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(PRIMARY_VAR, dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let sock = line.trim().strip_prefix("PRIMARY ").expect("PRIMARY line").to_owned();
        (Child(child), sock)
    }

    fn peak_rss_mib(pid: u32) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
    }

    fn read_reply(c: &LocalSocket) -> Option<String> {
        c.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).ok()?;
        Some(line)
    }

    fn memory(dir: &Path) {
        let (child, sock) = spawn_primary(dir);
        let idle = peak_rss_mib(child.id());
        let mut request = br#"{"v":1,"argv":["flood"],"data":["#.to_vec();
        while request.len() + 12 < (1 << 20) {
            request.extend_from_slice(b"[0],");
        }
        request.extend_from_slice(b"[0]]}\n");
        let mut partial = request.clone();
        partial.pop();
        let held: Vec<LocalSocket> = (0..16)
            .map(|_| {
                let c = LocalSocket::connect(&sock).unwrap();
                let _ = (&c).write_all(&partial);
                c
            })
            .collect();
        let started = Instant::now();
        let (ok, retry): (usize, usize) = std::thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let (mut ok, mut retry) = (0, 0);
                        for _ in 0..18 {
                            let c = LocalSocket::connect(&sock).unwrap();
                            // A request shed mid-write still gets its reply to read.
                            let _ = (&c).write_all(&request);
                            match read_reply(&c) {
                                Some(r) if r.contains("\"ok\":true") => ok += 1,
                                _ => retry += 1,
                            }
                        }
                        (ok, retry)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        drop(held);
        let peak = peak_rss_mib(child.id());
        println!(
            "memory: 144 requests of 1 MiB of [[0],[0],...] from 8 clients at once, plus 16 held 1 MiB partial \
             requests: {ok} answered, {retry} told to retry, in {:.2} s; primary VmHWM {peak:.1} MiB \
             (idle {idle:.1} MiB; bound 64 MiB + 1 MiB)",
            started.elapsed().as_secs_f64()
        );
        drop(child);
    }

    fn starvation(dir: &Path) {
        let (child, sock) = spawn_primary(dir);
        let connect = || ConnectOptions::new().timeout(Some(Duration::from_secs(5))).connect(&sock).ok();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut took: Vec<Duration> = std::thread::scope(|s| {
            let (ready_tx, ready) = std::sync::mpsc::channel();
            let (stop, connect) = (&stop, &connect);
            s.spawn(move || {
                let mut conns: Vec<Option<LocalSocket>> = (0..256).map(|_| connect()).collect();
                ready_tx.send(()).unwrap();
                let mut last = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                    let trickle = last.elapsed() >= Duration::from_millis(500);
                    if trickle {
                        last = Instant::now();
                    }
                    for (i, slot) in conns.iter_mut().enumerate() {
                        let Some(c) = slot else {
                            *slot = connect();
                            continue;
                        };
                        let mut pfd = libc::pollfd { fd: c.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                        let gone = unsafe { libc::poll(&mut pfd, 1, 0) } > 0
                            || (trickle && i % 2 == 1 && (&*c).write_all(b" ").is_err());
                        if gone {
                            *slot = connect();
                        }
                    }
                }
            });
            ready.recv().unwrap();
            let took = (0..30)
                .map(|i| {
                    let started = Instant::now();
                    let r = SingleInstance::new(APP)
                        .unwrap()
                        .directory(dir)
                        .timeout(Duration::from_secs(1))
                        .argv(["x".to_owned(), format!("genuine-{i}")])
                        .send();
                    let t = started.elapsed();
                    assert!(r.is_ok(), "launch {i}: {:?}", r.err());
                    std::thread::sleep(Duration::from_millis(100));
                    t
                })
                .collect();
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            took
        });
        took.sort();
        println!(
            "starvation: 30 launches (1 s timeout) with 256 silent or trickling connections held: all served; \
             median {:.2} ms, max {:.2} ms",
            took[took.len() / 2].as_secs_f64() * 1e3,
            took[took.len() - 1].as_secs_f64() * 1e3
        );
        drop(child);
    }

    fn timeouts(dir: &Path) {
        let sub = dir.join("slow");
        std::fs::create_dir_all(&sub).unwrap();
        for secs in [1u64, 3] {
            let lock = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(sub.join(format!("{APP}.lock")))
                .unwrap();
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
            let mut server = LocalServer::new();
            server.set_socket_options(SocketOptions::USER_ACCESS);
            let sock: PathBuf = sub.join(format!("{APP}.sock"));
            server.listen(sock.to_str().unwrap()).unwrap();
            let (stop_tx, stop) = std::sync::mpsc::channel::<()>();
            let drain = std::thread::spawn(move || {
                server.wait_for_new_connection(Some(Duration::from_secs(20))).unwrap();
                let conn = server.next_pending_connection().unwrap();
                let mut buf = [0u8; 4096];
                while stop.recv_timeout(Duration::from_millis(50)).is_err() {
                    conn.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                    let _ = (&conn).read(&mut buf);
                }
            });
            let timeout = Duration::from_secs(secs);
            let started = Instant::now();
            let r = SingleInstance::new(APP)
                .unwrap()
                .directory(&sub)
                .timeout(timeout)
                .argv(["x".to_owned(), "a".repeat(900_000)])
                .send();
            let took = started.elapsed();
            stop_tx.send(()).unwrap();
            drain.join().unwrap();
            println!(
                "timeout: a 900 KB launch, {secs} s timeout, primary draining 4 KiB per 50 ms: {} after {:.1} ms \
                 ({:+.1} ms past the timeout)",
                if r.is_err() { "NoReply" } else { "answered" },
                took.as_secs_f64() * 1e3,
                (took.as_secs_f64() - timeout.as_secs_f64()) * 1e3
            );
            drop(lock);
        }
    }
}
