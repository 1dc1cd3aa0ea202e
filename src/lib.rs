#![doc = include_str!("../README.md")]
#![deny(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod error;
mod instance;
mod name;
mod options;
mod server;
mod sid;
mod socket;
mod sys;

pub use error::{Error, LocalSocketError, SocketError};
#[cfg(feature = "dbus")]
pub use instance::{dbus_object_path, dbus_service_file, DbusBus, DbusStatus};
pub use instance::{
    decode_os, encode_os, CallbackPrimary, Message, Origin, Primary, Reply, Request, Scope, SingleInstance,
    Start, Status, Stopper, ACTIVATION_VARS, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_TIMEOUT, PROTOCOL_VERSION,
};
pub use name::{temp_dir, MAX_SOCKET_PATH};
pub use options::SocketOptions;
#[cfg(feature = "tokio")]
pub use server::AsyncIncoming;
pub use server::{
    Incoming, LocalServer, PendingConnections, DEFAULT_LISTEN_BACKLOG_SIZE, DEFAULT_MAX_PENDING_CONNECTIONS,
};
pub use sid::{ParseSidError, Sid};
pub use socket::{ConnectOptions, LocalSocket, PeerCredentials};

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
