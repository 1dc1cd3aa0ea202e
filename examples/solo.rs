//! The SingleInstance front end for shells and debugging.
//!
//! ```text
//! solo run APP_ID [--count N] [--timeout SECS] [--replace] [--] [ARGS...]
//!     primary: print "PRIMARY <socket path>", then each forwarded request's JSON line as
//!     received, replying ok; exit 0 after N requests, or on SIGINT/SIGTERM, with socket
//!     and lock cleaned up; exit 1, saying why on stderr, if it stopped being the primary
//!     (its files removed, and another process became the primary). Otherwise forward
//!     ARGS, print "FORWARDED <reply json>" and exit with the reply's exit code.
//!     The primary acts on three words in a request's args, on a thread per request:
//!     `--sleep-ms N` waits N ms before replying; `--progress K` writes "progress i/K"
//!     (i = 1..K, one line every 200 ms) to the launch's stdout; `--cat` writes the
//!     launch's stdin back to its stdout, byte for byte; then it replies.
//!     `--replace`: a running primary is asked to hand over: it prints "REPLACED",
//!     releases and exits 0, and this launch prints "PRIMARY <socket path>" and serves (a
//!     primary whose replacer gave up before it answered serves on).
//!     Built with the `dbus` feature, the primary also answers org.freedesktop.Application
//!     on the session bus (the name APP_ID) and prints one line per call, once handled:
//!     "DBUS <Method> <json>" (`Origin::to_json`), then answers it; stderr says
//!     "solo: dbus: <status>".
//! solo send APP_ID [--timeout SECS] [--wait] [--stdin] [--] [ARGS...]
//!     forward only; with no primary running, say so and exit 3. The primary's output for
//!     this launch is written to stdout/stderr as it arrives, then "FORWARDED <reply json>".
//!     Without `--wait`, no reply within the timeout (default 3 s) is an error; `--wait`
//!     waits for the reply, once the request is taken, as long as the primary lives (one
//!     that dies ends the wait with an error, exit 1). `--stdin` forwards stdin to its end.
//! solo status APP_ID
//!     "RUNNING <pid> <socket path>" (exit 0) or "STOPPED <socket path>" (exit 1); and on
//!     stderr "solo: lock file <path>".
//! ```
//! Errors go to stderr as "solo: <message>" with exit code 1 (2 for usage).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use solo_instance::{Error, Health, Primary, Reply, Request, SingleInstance, Start};

/// `solo send`'s default timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Opts {
    count: Option<u64>,
    timeout: Option<Duration>,
    wait: bool,
    stdin: bool,
    replace: bool,
    args: Vec<OsString>,
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_else(|| "solo".into());
    let rest: Vec<OsString> = argv.collect();
    let (Some(cmd), Some(app_id)) =
        (rest.first().and_then(|c| c.to_str()), rest.get(1).and_then(|a| a.to_str()))
    else {
        return usage();
    };
    let Some(opts) = parse_opts(&rest[2..], cmd) else { return usage() };
    let instance = match SingleInstance::new(app_id) {
        Ok(i) => i,
        Err(e) => return fail(&e),
    };
    let mut instance = instance.argv(std::iter::once(argv0).chain(opts.args));
    if let Some(t) = opts.timeout.or((cmd == "send").then_some(SEND_TIMEOUT)) {
        instance = instance.timeout(t);
    }
    let instance = instance.wait_for_reply(opts.wait).forward_stdin(opts.stdin).replace(opts.replace);
    match cmd {
        "run" => run(instance, opts.count),
        "send" => match instance.send() {
            Ok(reply) => forwarded(&reply),
            Err(Error::NoPrimary) => {
                eprintln!("solo: no primary instance of {app_id} is running");
                ExitCode::from(3)
            }
            Err(e) => fail(&e),
        },
        "status" if opts.count.is_none() => match instance.status() {
            Ok(s) => {
                // The lock file, for a person: on stderr, so the line scripts read stays.
                eprintln!("solo: lock file {}", s.lock.display());
                match (s.running, s.pid) {
                    (true, pid) => {
                        let pid = pid.map_or("?".to_owned(), |p| p.to_string());
                        say(&format!("RUNNING {pid} {}", s.socket.display()));
                        ExitCode::SUCCESS
                    }
                    (false, _) => {
                        say(&format!("STOPPED {}", s.socket.display()));
                        ExitCode::from(1)
                    }
                }
            }
            Err(e) => fail(&e),
        },
        _ => usage(),
    }
}

