//! The `tokio` feature with real sockets under a Tokio runtime: async accept (one and
//! several clients, the `incomingConnection` hook, the callback's acceptor thread, pushes
//! from other threads, the pending limit), cancellation safety, and async requests of a
//! SingleInstance primary (launches from threads, a task owning the primary, Stopper).
//!
//! The runtimes are current-thread ones built by hand, so the tests need no Tokio feature
//! beyond what the crate enables (no `macros`, `time` or `rt-multi-thread` dev-dependency
//! weighs on the default `cargo test`). Every test has a Watchdog; none sleeps to wait for
//! readiness.
//!
//! Unix and Windows (`tests/wine.sh --features tokio --test tokio`): so the helpers are
//! here rather than in the Unix-only `tests/util`. A named pipe holds at most two
//! clients that nobody accepted (one accepted by the listener's thread, one on the next
//! pipe instance); a third `connect` waits, so clients that pile up connect from threads.
#![cfg(feature = "tokio")]

use std::collections::BTreeSet;
use std::future::{poll_fn, Future};
use std::io::{Read, Write};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::thread;
use std::time::Duration;

mod util;
use util::{unique_name, TempDir, Watchdog};

use solo_instance::{Error, LocalServer, LocalSocket, LocalSocketError, Reply, SingleInstance, Start};

const WATCHDOG: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_io().build().expect("a Tokio runtime")
}

fn listening(tag: &str) -> (LocalServer, String) {
    let name = unique_name(tag);
    let mut server = LocalServer::new();
    server.listen(&name).unwrap_or_else(|e| panic!("listen {name}: {e}"));
    (server, name)
}

/// A client that connects and sends one tag byte; its socket is kept open until the
/// returned one is dropped.
fn client(name: &str, tag: u8) -> LocalSocket {
    let mut socket = LocalSocket::connect(name).unwrap_or_else(|e| panic!("connect {name}: {e}"));
    socket.write_all(&[tag]).unwrap();
    socket
}

/// Clients with these tags, connected in order from a thread; its result keeps them open.
fn clients(name: &str, tags: std::ops::Range<u8>) -> thread::JoinHandle<Vec<LocalSocket>> {
    let name = name.to_owned();
    thread::spawn(move || tags.map(|i| client(&name, i)).collect())
}

/// The tag byte an accepted socket's client sent.
fn tag_of(mut socket: LocalSocket) -> u8 {
    let mut tag = [0];
    socket.read_exact(&mut tag).unwrap();
    tag[0]
}

