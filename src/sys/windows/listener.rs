//! The named-pipe listener: one thread blocked in `ConnectNamedPipe` hands each connection
//! over a slot; `wait` waits on that slot with a timeout, without polling.

use std::io;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use interprocess::local_socket::traits::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, Stream, ToFsName};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::IO::CancelIoEx;

use super::{connect, security};
use crate::sys::Ready;
use crate::SocketOptions;

#[derive(Debug, Default)]
struct State {
    ready: Option<io::Result<Stream>>,
    woken: bool,
    closed: bool,
    /// The raw `HANDLE` of the pipe instance the accept thread is (about to be) blocked on
    /// in `ConnectNamedPipe`; `None` outside `accept`. The thread clears it, under this
    /// lock, before the handle can be closed, so `Drop` may cancel its I/O under the lock.
    accepting: Option<usize>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A named-pipe listener with its accepting thread.
#[derive(Debug)]
pub(crate) struct Listener {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Listener {
    /// The file this listener bound, to tell it from a replacement: a pipe has none.
    pub(crate) fn file_id(&self) -> Option<super::FileId> {
        None
    }

    /// Creates the first instance of pipe `path`, with the security descriptor the access
    /// bits of `options` give (see [`security::pipe_security_descriptor`]) on every
    /// instance, and refusing remote clients (interprocess sets `PIPE_REJECT_REMOTE_CLIENTS`
    /// unless asked not to: `create_instance.rs`, line 100). The backlog has no meaning for
    /// pipes.
    ///
    /// interprocess creates the listener's first instance with `FILE_FLAG_FIRST_PIPE_INSTANCE`
    /// (interprocess 2.4.7, `os/windows/named_pipe/listener/create_instance.rs`, lines 26 and
    /// 85-86), so while any instance of the pipe exists `CreateNamedPipeW` fails with
    /// `ERROR_ACCESS_DENIED`, which [`server_error`] reports as `AddressInUse`. Later
    /// instances (one per `accept`) are created without the flag. A server that does not
    /// ask for the flag itself (Qt's `QLocalServer`, for one) can still add instances to a
    /// pipe this listener owns.
    #[cfg(test)]
    pub(crate) fn bind(path: &Path, options: SocketOptions, _backlog: i32) -> io::Result<Self> {
        Self::bind_with_sddl(path, options, None, false)
    }

    /// [`bind`](Self::bind), with the security descriptor `sddl` (SDDL) instead of the
    /// one `options` give, where it is `Some`; `qt`: Qt's exact descriptors (see
    /// [`security::pipe_security_descriptor`]).
    pub(crate) fn bind_with_sddl(
        path: &Path,
        options: SocketOptions,
        sddl: Option<&str>,
        qt: bool,
    ) -> io::Result<Self> {
        if options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        let name = path.as_os_str().to_fs_name::<GenericFilePath>()?;
        let mut opts = ListenerOptions::new().name(name);
        let sd = match sddl {
            Some(sddl) => Some(security::from_sddl(sddl)?),
            None => security::pipe_security_descriptor(options, qt)?,
        };
        if let Some(sd) = sd {
            use interprocess::os::windows::local_socket::ListenerOptionsExt;
            opts = opts.security_descriptor(sd);
        }
        let listener = opts.create_sync()?;
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name("solo-instance pipe accept".into()).spawn(move || loop {
                {
                    let mut st = worker.lock();
                    while st.ready.is_some() && !st.closed {
                        st = worker.cond.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                    if st.closed {
                        return;
                    }
                    // Only this thread accepts, so the stored instance is the one `accept`
                    // waits on (interprocess locks it for `as_raw_handle`, uncontended here).
                    st.accepting = match &listener {
                        interprocess::local_socket::Listener::NamedPipe(l) => {
                            Some(l.inner().as_raw_handle() as usize)
                        }
                    };
                }
                let r = listener.accept();
                let failed = r.is_err();
                let mut st = worker.lock();
                st.accepting = None;
                if st.closed {
                    return;
                }
                st.ready = Some(r);
                worker.cond.notify_all();
                drop(st);
                if failed {
                    // Do not spin on a persistent error.
                    std::thread::sleep(Duration::from_millis(50));
                }
            })?;
        Ok(Listener { shared, thread: Some(thread), path: path.to_path_buf() })
    }

    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Ready> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut st = self.shared.lock();
        loop {
            if st.ready.is_some() || st.woken {
                st.woken = false;
                return Ok(Ready { acceptable: st.ready.is_some() });
            }
            st = match deadline {
                None => self.shared.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Ready::default());
                    }
                    self.shared.cond.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }

    pub(crate) fn wake(&self) {
        self.shared.lock().woken = true;
        self.shared.cond.notify_all();
    }

    pub(crate) fn try_accept(&self) -> io::Result<Option<Stream>> {
        let taken = self.shared.lock().ready.take();
        self.shared.cond.notify_all();
        taken.transpose()
    }

    pub(crate) fn remove_own_file(&self) {}

    /// Nothing to shut down for other processes: a pipe instance is this process's alone.
    pub(crate) fn shut_down(&self) {}
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.cond.notify_all();
        let Some(t) = self.thread.take() else { return };
        // Unblock the thread's `ConnectNamedPipe` by cancelling it, again until the thread
        // ends (a cancel that comes just before the call cancels nothing). A connection of
        // our own would do too, but it may reach another server's instance of the same
        // name (one created without FILE_FLAG_FIRST_PIPE_INSTANCE, or any under Wine) and
        // leave this thread blocked; it is only the fallback.
        let give_up = Instant::now() + Duration::from_secs(1);
        while !t.is_finished() && Instant::now() < give_up {
            let st = self.shared.lock();
            if let Some(h) = st.accepting {
                // SAFETY: `accepting` is cleared under this lock before its handle can be
                // closed (see `State::accepting`), and the lock is held across the call.
                unsafe { CancelIoEx(h as HANDLE, std::ptr::null()) };
            }
            drop(st);
            std::thread::sleep(Duration::from_millis(2));
        }
        // Not once the thread has ended (and dropped the pipe): the name may be another's.
        if !t.is_finished() {
            let _ = connect(&self.path, SocketOptions::empty(), Some(Duration::from_millis(200)));
        }
        let _ = t.join();
    }
}