fn parse_opts(args: &[OsString], cmd: &str) -> Option<Opts> {
    let mut opts = Opts::default();
    let mut i = 0;
    while i < args.len() {
        match args[i].to_str() {
            Some("--count") if cmd == "run" => opts.count = Some(args.get(i + 1)?.to_str()?.parse().ok()?),
            Some("--timeout") => {
                let secs: f64 = args.get(i + 1)?.to_str()?.parse().ok()?;
                opts.timeout = Some(Duration::try_from_secs_f64(secs).ok()?);
            }
            Some("--replace") if cmd == "run" => {
                opts.replace = true;
                i += 1;
                continue;
            }
            Some(flag @ ("--wait" | "--stdin")) if cmd == "send" => {
                *(if flag == "--wait" { &mut opts.wait } else { &mut opts.stdin }) = true;
                i += 1;
                continue;
            }
            Some("--") => {
                i += 1;
                break;
            }
            _ => break,
        }
        i += 2;
    }
    opts.args = args[i.min(args.len())..].to_vec();
    Some(opts)
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: solo run APP_ID [--count N] [--timeout SECS] [--replace] [--] [ARGS...]\n       \
         solo send APP_ID [--timeout SECS] [--wait] [--stdin] [--] [ARGS...]\n       \
         solo status APP_ID"
    );
    ExitCode::from(2)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("solo: {e}");
    ExitCode::from(1)
}

fn forwarded(reply: &Reply) -> ExitCode {
    say(&format!("FORWARDED {}", reply.encode()));
    reply.process_exit_code()
}

fn run(instance: SingleInstance, count: Option<u64>) -> ExitCode {
    // Until this process is the primary (while a launch waits for a hung primary, say), a
    // signal ends it at once, as it would any program.
    match instance.start() {
        Ok(Start::Primary(primary)) => serve(primary, count),
        Ok(Start::Forwarded(reply)) => forwarded(&reply),
        Err(e) => fail(&e),
    }
}

fn serve(primary: Primary, count: Option<u64>) -> ExitCode {
    #[cfg(feature = "dbus")]
    eprintln!("solo: dbus: {}", primary.dbus_status());
    // A primary that serves takes SIGINT and SIGTERM on a thread of ours (sigwait) and shuts
    // down cleanly. They are blocked in this thread first, so every thread started from
    // now on inherits the mask (the crate's own threads block them anyway). One that serves
    // nothing (`--count 0`) needs no such thread.
    if count != Some(0) {
        let stopper = primary.stopper();
        let signals = signals::block();
        signals::on_signal(signals, move |_| stopper.stop());
    }
    say(&format!("PRIMARY {}", primary.socket_path().display()));
    if count == Some(0) {
        return ExitCode::SUCCESS;
    }
    let mut workers = Vec::new();
    let mut replaced = false;
    for (served, request) in (1..).zip(primary.requests()) {
        if request.is_replace() {
            // Hand over: the launches this one works for are answered first.
            workers.drain(..).for_each(|w: std::thread::JoinHandle<()>| drop(w.join()));
            // A replacer that gave up meanwhile takes nothing over: serve on.
            if !request.accept_replace().is_ok_and(|d| d.is_delivered()) {
                continue;
            }
            say("REPLACED");
            replaced = true;
            break;
        }
        match request.origin().dbus_method() {
            Some(method) => say(&format!("DBUS {method} {}", request.raw_json())),
            None => say(request.raw_json()),
        }
        workers.retain(|w| !w.is_finished());
        workers.push(std::thread::spawn(move || work(request)));
        if count.is_some_and(|n| served >= n) {
            break;
        }
    }
    workers.into_iter().for_each(|w| drop(w.join()));
    if replaced {
        // Released: the launch that asked becomes the primary.
        drop(primary);
        return ExitCode::SUCCESS;
    }
    // Its files were removed under it and another process is the primary now: the
    // requests ended without a stop.
    if let Health::SteppedDown(why) = primary.health() {
        eprintln!("solo: {why}");
        return ExitCode::from(1);
    }
    // Dropping the primary removes the socket, then frees the lock.
    drop(primary);
    ExitCode::SUCCESS
}

/// The demo app's work for a request: its `--sleep-ms N`, `--progress K` and `--cat`
/// words, in order; then the reply.
fn work(request: Request) {
    let args: Vec<String> = request.args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut out = request.stdout().blocking(true);
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let number = |w: Option<&String>| w.and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        match word.as_str() {
            "--sleep-ms" => std::thread::sleep(Duration::from_millis(number(words.next()))),
            "--progress" => {
                let k = number(words.next());
                for i in 1..=k {
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = writeln!(out, "progress {i}/{k}");
                }
            }
            "--cat" => {
                if let Err(e) = std::io::copy(&mut request.stdin(), &mut out) {
                    let _ = request.reply(Reply::error(format!("--cat: {e}")));
                    return;
                }
            }
            _ => {}
        }
    }
    if let Err(e) = request.reply(Reply::ok()) {
        eprintln!("solo: could not answer a launch: {e}");
    }
}

#[cfg(unix)]
mod signals {
    pub type Set = libc::sigset_t;

    pub fn block() -> Set {
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        }
    }

    /// Runs `action` with each signal of `set`, on a thread of its own.
    pub fn on_signal(set: Set, action: impl Fn(i32) + Send + 'static) {
        std::thread::spawn(move || loop {
            let mut sig = 0;
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                action(sig);
            }
        });
    }
}

#[cfg(not(unix))]
mod signals {
    /// No signals to block; a unit struct rather than `()` keeps clippy's `let_unit_value` quiet.
    #[derive(Clone, Copy)]
    pub struct Set;
    pub fn block() -> Set {
        Set
    }
    pub fn on_signal(_: Set, _action: impl Fn(i32) + Send + 'static) {}
}