/// Polls `future` once; `Some` if it completed. Dropping it afterwards cancels it.
async fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    poll_fn(|cx| {
        Poll::Ready(match future.as_mut().poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await
}

/// Lets the runtime run everything else (and poll its reactor) a few times.
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------------------
// LocalServer
// ---------------------------------------------------------------------------------------

#[test]
fn accept_async_takes_several_clients() {
    let _w = Watchdog::new(WATCHDOG);
    let (server, name) = listening("aa-several");
    runtime().block_on(async {
        // Clients connect from threads while the server waits.
        let clients: Vec<_> = (0..6u8)
            .map(|i| {
                let name = name.clone();
                thread::spawn(move || client(&name, i))
            })
            .collect();
        let mut tags = BTreeSet::new();
        for _ in 0..6 {
            tags.insert(tag_of(server.accept_async().await.unwrap()));
        }
        assert_eq!(tags, (0..6).collect());
        for c in clients {
            c.join().unwrap();
        }
        assert!(!server.has_pending_connections());
    });
}

#[test]
fn accept_async_waits_for_a_client_that_comes_later() {
    let _w = Watchdog::new(WATCHDOG);
    let (server, name) = listening("aa-later");
    runtime().block_on(async {
        let (go, ready) = mpsc::channel::<()>();
        let connector = thread::spawn(move || {
            ready.recv().unwrap();
            client(&name, 7)
        });
        let mut accept = pin!(server.accept_async());
        // Nobody there yet: the future waits (registered with the reactor).
        assert!(poll_once(accept.as_mut()).await.is_none());
        settle().await;
        assert!(poll_once(accept.as_mut()).await.is_none());
        go.send(()).unwrap();
        assert_eq!(tag_of(accept.await.unwrap()), 7);
        connector.join().unwrap();
    });
}

#[test]
fn incoming_async_serves_clients_and_its_futures_are_send() {
    let _w = Watchdog::new(WATCHDOG);
    let (server, name) = listening("aa-incoming");
    let server = Arc::new(server);
    runtime().block_on(async {
        // A task that owns (a share of) the server: the accept future must be Send.
        let acceptor = tokio::spawn({
            let server = Arc::clone(&server);
            async move {
                let mut incoming = server.incoming_async();
                let mut tags = BTreeSet::new();
                while let Some(socket) = incoming.next().await {
                    let mut socket = socket.unwrap();
                    let tag = tokio::task::spawn_blocking(move || {
                        let mut tag = [0];
                        socket.read_exact(&mut tag).unwrap();
                        socket.write_all(b"ok").unwrap();
                        tag[0]
                    })
                    .await
                    .unwrap();
                    tags.insert(tag);
                    if tags.len() == 5 {
                        break;
                    }
                }
                tags
            }
        });
        let clients: Vec<_> = (10..15u8)
            .map(|i| {
                let name = name.clone();
                thread::spawn(move || {
                    let mut socket = client(&name, i);
                    let mut reply = [0; 2];
                    socket.read_exact(&mut reply).unwrap();
                    assert_eq!(&reply, b"ok");
                })
            })
            .collect();
        assert_eq!(acceptor.await.unwrap(), (10..15).collect());
        for c in clients {
            c.join().unwrap();
        }
    });
}

/// CPU time this thread has used.
#[cfg(unix)]
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) }, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
#[cfg(unix)]
fn a_waiting_async_accept_uses_no_cpu() {
    let _w = Watchdog::new(WATCHDOG);
    let (server, name) = listening("aa-idle");
    runtime().block_on(async {
        let mut incoming = server.incoming_async();
        // One connection served, so the registration has seen the listener readable
        // once: its readiness must have been cleared, or the next wait spins.
        let c = client(&name, 1);
        assert_eq!(tag_of(incoming.next().await.unwrap().unwrap()), 1);
        let (wake, woken) = tokio::sync::oneshot::channel();
        let name2 = name.clone();
        let late = thread::spawn(move || {
            thread::sleep(Duration::from_millis(500));
            let c = client(&name2, 2);
            wake.send(()).unwrap();
            c
        });
        let before = thread_cpu_time();
        // The runtime runs on this thread: it must sleep until the client comes.
        let socket = incoming.next().await;
        let used = thread_cpu_time() - before;
        assert_eq!(tag_of(socket.unwrap().unwrap()), 2);
        assert!(used < Duration::from_millis(150), "waiting 500 ms took {used:?} of CPU");
        woken.await.unwrap();
        drop((c, late.join().unwrap()));
    });
}

#[test]
fn accept_async_runs_the_incoming_connection_hook() {
    let _w = Watchdog::new(WATCHDOG);
    let (mut server, name) = listening("aa-hook");
    // Qt's incomingConnection override: it reads a client's first tag byte, queues the
    // even clients and keeps the odd ones for itself.
    let seen = Arc::new(AtomicUsize::new(0));
    let (kept_tx, kept) = mpsc::channel();
    let kept_tx = std::sync::Mutex::new(kept_tx);
    server.set_incoming_connection_hook({
        let seen = Arc::clone(&seen);
        move |mut socket, pending| {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut tag = [0];
            socket.read_exact(&mut tag).unwrap();
            if tag[0] % 2 == 0 {
                pending.push(socket);
            } else {
                kept_tx.lock().unwrap().send((tag[0], socket)).unwrap();
            }
        }
    });
    runtime().block_on(async {
        // Each client sends its tag twice: once for the hook, once for the accepter. The
        // last to connect is even, so the hook has seen every client once it is queued.
        let connector = thread::spawn(move || {
            [1, 0, 3, 2, 5, 4u8]
                .into_iter()
                .map(|i| {
                    let mut c = client(&name, i);
                    c.write_all(&[i]).unwrap();
                    c
                })
                .collect::<Vec<_>>()
        });
        let mut queued = BTreeSet::new();
        for _ in 0..3 {
            queued.insert(tag_of(server.accept_async().await.unwrap()));
        }
        assert_eq!(queued, [0, 2, 4].into_iter().collect());
        // Every client went through the hook; the odd ones stayed with it.
        assert_eq!(seen.load(Ordering::SeqCst), 6);
        let kept: BTreeSet<u8> = kept.try_iter().map(|(t, _)| t).collect();
        assert_eq!(kept, [1, 3, 5].into_iter().collect());
        assert!(!server.has_pending_connections());
        drop(connector.join().unwrap());
    });
}

