//! One primary (guarantee 1) and no lost launch (guarantee 2): however many launches
//! start at once, the lock elects one primary and every other launch gets its reply; a
//! primary that dies, or is released, mid-handoff makes its launches start over and reach
//! the successor; a removed lock file or a System-scope name outliving its primary never
//! makes a second one. Real processes (the `solo` example) and in-process primaries.
//!
//! | what | tests |
//! |---|---|
//! | one primary | `storm_elects_one_primary_and_answers_every_launch`, `a_deleted_lock_file_does_not_make_a_second_primary`, `dropping_a_system_primary_frees_its_name_whatever_outlives_it` |
//! | no lost launch | `storm_...`, `primary_dying_between_accept_and_reply_makes_the_launch_retry`, `lib_release_hands_*` |
//!
//! Every test has a Watchdog; readiness is a line read or a channel, never a sleep.
#![cfg(unix)]

mod util;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::thread;
use std::time::{Duration, Instant};

#[cfg(any(target_os = "linux", target_os = "android"))]
use solo_instance::ConnectOptions;
use solo_instance::{LocalServer, Reply, SocketOptions};
#[cfg(any(target_os = "linux", target_os = "android"))]
use util::solo::system_builder;
use util::solo::{
    builder, forwarded, hold_lock, json_line, output, primary_of, private_dir, reply_of, spawn_launch, text,
    Fixture,
};
use util::{file_id, Proc, Watchdog};

/// Guarantees 1 and 2: 32 launches started at once, five rounds. Exactly one prints
/// `PRIMARY`; every other is forwarded (ok, exit 0); the primary printed one request per
/// other launch, each launch's unique argument (and pid) exactly once, and exits by itself
/// after the last one (`--count 31`).
#[test]
fn storm_elects_one_primary_and_answers_every_launch() {
    let _w = Watchdog::new(Duration::from_secs(150));
    const LAUNCHES: usize = 32;
    const ROUNDS: usize = 5;
    let f = Fixture::new("storm");
    let count = (LAUNCHES - 1).to_string();
    for round in 0..ROUNDS {
        // All spawned before any is waited for.
        let launches: Vec<(String, Proc)> = (0..LAUNCHES)
            .map(|i| {
                let arg = format!("round{round}-launch{i}");
                // A long timeout: on a loaded machine a launch may wait, but must not give up.
                let p = Proc::spawn(&mut f.cmd("run", ["--count", &count, "--timeout", "60", "--", &arg]));
                (arg, p)
            })
            .collect();
        let firsts: Vec<String> = launches.iter().map(|(_, p)| p.line()).collect();
        let primaries: Vec<usize> = (0..LAUNCHES).filter(|&i| firsts[i].starts_with("PRIMARY ")).collect();
        assert_eq!(primaries.len(), 1, "round {round}: not exactly one primary: {firsts:#?}");
        let primary = primaries[0];
        assert_eq!(firsts[primary], format!("PRIMARY {}", f.sock().display()));

        let mut launches: Vec<Option<(String, Proc)>> = launches.into_iter().map(Some).collect();
        let (_, primary_proc) = launches[primary].take().unwrap();
        let mut expected = std::collections::BTreeMap::new();
        for (i, launch) in launches.iter_mut().enumerate() {
            let Some((arg, p)) = launch.take() else { continue };
            let reply = forwarded(&firsts[i]);
            assert_eq!(reply["ok"], true, "round {round} {arg}: {reply}");
            assert_eq!(reply["exit_code"], 0, "round {round} {arg}: {reply}");
            let pid = p.id();
            let (status, rest) = p.finish();
            assert!(status.success(), "round {round} {arg}: {status}");
            assert!(rest.is_empty(), "round {round} {arg}: extra output {rest:?}");
            expected.insert(arg, pid);
        }
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..LAUNCHES - 1 {
            let request = json_line(&primary_proc.line());
            assert_eq!(request["v"], 2, "{request}"); // a launch of this version speaks version 2
            let arg = request["argv"][1].as_str().unwrap_or_else(|| panic!("{request}")).to_owned();
            let pid = request["pid"].as_u64().unwrap() as u32;
            assert!(seen.insert(arg.clone(), pid).is_none(), "round {round}: {arg} delivered twice");
        }
        let (status, rest) = primary_proc.finish();
        assert!(status.success(), "round {round}: primary {status}");
        assert!(rest.is_empty(), "round {round}: the primary printed more than {count} requests: {rest:?}");
        assert_eq!(seen, expected, "round {round}: requests (arg -> pid) differ from the launches");
        assert!(!f.sock().exists(), "round {round}: the primary left its socket behind");
    }
}

/// Guarantee 2: the test plays a primary that accepts the launch's connection, reads its
/// request, and goes away without replying (connection dropped, server closed, lock
/// freed). The launch must start over and become the primary itself.
#[test]
fn primary_dying_between_accept_and_reply_makes_the_launch_retry() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("handoff");
    let lock = hold_lock(&f.lock());
    let mut server = LocalServer::new();
    server.set_socket_options(SocketOptions::USER_ACCESS);
    server.listen(&f.sock_name()).unwrap();

    let launch = Proc::spawn(&mut f.cmd("run", ["--count", "0", "--timeout", "10", "--", "hello"]));
    assert!(
        server.wait_for_new_connection(Some(Duration::from_secs(20))).unwrap(),
        "the launch never connected"
    );
    let conn = server.next_pending_connection().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).unwrap();
    let request = json_line(&line);
    assert_eq!(request["argv"][1], "hello", "{request}");
    assert_eq!(request["pid"], launch.id(), "{request}");

    // Die between accept and reply.
    let died = Instant::now();
    drop(conn);
    server.close();
    drop(lock);

    assert_eq!(launch.line(), format!("PRIMARY {}", f.sock().display()), "stderr: {}", launch.stderr());
    assert!(died.elapsed() < Duration::from_secs(8), "the launch took {:?} to take over", died.elapsed());
    let (status, rest) = launch.finish();
    assert!(status.success(), "{status}");
    assert!(rest.is_empty(), "{rest:?}");
}

