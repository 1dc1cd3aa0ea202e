//! How the app receives requests: `recv`, `try_recv`, `recv_timeout` (and which of
//! stopped, empty or timed out each says), `requests()`, a waker, a callback, a `Stopper`;
//! and the threads behind them: none while the app waits in `recv`, one for a waker, each
//! with the app's signals blocked.
//!
//! Every test has a Watchdog; readiness is a line read or a channel, never a sleep.
#![cfg(unix)]

mod util;

use std::ffi::OsString;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use solo_instance::{RecvError, RecvTimeoutError, Reply, TryRecvError};
use util::solo::{builder, primary_of, private_dir, reply_of, spawn_launch};
#[cfg(any(target_os = "linux", target_os = "android"))]
use util::solo::{system_builder, Fixture};
use util::Watchdog;

/// The names of the threads of process `pid` that are the crate's ("solo-instance ...").
#[cfg(any(target_os = "linux", target_os = "android"))]
fn crate_threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .filter(|n| n.starts_with("solo-instance"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `try_recv` for GUI loops, woken by `set_waker`; `recv_timeout`; a `Stopper` ends
/// `requests()` from another thread. Each call says why no request came: `try_recv`
/// `Empty`, `recv_timeout` `Timeout`; once stopped, every call says `Stopped` (`RecvError`),
/// again and again, never `Empty` or `Timeout`.
#[test]
fn lib_try_recv_waker_recv_timeout_and_stopper() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-poll");
    let primary = primary_of(builder(dir.path(), &[]).start());
    assert_eq!(primary.try_recv().err(), Some(TryRecvError::Empty));
    let started = Instant::now();
    assert_eq!(primary.recv_timeout(Duration::from_millis(100)).err(), Some(RecvTimeoutError::Timeout));
    assert!(started.elapsed() >= Duration::from_millis(100));

    let (tx, woken) = mpsc::channel();
    primary.set_waker(move || {
        let _ = tx.send(());
    });
    let l = spawn_launch(dir.path(), &["polled"]);
    woken.recv_timeout(Duration::from_secs(20)).expect("the waker was not called");
    let request = primary.try_recv().expect("a request is ready once the waker ran");
    assert_eq!(request.args(), [OsString::from("polled")]);
    request.reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());

    let l = spawn_launch(dir.path(), &["timed"]);
    let request = primary.recv_timeout(Duration::from_secs(20)).expect("recv_timeout got nothing");
    assert_eq!(request.args(), [OsString::from("timed")]);
    request.reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());

    // The primary (not Sync) moves to a thread blocked in requests(); stop it from here.
    let stopper = primary.stopper();
    let (tx, done) = mpsc::channel();
    let serving = thread::spawn(move || {
        let n = primary.requests().count();
        tx.send(n).unwrap();
        primary
    });
    stopper.stop();
    assert_eq!(done.recv_timeout(Duration::from_secs(20)).expect("requests() did not end"), 0);
    let primary = serving.join().unwrap();
    for _ in 0..2 {
        assert_eq!(primary.try_recv().err(), Some(TryRecvError::Stopped));
        assert_eq!(primary.recv().err(), Some(RecvError));
        assert_eq!(primary.recv_timeout(Duration::from_secs(1)).err(), Some(RecvTimeoutError::Stopped));
    }
    assert_eq!(primary.requests().count(), 0);
}

