//! Run a desktop app as **one instance**, and Qt's **`QLocalServer`** for Rust.
//!
//! The first launch of an app becomes the *primary*. Every later launch hands its
//! arguments, working directory, activation token and custom data to the primary, waits
//! for its answer, and exits with it: "open with" on a running editor opens the file in
//! its window. Underneath is a port of Qt's `QLocalServer` (and the client half of
//! `QLocalSocket`), name- and wire-compatible with Qt 5 and Qt 6, so a Qt program and a
//! Rust program reach each other by the same server name.
//!
//! # Which layer to use
//!
//! - Use [`SingleInstance`] when an app must run once (per user, per login session, or
//!   per machine: [`Scope`]) and later launches must reach it. It decides who is the
//!   primary with a lock, so a crashed primary is replaced at once, and it gives the
//!   primary each launch as a [`Request`] to answer with a [`Reply`].
//! - Use [`LocalServer`] and [`LocalSocket`] for your own protocol over a local socket
//!   (a Unix domain socket, a named pipe on Windows), or to talk to a Qt program that
//!   uses `QLocalServer`/`QLocalSocket`: same names, same paths, same access options,
//!   Qt's error codes and texts.
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! use solo_instance::{Reply, SingleInstance, Start};
//!
//! fn main() -> Result<ExitCode, solo_instance::Error> {
//!     match SingleInstance::new("org.example.Editor")?.start()? {
//!         Start::Primary(primary) => {
//!             for request in primary.requests() {
//!                 println!("open {:?} (from {:?})", request.args(), request.cwd());
//!                 request.reply(Reply::ok())?; // a launch that went away is no error
//!             }
//!             Ok(ExitCode::SUCCESS)
//!         }
//!         // Another instance runs and got our arguments: print its answer, exit with its
//!         // code. A refusal (`Reply::error`) is `Err(Error::Rejected)` from `start()?`.
//!         Start::Forwarded(reply) => Ok(reply.finish()),
//!     }
//! }
//! ```
//!
//! A primary hands requests over in the way a GUI loop needs: the blocking
//! [`Primary::requests`] iterator, [`Primary::try_recv`] polling, [`Primary::recv_timeout`],
//! a callback ([`Primary::on_request`]), [`Primary::set_waker`] to wake an event loop (winit's
//! `EventLoopProxy`, egui's `request_repaint`) when a request is ready, and with the `tokio`
//! feature `Primary::recv_async`. As `std::sync::mpsc`'s, the receive calls say why no
//! request came: [`TryRecvError::Empty`], [`RecvTimeoutError::Timeout`], or stopped
//! ([`RecvError`]: a [`Stopper`] stopped the primary, or it [stepped down](Health)).
//!
//! A launch can also be a remote command line: the primary writes to its terminal while it
//! works ([`Request::stdout`], [`Request::stderr`]) and reads its stdin
//! ([`SingleInstance::forward_stdin`], [`Request::stdin`]); the launch waits for the reply
//! past its timeout for as long as the primary lives ([`SingleInstance::wait_for_reply`],
//! an editor's `--wait`), or asks the primary to hand over ([`SingleInstance::replace`],
//! [`SingleInstance::wait_for_exit`] for an updater).
//!
//! # Guarantees
//!
//! Each is tested with real processes and sockets in the repository's `tests/`:
//!
//! 1. **One primary** per app id and scope, however many launches start at once: an
//!    exclusive lock (`flock`, `LockFileEx`) decides, never the socket.
//! 2. **No lost launch**: a launch becomes the primary or gets the primary's reply; one
//!    whose primary dies or shuts down mid-handoff starts over, and may become primary.
//! 3. **Crash recovery**: after `kill -9` of the primary the next launch is primary at
//!    once. A socket is removed only by the lock's holder, and only once nothing answers
//!    on it, so a live primary's socket is never removed.
//! 4. **Private by default**: the socket (or pipe) is the user's alone, and both ends check
//!    the peer's user (uid, or SID on Windows) before a byte of a request is written or read.
//! 5. **Bad input never hurts the primary**: malformed JSON, oversized messages, silent or
//!    slow clients and floods get a clear error or a deadline, with memory bounded.
//! 6. **Lossless**: argv and cwd arrive byte for byte, non-UTF-8 included.
//! 7. **Activation**: the launch's `XDG_ACTIVATION_TOKEN` / `DESKTOP_STARTUP_ID` reach the
//!    primary ([`Request::activation_token`]); on Windows the launch hands the primary
//!    its right to take the foreground (`AllowSetForegroundWindow`).
//! 8. **Clear failure**: a primary that holds the lock but does not answer makes the
//!    launch fail with [`Error::NoReply`] within its timeout.
//!
//! Delivery is at least once: a launch that gave up ([`Error::NoReply`]) may still be
//! acted on by a busy primary; [`Request::is_abandoned`] tells. A reply to a launch that
//! went away is `Ok(`[`Delivery::Abandoned`]`)`, never an error, so `?` on it is safe.
//!
//! # Security
//!
//! - Launches are untrusted input to the primary. A request's [`pid`](Request::pid) is
//!   what the launch claims; [`Request::peer_credentials`] is what the OS says.
//! - Per-user scopes refuse a directory another user owns or may write to
//!   ([`Error::Insecure`]). On Windows the primary's pipe has a random name, published in
//!   the user's directory, so no one can take the name first; a pipe of another user, or
//!   of a less trusted process of the same user, is never sent a byte.
//! - [`Scope::System`] is shared with every local user by design: any of them may be its
//!   primary and read the launches' arguments. Use it only for data all users may see.
//! - Trust between users, in the System scope: a primary of another user reads all a
//!   launch sends, sets its exit code and whether it fails, and decides when to answer
//!   within the launch's timeout; it chooses the text the launch prints but not what the
//!   terminal does with it. The launch knows from the OS who serves it
//!   ([`Reply::is_from_another_user`]), and defuses such a primary's texts on receipt:
//!   control characters but newline and tab, and bidirectional overrides, show as
//!   `\u{1b}` and the like (see [`Reply`]). A launch of another user is untrusted input
//!   held to the primary's limits (guarantee 5). The README's "Security" has the whole
//!   model: what each side can and cannot do to the other, foreground and timing included.
//!
//! # Platform notes
//!
//! - **Linux**: Unix domain sockets, with [`SocketOptions::ABSTRACT_NAMESPACE`]; the
//!   System scope is an abstract socket, and a lock file in `/tmp` that decides across
//!   network namespaces.
//! - **macOS** and the BSDs: Unix domain sockets; no abstract namespace.
//! - **Windows**: named pipes (through `interprocess`), with Qt's security descriptors
//!   for [`SocketOptions`] (narrowed by default, exact on request), SID and integrity-level
//!   peer checks. Pipes have no I/O
//!   timeouts: `SingleInstance` bounds each read and write by cancelling it.
//!
//! # Resource use and leaks
//!
//! An idle [`LocalServer`] or [`Primary`] makes no system call and wakes no thread.
//!
//! - A [`LocalServer`] runs no thread of its own but one acceptor thread while a
//!   [callback](LocalServer::on_new_connection) is registered; the blocking accepts wait
//!   on the caller's thread, and an incoming-connection hook runs on whichever thread
//!   accepts. With the `tokio` feature on Windows, an async accept waits on Tokio's
//!   blocking pool.
//! - A [`Primary`] starts no thread until one is needed, on every platform: its one
//!   readiness-driven loop (accepting, checking the peer, and reading every connection
//!   whose request has not arrived whole: `poll(2)` on Unix, overlapped pipe I/O on one
//!   completion port on Windows) runs on the app's thread while it waits in
//!   [`Primary::recv`], and on one thread of its own (the driver) from the first
//!   [`Primary::set_waker`] or `recv_async` on ([`Primary::on_request`]'s callback
//!   thread runs it too). Requests of any size are decoded on the loop's thread.
//! - A request whose app writes to the launch ([`Request::stdout`]) has one thread that
//!   writes the output, from its first output until its reply, so that the app's thread
//!   never waits for a launch; a launch that forwards its stdin reads it on one thread.
//! - On Windows, a launch's blocking pipe I/O (and a [`LocalSocket`]'s with a deadline)
//!   is bounded by one timer thread that cancels overdue I/O.
//! - With the `dbus` feature, while the primary is on a bus: zbus's executor thread and
//!   async-io's, both asleep while idle, and a setup thread until the name is owned.
//!
//! The crate's threads block the app's asynchronous signals. Dropping a server or a
//! primary joins its threads, closes its socket, and removes the socket file only if it
//! is still its own.
//! A process killed with `SIGKILL` leaves its socket file (not its lock) behind; the next
//! primary removes it, after the lock proved it stale. Lock files stay, by design:
//! removing one would race with a launch taking it.
//!
//! # Anatomy of the crate
//!
//! - [`SingleInstance`] (a consuming builder) → [`Start`]: a [`Primary`] or a forwarded
//!   [`Reply`]; [`Request`], [`Reply`], [`Stopper`], [`CallbackPrimary`], [`Status`].
//! - [`protocol`]: the wire format, for programs in other languages that speak to a
//!   primary: [`Message`] and [`Reply`] (whose only path is the crate root) encode to one
//!   line of JSON each; a reply answers, refuses, or says "start over"
//!   ([`Reply::retry`], [`Reply::busy`] with [`protocol::BUSY`]);
//!   [`protocol::encode_os`]/[`protocol::decode_os`] are the lossless encoding of OS
//!   strings, [`protocol::ProtocolError`] says what is wrong with a line.
//! - Layer 1: [`LocalServer`], [`LocalSocket`], [`ConnectOptions`], [`SocketOptions`],
//!   [`PeerCredentials`] (with a Windows [`Sid`]), [`PendingConnections`].
//! - Errors: [`Error`], with Qt's codes in [`LocalSocketError`] and [`SocketError`],
//!   [`PathError`] for the file or directory an I/O error concerns, and the receive calls'
//!   [`RecvError`], [`TryRecvError`] and [`RecvTimeoutError`].
//!
//! ## Source files
//!
//! Layer 1 (`server/`, `socket/`) is the port of `QLocalServer` and `QLocalSocket`; layer 2
//! (`instance/`) builds the single instance on it; `protocol/` is the wire format; `sys/` is
//! all platform code. One line a file:
//!
//! - `src/lib.rs`: the crate docs and the public items.
//! - `src/error.rs`: `Error`, Qt's `LocalSocketError` codes and texts, `SocketError`.
//! - `src/error/path.rs`: `PathError`, an I/O error on a path, and the path.
//! - `src/error/recv.rs`: `RecvError`, `TryRecvError`, `RecvTimeoutError`: why a receive call returned no request.
//! - `src/name.rs`: how a server name becomes a socket path or pipe name.
//! - `src/options.rs`: `SocketOptions`, who may connect.
//! - `src/sid.rs`: `Sid`, a Windows security identifier, on every platform.
//! - `src/protocol/mod.rs`: the wire protocol's rules, constants (`BUSY`) and `ProtocolError`.
//! - `src/protocol/message.rs`: `Message`, the request line, and its decoding.
//! - `src/protocol/reply.rs`: `Reply`, the answer line (answer, refusal, retry), and defusing another user's texts.
//! - `src/protocol/os_str.rs`: the lossless encoding of OS strings.
//! - `src/protocol/fields.rs`: an object's fields by name, in one pass over its line and without a map.
//! - `src/protocol/representable.rs`: what a JSON tree cannot hold (a number beyond `f64`, a lone surrogate, nesting 128 deep), found in one pass.
//! - `src/protocol/reply_decode.rs`: a reply decoded in one pass over its fields, without the JSON tree.
//! - `src/protocol/frame.rs`: protocol version 2: what a launch asks for (`wait`, `stdin`, `replace`) and the frames between the request line and the reply.
//! - `src/protocol/tests/`: the protocol's unit tests (`encode`, `decode`, `reply`).
//! - `src/server/mod.rs`: `LocalServer` and its state.
//! - `src/server/listen.rs`: listening, adopting a socket, removing a stale one.
//! - `src/server/accept.rs`: the pull, push and hook styles of accepting.
//! - `src/server/queue.rs`: the pending queue shared with the acceptor thread.
//! - `src/server/asynchronous.rs`: `accept_async` and `incoming_async` (feature `tokio`).
//! - `src/socket/mod.rs`: `LocalSocket`, the client half of `QLocalSocket`.
//! - `src/socket/connect.rs`: `ConnectOptions` and Qt's client errors.
//! - `src/socket/credentials.rs`: `PeerCredentials`.
//! - `src/activation/`: `raise` and `request_token` (feature `activation`): Wayland (`wayland.rs`), X11 (`x11.rs`), Windows (`windows.rs`).
//!
//! Layer 2, `src/instance/`, in layers that point one way: `request` ← `inbox` ← `serve`
//! and `dbus` ← `primary`; nothing in it names a platform (that is `sys/`'s job):
//! - `instance/mod.rs`: `SingleInstance`, the builder, and the message a launch sends.
//! - `instance/launch.rs`: the launch: the lock and the socket decide primary or forward.
//! - `instance/forward.rs`: one hand-over: connect, check who serves, send, read the reply.
//! - `instance/location.rs`: where the lock and the socket live, per scope.
//! - `instance/lock.rs`, `instance/published.rs`: the lock file and where the primary is published (the platform's `sys` items, named for layer 2).
//! - `instance/transport.rs`: line I/O on a launch's connection, bounded in time and size.
//! - `instance/remote.rs`: the launch as a remote command line (version 2): the `taken` frame, output chunks written as they come, stdin streamed, the reply; the fall back to version 1.
//! - `instance/handover.rs`: replacing a running primary (`--replace`), and the updater's wait for it to exit.
//! - `instance/request.rs`: `Request`, answered through its responder (a launch's connection or a D-Bus call); the busy reply.
//! - `instance/origin.rs`: `Origin`: how a request came (a launch, a D-Bus call).
//! - `instance/stream.rs`: a launch's streams at the primary's end: `taken`, the app's output, the launch's stdin, the reply after all output.
//! - `instance/launch_io.rs`: `Output` and `Input`, the launch's streams as the app sees them, and `Request`'s version 2 methods.
//! - `instance/inbox.rs`: admission and notification, one policy for launches and D-Bus calls: the byte budget, the queue's room, shutting down.
//! - `instance/serve/mod.rs`: the primary's loop, one readiness-driven design on every platform: its state and the driver thread.
//! - `instance/serve/turn.rs`: one turn: wait, accept, read, decode, answer; deadlines, shedding and the byte budget.
//! - `instance/serve/context.rs`: what the loop shares with the thread that runs it.
//! - `instance/serve/turns.rs`: the loop's turns, counted for a reader of a launch's stdin where reads complete on the loop's port (Windows).
//! - `instance/serve/watch.rs`: keeping the primary reachable when a cleaner removes its files, or stepping down.
//! - `instance/serve/health.rs`: `Health`.
//! - `instance/serve/tests.rs`: the loop's unit tests, where a test must know what the thread running it does (a stop waking a wait with no deadline).
//! - `instance/primary.rs`: `Primary`, `Stopper`, `CallbackPrimary`: start, release, drop.
//! - `instance/receive.rs`: the receive calls (`recv`, `recv_timeout`, `try_recv`, `requests`, `set_waker`).
//! - `instance/asynchronous.rs`: `recv_async` (feature `tokio`).
//! - `instance/dbus/`: `org.freedesktop.Application` (feature `dbus`, Linux): `public.rs` (the public items), `uri.rs` (`Origin::file_paths`), `linux/` (`setup.rs` the bus on its own thread, `object.rs` the object, `socket.rs` the bus socket's read-time cut, `json.rs` platform data).
//!
//! `src/sys/`, all platform code; `sys/mod.rs` is the written contract, the items each
//! platform provides with the same names and signatures:
//! - `sys/{unix,windows}/engine.rs`: the serving engine's readiness (Unix: `poll(2)`; Windows: mio's IOCP named pipes), with `sys/windows/connection.rs` a pipe connection at the primary's end.
//! - `sys/{unix,windows}/primary.rs`: where a primary listens.
//! - `sys/{unix,windows}/stream.rs`: a launch's streams: its reads and writes with deadlines, and the primary's wait for a launch's stdin.
//! - `sys/{unix,windows}/{dir,location,names,lock,peer,published,watch}.rs`: the private directory, the names, the lock and pid files, the launch's checks of the primary, the published pipe name, the removal watch.
//! - `sys/unix/{listener/,socket.rs,poll.rs,signals.rs,fork.rs,nofork.rs,forks.rs,uri.rs}`: Unix sockets, `poll(2)` and its wake-up pipe, signal masks for the crate's threads, the fork guard (Linux; `nofork.rs` elsewhere), the pid and a fork generation without a system call, `file://` paths.
//! - `sys/windows/{listener.rs,pipe.rs,deadline.rs,token.rs,security/,uri.rs}`: `LocalServer`'s pipe listener, a client's pipe, deadlines on blocking pipe I/O, users and integrity levels, security descriptors and directory DACLs, `file://` paths.
//! - `sys/windows/tests/`: the single-instance guarantees on Windows, tested under Wine.
//! - `sys/asynchronous.rs`: the `tokio` feature's accept wait.
//!
//! # Qt to Rust
//!
//! | Qt `QLocalServer` | [`LocalServer`] |
//! |---|---|
//! | `listen(name)` | [`listen(name)`](LocalServer::listen) |
//! | `listen(qintptr)` | `listen_fd(OwnedFd)` (Unix) |
//! | `close()`, `isListening()` | [`close()`](LocalServer::close), [`is_listening()`](LocalServer::is_listening) |
//! | `serverName()`, `fullServerName()` | [`server_name()`](LocalServer::server_name), [`full_server_name()`](LocalServer::full_server_name) |
//! | `serverError()`, `errorString()` | [`server_error()`](LocalServer::server_error) ([`LocalSocketError`]), [`error_string()`](LocalServer::error_string) |
//! | `hasPendingConnections()`, `nextPendingConnection()` | [`has_pending_connections()`](LocalServer::has_pending_connections), [`next_pending_connection()`](LocalServer::next_pending_connection) |
//! | `maxPendingConnections()`, `setMaxPendingConnections(n)` | same names; default [30](DEFAULT_MAX_PENDING_CONNECTIONS) |
//! | `socketOptions()`, `setSocketOptions()` | [`SocketOptions`]: `USER_ACCESS`, `GROUP_ACCESS`, `OTHER_ACCESS`, `WORLD_ACCESS`, `ABSTRACT_NAMESPACE` |
//! | `waitForNewConnection(msec, *timedOut)` | [`wait_for_new_connection(Option<Duration>)`](LocalServer::wait_for_new_connection) (`Ok(false)`: timed out) |
//! | signal `newConnection()` | [`on_new_connection(callback)`](LocalServer::on_new_connection); [`incoming()`](LocalServer::incoming), [`accept()`](LocalServer::accept), [`try_accept()`](LocalServer::try_accept) |
//! | virtual `incomingConnection(fd)` | [`set_incoming_connection_hook(hook)`](LocalServer::set_incoming_connection_hook); the default queues and announces |
//! | `addPendingConnection(socket)` | [`PendingConnections::push`] |
//! | static `removeServer(name)` | [`LocalServer::remove_server`] |
//! | Qt 6 `listenBacklogSize()`, `setListenBacklogSize(n)` | [`listen_backlog_size()`](LocalServer::listen_backlog_size), [`set_listen_backlog_size(n)`](LocalServer::set_listen_backlog_size); default [50](DEFAULT_LISTEN_BACKLOG_SIZE) |
//! | `socketDescriptor()` | `socket_descriptor()` (Unix) |
//! | `QLocalSocket::connectToServer` + `waitForConnected` | [`LocalSocket::connect(name)`](LocalSocket::connect), [`ConnectOptions`] |
//! | `QLocalSocket::LocalSocketError` | [`LocalSocketError`], with Qt's numbers and texts |
//! | `QLocalSocket::setSocketDescriptor` | none: a [`LocalSocket`] comes from a connect or an accept; its `socketDescriptor()` is `AsFd`/`AsRawFd` (Unix), `AsHandle` (Windows) |
//!
//! The repository's README has the rest: where Qt's behaviour is deliberately not
//! followed, and the Qt members left out.
//!
//! # Features
//!
//! - `tokio`: `LocalServer::accept_async` / `incoming_async` (and `AsyncIncoming`),
//!   `Primary::recv_async` and `Request::reply_async`. It adds Tokio (`net`, `rt`, `sync`)
//!   and needs no runtime feature of the app's beyond IO.
//! - `dbus` (Linux; elsewhere it compiles and reports `DbusStatus::Unsupported`): the
//!   primary also answers `org.freedesktop.Application` on the session bus (the desktop's
//!   "Open With", `gapplication`), as requests whose [`Request::origin`] says so;
//!   `SingleInstance::dbus_bus`, `Primary::dbus_status`, `DbusBus`, `DbusStatus`,
//!   `dbus_service_file`, `dbus_object_path`, `Origin::file_paths`.
//! - `activation`: [`activation::raise`] brings the app's existing window to the front
//!   for a request with the launch's token (Wayland `xdg_activation_v1`, X11
//!   `_NET_ACTIVE_WINDOW`, Windows `SetForegroundWindow`), from any raw-window-handle 0.6
//!   window; a launch under Wayland with no token asks the compositor for one to forward
//!   ([`activation::request_token`]). Needs Rust 1.86.
//! - `gui-example`, `egui-example`: dev-only, for `examples/gui.rs` and `examples/egui.rs`;
//!   not part of the library's API.
//!
//! No feature is on by default.
//!
//! The repository's README has the figures (round trip, launch and memory, each with the
//! command that measures it) and the table of where Qt's behaviour is deliberately not
//! followed.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "activation")]
#[cfg_attr(docsrs, doc(cfg(feature = "activation")))]
pub mod activation;
mod error;
mod instance;
mod name;
mod options;
pub mod protocol;
mod server;
mod sid;
mod socket;
mod sys;

pub use error::{Error, LocalSocketError, PathError, RecvError, RecvTimeoutError, SocketError, TryRecvError};
#[cfg(feature = "dbus")]
#[cfg_attr(docsrs, doc(cfg(feature = "dbus")))]
pub use instance::{dbus_object_path, dbus_service_file, DbusBus, DbusStatus};
pub use instance::{
    CallbackPrimary, Delivery, Health, Input, Origin, Output, Primary, Request, Scope, SingleInstance, Start,
    Status, Stopper, DEFAULT_TIMEOUT, OUTPUT_BUFFER,
};
pub use name::{default_socket_dir, MAX_SOCKET_PATH};
pub use options::SocketOptions;
pub use protocol::message::Message;
pub use protocol::reply::Reply;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use server::AsyncIncoming;
pub use server::{
    Incoming, LocalServer, PendingConnections, DEFAULT_LISTEN_BACKLOG_SIZE, DEFAULT_MAX_PENDING_CONNECTIONS,
};
pub use sid::{ParseSidError, Sid};
pub use socket::{ConnectOptions, LocalSocket, PeerCredentials};

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The README's code, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