/// `release()` hands primacy to a successor: a launch whose request is queued but not yet
/// received is told to start over, and becomes the primary itself (guarantee 2).
#[test]
fn lib_release_hands_a_queued_launch_to_the_successor() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-release");
    let first = primary_of(builder(dir.path(), &[]).start());
    let (tx, woken) = mpsc::channel();
    first.set_waker(move || {
        let _ = tx.send(());
    });
    let successor = spawn_launch(dir.path(), &["successor"]);
    woken.recv_timeout(Duration::from_secs(20)).expect("the successor's request never arrived");
    first.release();
    let second = primary_of(successor.join().unwrap());
    assert!(second.socket_path().exists());

    // The successor serves as usual.
    let l = spawn_launch(dir.path(), &["to-second"]);
    let request = second.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(request.args(), [OsString::from("to-second")]);
    request.reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());
}

/// `release()` with a request in hand: dropping it after the release tells the launch to
/// start over (not "dropped without answering"), and it becomes the primary.
#[test]
fn lib_release_hands_a_received_launch_to_the_successor() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = private_dir("lib-release2");
    let first = primary_of(builder(dir.path(), &[]).start());
    let successor = spawn_launch(dir.path(), &["restart"]);
    let request = first.recv_timeout(Duration::from_secs(20)).expect("no request");
    first.release();
    assert!(!dir.path().join("org.test.Lib.sock").exists(), "release left the socket");
    drop(request);
    let second = primary_of(successor.join().unwrap());
    assert_eq!(second.socket_path(), dir.path().join("org.test.Lib.sock"));
}

/// Guarantees 1 and 3 when a cleaner deletes the lock file under a running primary: the
/// next launch can lock a new file, but the live socket answers, so it forwards instead
/// of becoming a second primary and removing that socket.
#[test]
fn a_deleted_lock_file_does_not_make_a_second_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let f = Fixture::new("unlinked");
    let p = f.primary(&[]);
    let before = file_id(f.sock());
    std::fs::remove_file(f.lock()).unwrap();
    f.send_ok(&p, "after-unlink");
    let out = output(&mut f.cmd("run", ["--count", "0", "--", "would-be-second"]));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("FORWARDED "), "a second launch did not forward: {stdout:?}");
    assert_eq!(json_line(&p.line())["argv"][1], "would-be-second");
    assert_eq!(file_id(f.sock()), before, "the live primary's socket was replaced");
}

/// The System scope's abstract name is the lock: it must be free once the primary is
/// dropped, whatever outlives it (a `Stopper`, the driver thread a waker started, held
/// connections), and a waker that drops the primary frees it too. Checked by the next
/// start becoming the primary at once.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn dropping_a_system_primary_frees_its_name_whatever_outlives_it() {
    use std::sync::{Arc, Mutex};
    let _w = Watchdog::new(Duration::from_secs(60));
    let id = format!("org.test.SystemFree{}", std::process::id());
    let app = |args: &[&str]| system_builder(&id, args);
    // Driven by a waker's thread, with a silent connection held and a Stopper kept.
    let primary = primary_of(app(&[]).start());
    let stopper = primary.stopper();
    let (tx, woken) = mpsc::channel();
    primary.set_waker(move || {
        let _ = tx.send(());
    });
    let name = primary.socket_path().to_str().unwrap().to_owned();
    let silent =
        ConnectOptions::new().socket_options(SocketOptions::ABSTRACT_NAMESPACE).connect(&name).unwrap();
    let l = thread::spawn({
        let b = app(&["one"]);
        move || b.start()
    });
    woken.recv_timeout(Duration::from_secs(20)).expect("no request");
    primary.try_recv().unwrap().reply(Reply::ok()).unwrap();
    assert!(reply_of(l.join().unwrap()).is_ok());
    drop(primary);
    let second = primary_of(app(&[]).start());
    drop((stopper, silent));

    // Released by its own waker, on the driver thread.
    let slot: Arc<Mutex<Option<solo_instance::Primary>>> = Arc::default();
    let in_waker = Arc::clone(&slot);
    let (tx, released) = mpsc::channel();
    second.set_waker(move || {
        let mut held = in_waker.lock().unwrap();
        if let Some(p) = held.as_ref() {
            while let Ok(r) = p.try_recv() {
                r.reply(Reply::ok()).unwrap();
            }
            let p = held.take();
            drop(held);
            drop(p);
            let _ = tx.send(());
        }
    });
    *slot.lock().unwrap() = Some(second);
    assert!(reply_of(app(&["quit"]).start()).is_ok());
    released.recv_timeout(Duration::from_secs(20)).expect("the waker did not release the primary");
    drop(primary_of(app(&[]).start()));
}