/// Without a waker, the app's own thread serves: `try_recv` alone (a GUI that polls each
/// frame) accepts and reads a launch, and a `Stopper` wakes a `requests()` that waits in
/// the primary's loop (poll(2) on the socket) on another thread. The System scope's
/// abstract socket has no removal watch, so no timer wakes that poll(2) either.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn lib_try_recv_alone_serves_and_stop_wakes_a_serving_recv() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let id = format!("org.test.SelfServed{}", std::process::id());
    let app = |args: &[&str]| system_builder(&id, args);
    let primary = primary_of(app(&[]).start());
    let launching = app(&["polled"]);
    let l = thread::spawn(move || launching.start());
    let request = util::poll_request(&primary);
    assert_eq!(request.args(), [OsString::from("polled")]);
    request.reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());

    let stopper = primary.stopper();
    let (tx, done) = mpsc::channel();
    let (served_tx, served) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let serving = thread::spawn(move || {
        // "/proc/thread-self" links to "PID/task/TID".
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        tid_tx.send(me.file_name().unwrap().to_string_lossy().into_owned()).unwrap();
        let mut n = 0;
        for request in primary.requests() {
            request.reply(Reply::ok()).unwrap();
            n += 1;
            served_tx.send(()).unwrap();
        }
        tx.send(n).unwrap();
    });
    let launching = app(&["served"]);
    let l = thread::spawn(move || launching.start());
    served.recv_timeout(Duration::from_secs(20)).expect("requests() did not serve the launch");
    assert!(reply_of(l.join().unwrap()).is_ok());
    // Stop only once the serving thread sleeps in poll(2) again (the kernel says where it
    // sleeps), so that the stop has to wake it.
    let tid = tid_rx.recv().unwrap();
    let wchan = format!("/proc/self/task/{tid}/wchan");
    while !std::fs::read_to_string(&wchan).unwrap_or_default().contains("poll") {
        thread::yield_now();
    }
    stopper.stop();
    assert_eq!(done.recv_timeout(Duration::from_secs(20)).expect("stop did not wake requests()"), 1);
    serving.join().unwrap();
}

/// The crate's threads block the app's signals, so a process-directed SIGINT or SIGTERM
/// reaches the app's own handling thread (or its signalfd) and never one of ours: the
/// driver thread a waker starts blocks both, though this thread blocks neither.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn crate_threads_block_the_apps_signals() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-quiet-threads");
    let primary = primary_of(builder(dir.path(), &[]).start());
    primary.set_waker(|| {});
    // And the thread `on_request` starts, which serves the socket of its primary.
    let dir2 = private_dir("lib-quiet-threads-callback");
    let callback = primary_of(builder(dir2.path(), &[]).start()).on_request(|_| {});
    let (blocked, int_term) = (util::blocked_signals, util::INT_TERM);
    let mine = blocked(&std::fs::read_to_string("/proc/thread-self/status").unwrap()).unwrap();
    assert_eq!(mine & int_term, 0, "the test thread blocks SIGINT or SIGTERM itself");
    // A new thread names itself once it runs: look until the serve and callback threads
    // show (the watchdog ends a test where they never do).
    loop {
        let mut serve_threads = 0;
        let mut callback_threads = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !name.starts_with("solo-instance") {
                continue;
            }
            serve_threads += usize::from(name.trim() == "solo-instance s");
            callback_threads += usize::from(name.trim() == "solo-instance c");
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            // A thread that ended meanwhile has no status left.
            if let Some(mask) = blocked(&status) {
                assert_eq!(mask & int_term, int_term, "{} takes SIGINT or SIGTERM", name.trim());
            }
        }
        if serve_threads > 0 && callback_threads > 0 {
            break;
        }
        thread::yield_now();
    }
    drop(callback);
    drop(primary);
}

/// `recv_timeout(Duration::ZERO)`, polled (as a frame loop may poll instead of
/// `try_recv`), serves what is ready: the primary's loop runs once even when the
/// deadline has passed already.
#[test]
fn lib_recv_timeout_zero_serves_what_is_ready() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-recv-zero");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let l = spawn_launch(dir.path(), &["zero"]);
    let request = loop {
        // The watchdog ends a test that never gets it.
        if let Ok(r) = primary.recv_timeout(Duration::ZERO) {
            break r;
        }
        thread::yield_now();
    };
    assert_eq!(request.args(), [OsString::from("zero")]);
    request.reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());
}

