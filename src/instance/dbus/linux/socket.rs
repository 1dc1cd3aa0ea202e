//! The bus connection's socket (ours, not zbus's): read through a filter that cuts off a
//! message over the limit as it is read, and shut down to cut off a frozen bus.

use super::*;

/// The bus connection's socket, on async-io (as zbus's own), with three differences: its
/// close does not go through zbus's `blocking` thread pool (whose thread, once started,
/// wakes twice a second for good), it passes no file descriptors (none of our methods
/// takes any), and its read side cuts off message bodies over the limit (`Filter`).
#[derive(Debug)]
pub(super) struct BusSocket {
    pub(super) io: Arc<Async<UnixStream>>,
    pub(super) limit: usize,
}

impl zbus::connection::socket::Socket for BusSocket {
    type ReadHalf = BusRead;
    type WriteHalf = BusWrite;

    fn split(self) -> Split<BusRead, BusWrite> {
        Split::new(
            // Never below 64 KiB, for the bus' own messages (a call's exact limit is
            // `Limited`'s).
            BusRead { io: Arc::clone(&self.io), filter: Filter::new(self.limit.max(64 << 10)) },
            BusWrite { io: self.io },
        )
    }
}

#[derive(Debug)]
pub(super) struct BusRead {
    pub(super) io: Arc<Async<UnixStream>>,
    pub(super) filter: Filter,
}

#[async_trait::async_trait]
impl ReadHalf for BusRead {
    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        loop {
            let n = self.filter.emit(buf);
            if n > 0 || buf.is_empty() {
                return Ok((n, Vec::new()));
            }
            let BusRead { io, filter } = self;
            let read = io.read_with(|s| (&*s).read(&mut filter.input)).await?;
            if read == 0 {
                return Ok((0, Vec::new()));
            }
            filter.feed(read);
        }
    }
}

#[derive(Debug)]
pub(super) struct BusWrite {
    pub(super) io: Arc<Async<UnixStream>>,
}

#[async_trait::async_trait]
impl WriteHalf for BusWrite {
    async fn sendmsg(&mut self, buffer: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        if !fds.is_empty() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "no file descriptors on this connection"));
        }
        // MSG_NOSIGNAL: a bus that went away is an error, not a SIGPIPE.
        self.io
            .write_with(|s| {
                rustix::net::send(s, buffer, rustix::net::SendFlags::NOSIGNAL).map_err(io::Error::from)
            })
            .await
    }

    async fn close(&mut self) -> io::Result<()> {
        match self.io.get_ref().shutdown(std::net::Shutdown::Both) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        }
    }
}

/// What zbus reads from the bus, with each message body over the limit cut off as it
/// arrives: the message reaches zbus with its header (body length 0) and no body, and
/// [`Limited`] refuses it. So a call of any size costs at most the limit in memory,
/// where zbus would read up to 128 MiB whole. The authentication lines before the first
/// message pass as they are.
#[derive(Debug)]
pub(super) struct Filter {
    limit: usize,
    /// What the last read brought.
    input: Box<[u8]>,
    /// What zbus reads next, from `out[pos..]`.
    out: Vec<u8>,
    pos: usize,
    state: State,
}

#[derive(Debug)]
pub(super) enum State {
    /// Authentication lines; `true` at the start of one.
    Auth(bool),
    /// The 16 bytes of a message's fixed header, so far.
    Header(Vec<u8>),
    /// Passing `0` bytes, then dropping `1`.
    Pass(usize, usize),
    /// Dropping this many bytes.
    Skip(usize),
    /// Not D-Bus framing: passed as it is, for zbus to refuse.
    Raw,
}

impl Filter {
    fn new(limit: usize) -> Filter {
        Filter {
            limit,
            input: vec![0; 16 * 1024].into_boxed_slice(),
            out: Vec::new(),
            pos: 0,
            state: State::Auth(true),
        }
    }

    /// Copies what is ready into `buf`.
    fn emit(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
        }
        n
    }

    /// Takes `input[..n]`.
    fn feed(&mut self, n: usize) {
        let input = std::mem::take(&mut self.input);
        let mut data = &input[..n];
        while !data.is_empty() {
            match &mut self.state {
                State::Auth(line_start) => {
                    // The server's lines are OK, REJECTED, DATA, ERROR, AGREE_UNIX_FD; a
                    // message starts with its byte order, `l` or `B`.
                    if *line_start && matches!(data[0], b'l' | b'B') {
                        self.state = State::Header(Vec::with_capacity(16));
                        continue;
                    }
                    let end = data.iter().position(|&b| b == b'\n').map_or(data.len(), |p| p + 1);
                    self.out.extend_from_slice(&data[..end]);
                    *line_start = data[end - 1] == b'\n';
                    data = &data[end..];
                }
                State::Header(h) => {
                    let take = (16 - h.len()).min(data.len());
                    h.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if h.len() == 16 {
                        let h = std::mem::take(h);
                        self.state = self.header(h);
                    }
                }
                State::Pass(left, then) => {
                    let take = (*left).min(data.len());
                    self.out.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    *left -= take;
                    if *left == 0 {
                        self.state = match *then {
                            0 => State::Header(Vec::with_capacity(16)),
                            skip => State::Skip(skip),
                        };
                    }
                }
                State::Skip(left) => {
                    let take = (*left).min(data.len());
                    data = &data[take..];
                    *left -= take;
                    if *left == 0 {
                        self.state = State::Header(Vec::with_capacity(16));
                    }
                }
                State::Raw => {
                    self.out.extend_from_slice(data);
                    data = &[];
                }
            }
        }
        self.input = input;
    }

    /// A message's fixed header: passed on, with a body over the limit cut off.
    fn header(&mut self, mut h: Vec<u8>) -> State {
        let little = match h[0] {
            b'l' => true,
            b'B' => false,
            _ => {
                self.out.extend_from_slice(&h);
                return State::Raw;
            }
        };
        let word = |h: &[u8], at: usize| {
            let b = [h[at], h[at + 1], h[at + 2], h[at + 3]];
            (if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }) as usize
        };
        let (body, fields) = (word(&h, 4), word(&h, 12));
        // The header fields, padded to 8 bytes, then the body.
        let header = 16 + fields;
        let rest = fields + (8 - header % 8) % 8;
        let skip = if body > self.limit {
            h[4..8].copy_from_slice(&[0; 4]);
            body
        } else {
            0
        };
        self.out.extend_from_slice(&h);
        let pass = if skip == 0 { rest + body } else { rest };
        match (pass, skip) {
            (0, 0) => State::Header(Vec::with_capacity(16)),
            (0, skip) => State::Skip(skip),
            (pass, skip) => State::Pass(pass, skip),
        }
    }
}
