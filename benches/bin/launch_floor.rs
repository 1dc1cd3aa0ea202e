//! The floor for a secondary launch: a minimal program that connects to a primary's
//! socket, writes one request line and reads the reply line — what `solo send` does,
//! without the library. `benches/compare.sh` times `solo send` against it.
//!
//! `launch_floor SOCKET_PATH`

#[cfg(not(unix))]
fn main() {}

#[cfg(unix)]
fn main() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;

    let path = std::env::args_os().nth(1).expect("usage: launch_floor SOCKET_PATH");
    let mut s = UnixStream::connect(path).expect("connect");
    s.write_all(b"{\"v\":1,\"argv\":[\"floor\",\"x\"],\"cwd\":\"/\",\"env\":{},\"pid\":1,\"data\":null}\n")
        .expect("write");
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("read");
    assert!(line.contains("\"ok\":true"), "{line}");
}