/// No thread is started before it is needed. `solo run` serves with
/// `requests()`, so its own thread accepts, checks and reads each launch: before and after
/// launches, none of its threads is the crate's.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn primary_serving_with_requests_starts_no_thread() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let fx = Fixture::new("no-threads");
    let primary = fx.primary(&[]);
    assert_eq!(crate_threads(primary.id()), Vec::<String>::new(), "threads after the start");
    fx.send_ok(&primary, "first");
    fx.send_ok(&primary, "second");
    // A request over 16 KiB, read in pieces and decoded on the same thread.
    fx.send_ok(&primary, &"large".repeat(5000));
    assert_eq!(crate_threads(primary.id()), Vec::<String>::new(), "threads after three launches");
}

/// `on_request`: each request goes to the callback on the primary's own thread; dropping
/// the handle releases the primary, so the next launch becomes primary.
#[test]
fn lib_on_request_callback_and_drop_releases() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-callback");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let (tx, seen) = mpsc::channel();
    let handle = primary.on_request(move |request| {
        let _ = tx.send(request.args().to_vec());
        request.reply(Reply::ok().with_stdout("from callback")).unwrap();
    });
    let reply = builder(dir.path(), &["via-callback"]).send().unwrap();
    assert_eq!(reply.stdout(), "from callback");
    assert_eq!(seen.recv_timeout(Duration::from_secs(20)).unwrap(), [OsString::from("via-callback")]);
    drop(handle);
    assert!(!dir.path().join("org.test.Lib.sock").exists());
    let next = primary_of(builder(dir.path(), &[]).start());
    drop(next);
}

/// A waker may own the primary and release it (a GUI's "quit" handled in the callback):
/// the waker runs on the serving thread, inside a turn of the loop, and dropping the
/// primary there must not wait for that turn (the loop's state is locked by it). Hung
/// before the waker was called outside the turn.
#[test]
fn lib_a_waker_may_release_the_primary_on_the_serving_thread() {
    use std::sync::{Arc, Mutex};
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-waker-releases");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let slot: Arc<Mutex<Option<solo_instance::Primary>>> = Arc::default();
    let (tx, released) = mpsc::channel();
    let in_waker = Arc::clone(&slot);
    primary.set_waker(move || {
        let mut held = in_waker.lock().unwrap();
        let Some(p) = held.as_ref() else { return };
        let mut quit = false;
        while let Ok(request) = p.try_recv() {
            quit |= request.args() == [OsString::from("quit")];
            request.reply(Reply::exit(7)).unwrap();
        }
        if quit {
            let p = held.take();
            drop(held);
            drop(p);
            let _ = tx.send(thread::current().name().map(str::to_owned));
        }
    });
    *slot.lock().unwrap() = Some(primary);
    let reply = reply_of(spawn_launch(dir.path(), &["quit"]).join().unwrap());
    assert_eq!(reply.exit_code(), 7);
    let on =
        released.recv_timeout(Duration::from_secs(20)).expect("releasing the primary from its waker hung");
    assert_eq!(on.as_deref(), Some("solo-instance serve"), "the waker ran elsewhere");
    assert!(!dir.path().join("org.test.Lib.sock").exists(), "the released primary left its socket");
    // The lock is free: the next launch is the primary.
    drop(primary_of(builder(dir.path(), &[]).start()));
}