#[test]
fn two_accepts_wait_at_once() {
    let _w = Watchdog::new(WATCHDOG);
    let (server, name) = listening("aa-two");
    let server = Arc::new(server);
    runtime().block_on(async {
        // Two tasks registered with the reactor for one listener at the same time.
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let server = Arc::clone(&server);
                tokio::spawn(async move { server.accept_async().await.map(tag_of) })
            })
            .collect();
        settle().await;
        let connector = clients(&name, 0..2);
        let mut tags = BTreeSet::new();
        for t in tasks {
            tags.insert(t.await.unwrap().unwrap());
        }
        assert_eq!(tags, (0..2).collect());
        drop(connector.join().unwrap());
    });
}

#[test]
fn accept_async_waits_for_the_callbacks_acceptor_thread() {
    let _w = Watchdog::new(WATCHDOG);
    let (mut server, name) = listening("aa-callback");
    let announced = Arc::new(AtomicUsize::new(0));
    server.on_new_connection({
        let announced = Arc::clone(&announced);
        // Announces only; leaves the sockets in the queue for the async accept.
        move |_| {
            announced.fetch_add(1, Ordering::SeqCst);
        }
    });
    runtime().block_on(async {
        let connector = clients(&name, 0..3);
        let mut tags = BTreeSet::new();
        for _ in 0..3 {
            tags.insert(tag_of(server.accept_async().await.unwrap()));
        }
        assert_eq!(tags, (0..3).collect());
        connector.join().unwrap();
    });
    // The acceptor thread announces after it queued, so the async accepts may have taken
    // every socket before its first callback runs: wait for it (the watchdog bounds it).
    while announced.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
}

#[test]
fn accept_async_sees_a_push_from_another_thread() {
    let _w = Watchdog::new(WATCHDOG);
    let (server, _name) = listening("aa-push");
    let (other, other_name) = listening("aa-push-src");
    let pending = server.pending_connections();
    runtime().block_on(async {
        let mut accept = pin!(server.accept_async());
        assert!(poll_once(accept.as_mut()).await.is_none());
        // Qt's addPendingConnection from a worker thread: a socket from elsewhere.
        let pusher = thread::spawn(move || {
            let c = client(&other_name, 42);
            pending.push(other.accept().unwrap());
            c
        });
        assert_eq!(tag_of(accept.await.unwrap()), 42);
        pusher.join().unwrap();
    });
}

#[test]
fn accept_async_keeps_the_pending_limit() {
    let _w = Watchdog::new(WATCHDOG);
    let (mut server, name) = listening("aa-limit");
    server.set_max_pending_connections(2);
    let connector = clients(&name, 0..5);
    runtime().block_on(async {
        let mut tags = BTreeSet::new();
        tags.insert(tag_of(server.accept_async().await.unwrap()));
        // At most the limit was accepted into the queue; the rest wait in the backlog.
        assert!(server.pending_connections().len() <= 2);
        for _ in 1..5 {
            tags.insert(tag_of(server.accept_async().await.unwrap()));
            assert!(server.pending_connections().len() <= 2);
        }
        assert_eq!(tags, (0..5).collect());
    });
    drop(connector.join().unwrap());
}

#[test]
fn accept_async_and_incoming_async_need_a_listening_server() {
    let _w = Watchdog::new(WATCHDOG);
    let server = LocalServer::new();
    runtime().block_on(async {
        match server.accept_async().await {
            Err(Error::Socket(e)) => assert_eq!(e.kind(), LocalSocketError::Operation),
            other => panic!("expected an Operation error, got {other:?}"),
        }
        // Refused for the server's state: not recorded as its error (Qt 6).
        assert_eq!(server.server_error(), LocalSocketError::Unknown);
        assert!(server.incoming_async().next().await.is_none());
    });
}

