//! The `tokio` feature for [`Primary`]: [`recv_async`](Primary::recv_async) and
//! [`Request::reply_async`].

use std::io;
use std::pin::pin;
use std::sync::atomic::Ordering;

use super::receive::Taken;
use super::{Delivery, Primary, Reply, Request};
use crate::RecvError;

impl Primary {
    /// Waits for the next request without blocking the thread; [`RecvError`] once a
    /// [`Stopper`](crate::Stopper) stopped the primary, or once it stepped down. The async
    /// form of [`recv`](Self::recv), with the `tokio` feature: `while let Ok(request) =
    /// primary.recv_async().await` is the async stream of requests.
    ///
    /// It takes `&mut self` so that a task can own the primary and serve it
    /// (`tokio::spawn` needs a `Send` future, and the primary's receiving end is not
    /// `Sync`). It needs no runtime feature of its own (it waits on a
    /// [`Notify`](tokio::sync::Notify) that the serve thread (started by the first call) and
    /// [`Stopper::stop`](crate::Stopper::stop) notify), and it coexists with
    /// [`set_waker`](Self::set_waker). Cancel safe: a request is taken only when it is
    /// returned.
    ///
    /// Replying with [`Request::reply`] from async code is fine: it writes one short line
    /// to a socket whose buffer is empty, so it does not wait (it gives up after 2 s if
    /// the launch stopped reading). For long `stdout` texts use
    /// [`Request::reply_async`].
    ///
    /// ```
    /// use solo_instance::{Reply, SingleInstance, Start};
    ///
    /// # let dir = std::env::temp_dir().join(format!("solo-doc-recv-async-{}", std::process::id()));
    /// # let app = || SingleInstance::new("org.example.AsyncDoc").map(|i| i.directory(&dir));
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # let launch_app = app()?;
    /// runtime.block_on(async {
    ///     let Start::Primary(mut primary) = app()?.argv(["app"]).start()? else { unreachable!() };
    ///     // A second launch, from a thread here (from another process in real life).
    ///     let launch = std::thread::spawn(move || launch_app.argv(["app", "b.txt"]).send());
    ///     let served = tokio::spawn(async move {
    ///         // The task owns the primary; requests come in as launches arrive.
    ///         while let Ok(request) = primary.recv_async().await {
    ///             let file = request.args()[0].to_string_lossy().into_owned();
    ///             request.reply_async(Reply::ok().with_stdout(format!("opened {file}\n"))).await?;
    ///             break; // a real app serves until it quits
    ///         }
    ///         Ok::<(), std::io::Error>(())
    ///     });
    ///     served.await.unwrap()?;
    ///     assert_eq!(launch.join().unwrap()?.stdout(), "opened b.txt\n");
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn recv_async(&mut self) -> Result<Request, RecvError> {
        // The task sleeps in the runtime, not in the primary's loop.
        self.serving_from_a_thread();
        loop {
            // Listen before looking, so a request queued in between is not missed.
            let mut notified = pin!(self.ctx.inbox.notify.notified());
            notified.as_mut().enable();
            if self.ctx.inbox.stopped.load(Ordering::SeqCst) {
                return Err(RecvError);
            }
            // A request whose launch gave up is dropped unseen, as by `recv`.
            match self.try_take() {
                Taken::Request(request) => return Ok(*request),
                Taken::Again => continue,
                Taken::End => return Err(RecvError),
                Taken::Empty => notified.await,
            }
        }
    }
}

impl Request {
    /// [`reply`](Self::reply) on Tokio's blocking pool (`spawn_blocking`), for a reply
    /// whose `stdout` or `stderr` text is too long for the socket's buffer: then the
    /// write waits (up to 2 s) for the launch to read. With the `tokio` feature.
    ///
    /// Dropping the future does not cancel the reply. As with `reply`, a launch that went
    /// away is `Ok(`[`Delivery::Abandoned`]`)`.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn reply_async(self, reply: Reply) -> io::Result<Delivery> {
        tokio::task::spawn_blocking(move || self.reply(reply)).await.map_err(io::Error::other)?
    }
}