/// A waker that waits for a request (`recv_timeout`) runs on the driver thread, the one
/// thread that serves the socket: the wait serves it itself there, and gets the next
/// launch's request (a wait for a queue that only that thread fills would time out, the
/// launch unserved).
#[test]
fn lib_a_waker_that_waits_for_a_request_serves_it_on_the_driver_thread() {
    use std::sync::{Arc, Mutex};
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-waker-waits");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let slot: Arc<Mutex<Option<solo_instance::Primary>>> = Arc::default();
    let (tx, got) = mpsc::channel();
    let (first_done, first_replied) = mpsc::channel();
    let in_waker = Arc::clone(&slot);
    primary.set_waker(move || {
        let held = in_waker.lock().unwrap();
        let Some(p) = held.as_ref() else { return };
        let Ok(first) = p.try_recv() else { return };
        first.reply(Reply::exit(1)).unwrap();
        let _ = first_done.send(());
        let second = p.recv_timeout(Duration::from_secs(20)).map(|r| {
            let args = r.args().to_vec();
            r.reply(Reply::exit(2)).unwrap();
            args
        });
        let _ = tx.send(second.map_err(|e| format!("{e:?}")));
    });
    *slot.lock().unwrap() = Some(primary);
    let first = spawn_launch(dir.path(), &["first"]);
    first_replied.recv_timeout(Duration::from_secs(20)).expect("the first request");
    assert_eq!(reply_of(first.join().unwrap()).exit_code(), 1);
    let second = spawn_launch(dir.path(), &["second"]);
    let args = got.recv_timeout(Duration::from_secs(30)).expect("the waker's wait hung");
    assert_eq!(args, Ok(vec![OsString::from("second")]));
    assert_eq!(reply_of(second.join().unwrap()).exit_code(), 2);
    let p = slot.lock().unwrap().take();
    drop(p);
}

/// Requests that a waker's own wait delivered and left in the queue are announced (the
/// waker is called again) before the driver waits for anything new: here a waker that
/// waits for one request while two held launches complete theirs in the same turn.
#[test]
fn lib_requests_delivered_inside_the_waker_are_announced() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let _w = Watchdog::new(Duration::from_secs(90));
    let dir = private_dir("lib-waker-announce");
    let primary = primary_of(builder(dir.path(), &[]).start());
    let socket = primary.socket_path().to_string_lossy().into_owned();
    let slot: Arc<Mutex<Option<solo_instance::Primary>>> = Arc::default();
    let (seen_tx, seen) = mpsc::channel::<Vec<OsString>>();
    let (go_tx, go) = mpsc::channel::<()>();
    let (seen_tx, go) = (Mutex::new(seen_tx), Mutex::new(go));
    let first_call = AtomicBool::new(true);
    let in_waker = Arc::clone(&slot);
    primary.set_waker(move || {
        let held = in_waker.lock().unwrap();
        let Some(p) = held.as_ref() else { return };
        let take = |r: solo_instance::Request| {
            let _ = seen_tx.lock().unwrap().send(r.args().to_vec());
            r.reply(Reply::ok()).unwrap();
        };
        if first_call.swap(false, Ordering::SeqCst) {
            // The first request; then, once both held launches have sent the rest, one
            // wait, which delivers both: it takes one and leaves the other queued.
            take(p.try_recv().expect("the first request"));
            go.lock().unwrap().recv_timeout(Duration::from_secs(20)).expect("go");
            take(p.recv_timeout(Duration::from_secs(20)).expect("the second request"));
            return;
        }
        while let Ok(r) = p.try_recv() {
            take(r);
        }
    });
    *slot.lock().unwrap() = Some(primary);
    // Held by the loop: each sent part of its request line.
    let mut held = Vec::new();
    for tag in ["second", "third"] {
        let mut c = solo_instance::LocalSocket::connect(&socket).unwrap();
        c.write_all(format!("{{\"v\":1,\"argv\":[\"prog\",\"{tag}\"]").as_bytes()).unwrap();
        held.push(c);
    }
    let first = spawn_launch(dir.path(), &["first"]);
    assert_eq!(seen.recv_timeout(Duration::from_secs(20)).unwrap(), [OsString::from("first")]);
    assert!(reply_of(first.join().unwrap()).is_ok());
    for c in &mut held {
        c.write_all(b"}\n").unwrap();
    }
    go_tx.send(()).unwrap();
    assert_eq!(seen.recv_timeout(Duration::from_secs(20)).unwrap(), [OsString::from("second")]);
    let third = seen.recv_timeout(Duration::from_secs(20)).expect("the third request was never announced");
    assert_eq!(third, [OsString::from("third")]);
    let p = slot.lock().unwrap().take();
    drop(p);
}