#[test]
fn dropping_an_accept_future_loses_no_connection() {
    let _w = Watchdog::new(WATCHDOG);
    let (server, name) = listening("aa-cancel");
    runtime().block_on(async {
        // 1. Registered and waiting, then dropped; the client comes afterwards.
        assert!(poll_once(server.accept_async()).await.is_none());
        let c1 = client(&name, 1);
        assert_eq!(tag_of(server.accept_async().await.unwrap()), 1);

        // 2. Clients waiting in the backlog while a future is woken but dropped unpolled.
        let mut accept = Box::pin(server.accept_async());
        assert!(poll_once(accept.as_mut()).await.is_none());
        let c2 = clients(&name, 2..5);
        settle().await; // the reactor sees the listener readable and wakes the future
        drop(accept);
        let mut tags = BTreeSet::new();
        for _ in 0..3 {
            tags.insert(tag_of(server.accept_async().await.unwrap()));
        }
        assert_eq!(tags, (2..5).collect());

        // 3. One accept takes the whole backlog into the queue and returns one; the rest
        // stay queued for any kind of accept, sync or async. (A named pipe hands over one
        // client at a time: nothing piles up to be taken at once.)
        #[cfg(unix)]
        {
            let c3 = clients(&name, 5..8).join().unwrap();
            let first = tag_of(server.accept_async().await.unwrap());
            assert_eq!(server.pending_connections().len(), 2);
            let second = tag_of(server.try_accept().unwrap().expect("queued"));
            let third = tag_of(server.accept_async().await.unwrap());
            assert_eq!([first, second, third].into_iter().collect::<BTreeSet<_>>(), (5..8).collect());
            drop(c3);
        }
        drop((c1, c2.join().unwrap()));
    });
}

#[test]
fn aborted_accept_tasks_lose_no_connection() {
    let _w = Watchdog::new(WATCHDOG);
    let (server, name) = listening("aa-abort");
    let server = Arc::new(server);
    runtime().block_on(async {
        // Abort accept tasks at every point of their life: before their first poll,
        // waiting, woken, done. Each client must come out exactly once.
        let mut got = Vec::new();
        let mut clients = Vec::new();
        for round in 0..24u8 {
            let task = tokio::spawn({
                let server = Arc::clone(&server);
                async move { server.accept_async().await.map(tag_of) }
            });
            for _ in 0..round % 3 {
                tokio::task::yield_now().await;
            }
            clients.push(client(&name, 2 * round));
            clients.push(client(&name, 2 * round + 1));
            for _ in 0..(round / 3) % 4 {
                tokio::task::yield_now().await;
            }
            task.abort();
            match task.await {
                Ok(tag) => got.push(tag.unwrap()),
                Err(e) => assert!(e.is_cancelled(), "{e}"),
            }
            // What the task did not return is queued or waiting to be accepted.
            while got.len() < 2 * (round as usize + 1) {
                got.push(tag_of(server.accept().unwrap()));
            }
        }
        got.sort_unstable();
        assert_eq!(got, (0..48).collect::<Vec<u8>>());
        assert!(server.try_accept().unwrap().is_none(), "a client came out twice");
    });
}

#[test]
fn a_runtime_ends_with_an_accept_pending_and_the_server_open() {
    let _w = Watchdog::new(WATCHDOG);
    let (server, name) = listening("aa-rt-end");
    let server = Arc::new(server);
    {
        let runtime = runtime();
        runtime.block_on(async {
            let _pending = tokio::spawn({
                let server = Arc::clone(&server);
                async move { server.accept_async().await.map(tag_of) }
            });
            settle().await;
        });
        // Dropping the runtime cancels the task. On Windows a blocking wait was running
        // for it on the runtime's pool, which the runtime waits for: it must end too.
        drop(runtime);
    }
    // The server still serves, blocking or async.
    let c = client(&name, 9);
    assert_eq!(tag_of(server.accept().unwrap()), 9);
    let c2 = client(&name, 10);
    assert_eq!(runtime().block_on(async { server.accept_async().await.map(tag_of) }).unwrap(), 10);
    drop((c, c2));
}

// ---------------------------------------------------------------------------------------
// SingleInstance
// ---------------------------------------------------------------------------------------

fn instance(dir: &TempDir, args: &[&str]) -> SingleInstance {
    SingleInstance::new("org.solo-instance.TokioTest")
        .unwrap()
        .directory(dir.path().join("run"))
        .argv(std::iter::once("app").chain(args.iter().copied()))
}

fn primary(dir: &TempDir) -> solo_instance::Primary {
    match instance(dir, &[]).start().unwrap() {
        Start::Primary(p) => p,
        Start::Forwarded(r) => panic!("expected to be the primary, was forwarded: {r:?}"),
    }
}

