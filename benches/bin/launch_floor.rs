//! The floor for a secondary launch: what `solo send` does, with std alone and nothing on
//! top. It builds the request as the crate does (`getcwd`, `getpid`; the same fields),
//! connects, writes the line, reads the reply line and prints `FORWARDED <reply json>` as
//! `solo send` prints it. `benches/compare.sh` times `solo send` against it;
//! `benches/counts.sh` counts both.
//!
//! `launch_floor SOCKET_PATH [ARGS...]`: forwards its own name and ARGS.

#[cfg(unix)]
#[path = "floor_request.rs"]
mod floor_request;

#[cfg(not(unix))]
fn main() {}

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;

    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let path = args.next().expect("usage: launch_floor SOCKET_PATH [ARGS...]");
    let argv: Vec<_> = std::iter::once(argv0).chain(args).collect();
    let request = floor_request::request_line(&argv);
    let mut s = UnixStream::connect(path).expect("connect");
    s.write_all(request.as_bytes()).expect("write");
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("read");
    let reply = line.trim_end_matches('\n');
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "FORWARDED {reply}");
    let _ = out.flush();
    if reply.contains("\"ok\":true") {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}
