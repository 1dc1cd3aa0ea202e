//! A line-echo server and client with the same command line as Qt's peer
//! (`tests/qt/qt_peer.cpp`), so either side can be Qt or Rust.
//!
//! ```text
//! echo server NAME [N] [user|group|other|world]   echo lines as "echo:<line>"; exit after N closed
//! echo client NAME MESSAGE                        send MESSAGE, print the reply line
//! echo bench-server NAME                          serve rtt and stream clients until killed
//! echo rtt NAME N                                 N x (connect, 1 byte each way, close)
//! echo stream NAME MIB                            send MIB MiB in 64 KiB writes
//! ```
//! Failures print `ERROR <Qt error code> <Qt error text>` and exit 1; so does a NAME or
//! MESSAGE that is not UTF-8 (`ERROR 2 ...: Name error` / `Invalid name` for a name, as an
//! unusable name is; `ERROR -1 ...` for a message).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

use solo_instance::{Error, LocalServer, LocalSocket, SocketOptions};

fn main() -> ExitCode {
    // `args_os`: a name or message that is not UTF-8 is an error line, not a panic.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let args = match args.iter().map(|a| a.to_str().ok_or(a)).collect::<Result<Vec<&str>, _>>() {
        Ok(args) => args,
        Err(bad) => {
            return not_utf8(args.first().and_then(|c| c.to_str()), args.iter().position(|a| a == bad))
        }
    };
    let result = match args.as_slice() {
        ["server", name, rest @ ..] if rest.len() <= 2 => {
            let n = rest.first().map_or(Some(1), |n| n.parse().ok());
            let access = match rest.get(1).copied() {
                None => Some(SocketOptions::empty()),
                Some("user") => Some(SocketOptions::USER_ACCESS),
                Some("group") => Some(SocketOptions::GROUP_ACCESS),
                Some("other") => Some(SocketOptions::OTHER_ACCESS),
                Some("world") => Some(SocketOptions::WORLD_ACCESS),
                Some(_) => None,
            };
            match (n, access) {
                (Some(n), Some(access)) => server(name, n, access),
                _ => return usage(),
            }
        }
        ["client", name, message] => client(name, message),
        ["bench-server", name] => bench_server(name),
        ["rtt", name, n] => match n.parse() {
            Ok(n) if n > 0 => rtt(name, n),
            _ => return usage(),
        },
        ["stream", name, mib] => match mib.parse() {
            Ok(mib) if mib > 0 => stream(name, mib),
            _ => return usage(),
        },
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.socket_error().map_or(-1, |k| k.code());
            // Qt's errorString (the crate's `Display` adds the path tried).
            match &e {
                Error::Socket(socket) => say(&format!("ERROR {code} {}", socket.message())),
                e => say(&format!("ERROR {code} {e}")),
            }
            ExitCode::from(1)
        }
    }
}

/// An argument that is not UTF-8 (`index` 1 is NAME): the name error Qt's code and text
/// give a name nothing can listen on or connect to, or for another argument an error line.
fn not_utf8(command: Option<&str>, index: Option<usize>) -> ExitCode {
    let line = match (command, index) {
        (Some("server" | "bench-server"), Some(1)) => "ERROR 2 QLocalServer::listen: Name error".to_owned(),
        (Some("client" | "rtt" | "stream"), Some(1)) => {
            "ERROR 2 QLocalSocket::connectToServer: Invalid name".to_owned()
        }
        (Some(_), Some(i)) => format!("ERROR -1 echo: argument {i} is not UTF-8"),
        _ => "ERROR -1 echo: the command is not UTF-8".to_owned(),
    };
    say(&line);
    ExitCode::from(1)
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: echo server NAME [N] [user|group|other|world] | client NAME MESSAGE | \
         bench-server NAME | rtt NAME N | stream NAME MIB"
    );
    ExitCode::from(2)
}

/// Prints one line and flushes it: scripts read these as they come.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn listen(name: &str, options: SocketOptions) -> Result<LocalServer, Error> {
    let mut server = LocalServer::new();
    server.set_socket_options(options);
    server.listen(name)?;
    Ok(server)
}

fn server(name: &str, limit: usize, options: SocketOptions) -> Result<(), Error> {
    let mut server = listen(name, options)?;
    say(&format!("LISTENING {}", server.full_server_name().unwrap().display()));
    // Qt's newConnection as a callback: each connection is served on a thread of its own,
    // which reports when its client has gone.
    let (closed_tx, closed_rx) = mpsc::channel();
    server.on_new_connection(move |pending| {
        while let Some(socket) = pending.next_pending_connection() {
            let closed = closed_tx.clone();
            std::thread::spawn(move || {
                echo_lines(&socket);
                let _ = closed.send(());
            });
        }
    });
    for _ in 0..limit {
        if closed_rx.recv().is_err() {
            break;
        }
    }
    Ok(())
}

/// Answers each complete line with `echo:<line>` until the client closes.
fn echo_lines(socket: &LocalSocket) {
    let mut reader = BufReader::new(socket);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        if line.ends_with(b"\n") {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&line);
            if (&*socket).write_all(&reply).is_err() {
                return;
            }
            line.clear();
        }
    }
}

fn client(name: &str, message: &str) -> Result<(), Error> {
    let mut socket = LocalSocket::connect(name)?;
    socket.write_all(format!("{message}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&socket).read_line(&mut reply)?;
    print!("{reply}");
    std::io::stdout().flush()?;
    Ok(())
}

fn bench_server(name: &str) -> Result<(), Error> {
    let server = listen(name, SocketOptions::empty())?;
    say(&format!("LISTENING {}", server.full_server_name().unwrap().display()));
    for socket in server.incoming() {
        let mut socket = socket?;
        let mut first = [0u8; 1];
        if socket.read_exact(&mut first).is_err() {
            continue;
        }
        match first[0] {
            // Round-trip probe: answered here, on the accepting thread, as Qt's event loop does.
            b'x' => {
                let _ = socket.write_all(b"x");
            }
            // Stream: read on a thread of its own until the data ends with a newline.
            b's' => {
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        match socket.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) if buf[n - 1] == b'\n' => {
                                let _ = socket.write_all(b"done\n");
                                return;
                            }
                            Ok(_) => {}
                        }
                    }
                });
            }
            _ => {}
        }
    }
    Ok(())
}

fn rtt(name: &str, n: u32) -> Result<(), Error> {
    let start = Instant::now();
    for _ in 0..n {
        let mut socket = LocalSocket::connect(name)?;
        socket.write_all(b"x")?;
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte)?;
    }
    say(&format!("rtt_us {:.3}", start.elapsed().as_secs_f64() * 1e6 / n as f64));
    Ok(())
}

fn stream(name: &str, mib: u64) -> Result<(), Error> {
    let mut socket = LocalSocket::connect(name)?;
    let mut chunk = vec![b'a'; 64 * 1024];
    let start = Instant::now();
    socket.write_all(b"s")?;
    let chunks = mib * 16;
    for i in 0..chunks {
        if i == chunks - 1 {
            *chunk.last_mut().unwrap() = b'\n';
        }
        socket.write_all(&chunk)?;
    }
    let mut reply = String::new();
    BufReader::new(&socket).read_line(&mut reply)?;
    say(&format!("mib_per_s {:.3}", mib as f64 / start.elapsed().as_secs_f64()));
    Ok(())
}