/// Launches `app FILE` from a thread; its reply's stdout.
fn launch(dir: &TempDir, file: &str) -> thread::JoinHandle<String> {
    let launch = instance(dir, &[file]);
    thread::spawn(move || launch.send().map(|r| r.stdout().to_owned()).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn recv_async_serves_launches_from_threads() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("tk-recv");
    let mut primary = primary(&dir);
    let launches: Vec<_> = (0..5).map(|i| launch(&dir, &format!("f{i}.txt"))).collect();
    runtime().block_on(async {
        for _ in 0..5 {
            let request = primary.recv_async().await.expect("a request");
            let file = request.args()[0].to_string_lossy().into_owned();
            request.reply_async(Reply::ok().with_stdout(format!("opened {file}"))).await.unwrap();
        }
    });
    let replies: BTreeSet<String> = launches.into_iter().map(|l| l.join().unwrap()).collect();
    assert_eq!(replies, (0..5).map(|i| format!("opened f{i}.txt")).collect());
}

#[test]
fn a_task_owns_the_primary_until_a_stopper_stops_it() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("tk-task");
    let mut primary = primary(&dir);
    let stopper = primary.stopper();
    let woken = Arc::new(AtomicUsize::new(0));
    primary.set_waker({
        let woken = Arc::clone(&woken);
        move || {
            woken.fetch_add(1, Ordering::SeqCst);
        }
    });
    runtime().block_on(async {
        // The future holds `&mut Primary` across awaits: it must be Send to be spawned.
        let served = tokio::spawn(async move {
            let mut files = Vec::new();
            while let Ok(request) = primary.recv_async().await {
                files.push(request.args()[0].to_string_lossy().into_owned());
                request.reply(Reply::ok()).unwrap(); // one short line: fine from async code
            }
            files
        });
        // Launches are blocking calls: run them off the runtime's thread.
        let a = tokio::task::spawn_blocking({
            let a = launch(&dir, "a.txt");
            move || a.join().unwrap()
        });
        a.await.unwrap();
        let b = tokio::task::spawn_blocking({
            let b = launch(&dir, "b.txt");
            move || b.join().unwrap()
        });
        b.await.unwrap();
        // A GUI's quit action, from another thread: the stream ends.
        thread::spawn(move || stopper.stop()).join().unwrap();
        assert_eq!(served.await.unwrap(), ["a.txt", "b.txt"]);
    });
    // The waker set beside recv_async still fired for each request.
    assert_eq!(woken.load(Ordering::SeqCst), 2);
}

#[test]
fn stopper_wakes_a_waiting_recv_async() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("tk-stop");
    let mut primary = primary(&dir);
    let stopper = primary.stopper();
    runtime().block_on(async {
        let mut recv = pin!(primary.recv_async());
        assert!(poll_once(recv.as_mut()).await.is_none(), "no launch yet");
        let stopping = thread::spawn(move || stopper.stop());
        assert_eq!(recv.await.err(), Some(solo_instance::RecvError));
        stopping.join().unwrap();
    });
    // Stopped stays stopped.
    runtime()
        .block_on(async { assert_eq!(primary.recv_async().await.err(), Some(solo_instance::RecvError)) });
}

#[test]
fn a_dropped_recv_async_takes_no_request() {
    let _w = Watchdog::new(WATCHDOG);
    let dir = TempDir::new("tk-cancel");
    let mut primary = primary(&dir);
    let (queued_tx, queued) = mpsc::channel();
    let queued_tx = std::sync::Mutex::new(queued_tx);
    primary.set_waker(move || {
        let _ = queued_tx.lock().unwrap().send(());
    });
    runtime().block_on(async {
        // Waiting, then woken by the request, then dropped without being polled again.
        let mut recv = Box::pin(primary.recv_async());
        assert!(poll_once(recv.as_mut()).await.is_none());
        let a = launch(&dir, "a.txt");
        queued.recv().unwrap(); // blocking is fine: the primary's readers are threads
        drop(recv);
        let request = primary.recv_async().await.expect("the request is still there");
        assert_eq!(request.args()[0], "a.txt");
        request.reply(Reply::ok().with_stdout("ok")).unwrap();
        assert_eq!(a.join().unwrap(), "ok");
    });
}
