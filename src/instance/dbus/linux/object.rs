//! The `org.freedesktop.Application` object: each call a request let in by the inbox,
//! and handed to the successor when the primary shuts down with it unanswered.

use super::*;

/// `org.freedesktop.Application`, answered by handing each call to the app's queue.
pub(super) struct Application {
    pub(super) inbox: Arc<Inbox>,
    pub(super) shared: Arc<Shared>,
}

pub(super) type PlatformData = HashMap<String, OwnedValue>;

/// A call's arguments, as they came: what a hand-off sends on.
pub(super) enum Call {
    Activate((PlatformData,)),
    Open((Vec<String>, PlatformData)),
    ActivateAction((String, Vec<OwnedValue>, PlatformData)),
}

#[zbus::interface(name = "org.freedesktop.Application")]
impl Application {
    async fn activate(
        &self,
        platform_data: PlatformData,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> fdo::Result<()> {
        let origin = Origin::Activate { platform_data: to_map(&platform_data) };
        if self.queue(origin).await? {
            self.hand_off(conn, Call::Activate((platform_data,))).await?;
        }
        Ok(())
    }

    async fn open(
        &self,
        uris: Vec<String>,
        platform_data: PlatformData,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> fdo::Result<()> {
        let origin = Origin::Open { uris: uris.clone(), platform_data: to_map(&platform_data) };
        if self.queue(origin).await? {
            self.hand_off(conn, Call::Open((uris, platform_data))).await?;
        }
        Ok(())
    }

    async fn activate_action(
        &self,
        action_name: String,
        parameter: Vec<OwnedValue>,
        platform_data: PlatformData,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> fdo::Result<()> {
        let origin = Origin::ActivateAction {
            action: action_name.clone(),
            parameter: parameter.iter().map(|v| to_json(v)).collect(),
            platform_data: to_map(&platform_data),
        };
        if self.queue(origin).await? {
            self.hand_off(conn, Call::ActivateAction((action_name, parameter, platform_data))).await?;
        }
        Ok(())
    }
}

impl Application {
    /// Queues the call as a request and waits for the app's answer: `true` when the
    /// primary shut down first, so that the call goes to the successor.
    async fn queue(&self, origin: Origin) -> fdo::Result<bool> {
        let inbox = &self.inbox;
        let mut env = BTreeMap::new();
        if let Some(pd) = origin.platform_data() {
            for (key, var) in
                [("activation-token", "XDG_ACTIVATION_TOKEN"), ("desktop-startup-id", "DESKTOP_STARTUP_ID")]
            {
                if let Some(Value::String(token)) = pd.get(key) {
                    env.insert(var.to_owned(), token.into());
                }
            }
        }
        let raw = origin.to_json();
        // The JSON, the call's arguments and zbus' message, each about as large.
        let weight = 3 * raw.len() + 256;
        let held = inbox.hold(weight);
        let slot = Arc::new(Mutex::new(Slot {
            handoffs: Some(Arc::clone(&self.shared.handoffs)),
            ..Slot::default()
        }));
        let request = Request {
            head: protocol::Head { argv: Vec::new(), cwd: None, env, pid: None, data: None },
            data: std::sync::OnceLock::new(),
            message: std::sync::OnceLock::new(),
            raw,
            weight,
            held,
            peer: None,
            socket: None,
            closing: Arc::clone(&inbox.closing),
            origin,
            answer: Some(Answer(Arc::clone(&slot))),
            remote: None,
        };
        // The same admission as a launch's: refused while the primary shuts down (the call
        // goes to the successor), busy past the bytes budget.
        let request = match inbox.check(Box::new(request)) {
            Ok(request) => request,
            Err(Refused::OverBudget(mut request)) => {
                request.answer.take();
                let why = format!("{BUSY}: {} MiB of requests wait", HELD_BUDGET >> 20);
                return Err(fdo::Error::LimitsExceeded(why));
            }
            Err(Refused::Closing(mut request) | Refused::Full(mut request)) => {
                request.answer.take();
                self.shared.handoffs.fetch_add(1, Ordering::SeqCst);
                return Ok(true);
            }
        };
        if let Err((mut request, why)) = inbox.queue_dbus(request) {
            request.answer.take();
            return match why {
                Some(why) => Err(fdo::Error::LimitsExceeded(why)),
                // The primary began to shut down meanwhile.
                None => {
                    self.shared.handoffs.fetch_add(1, Ordering::SeqCst);
                    Ok(true)
                }
            };
        }
        inbox.announce();
        // An app waiting in its own `recv` serves the socket on its thread: wake it.
        inbox.wake_loop();
        match (Wait(slot)).await {
            Outcome::Reply(reply) if reply.is_ok() => Ok(false),
            Outcome::Reply(reply) => {
                Err(fdo::Error::Failed(reply.error_message().map(str::to_owned).unwrap_or_else(|| {
                    format!("the primary instance answered with exit code {}", reply.exit_code())
                })))
            }
            Outcome::Error(why) => Err(fdo::Error::Failed(why)),
            Outcome::HandOff => Ok(true),
        }
    }

    /// The primary shut down with this call unanswered: once its name is released, the
    /// call goes to the name's next owner (a successor, or a process the bus starts for
    /// a `DBusActivatable` app), which may take up to the timeout to appear. Gives back
    /// the call's count in `handoffs`, taken when it was handed off.
    async fn hand_off(&self, conn: &zbus::Connection, call: Call) -> fdo::Result<()> {
        let shared = &self.shared;
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&shared.handoffs);
        shared.released.wait().await;
        let deadline = Instant::now() + shared.timeout;
        loop {
            let (name, path) = (Some(shared.name.as_str()), shared.path.as_str());
            let forward = async {
                match &call {
                    Call::Activate(b) => conn.call_method(name, path, Some(IFACE), "Activate", b).await,
                    Call::Open(b) => conn.call_method(name, path, Some(IFACE), "Open", b).await,
                    Call::ActivateAction(b) => {
                        conn.call_method(name, path, Some(IFACE), "ActivateAction", b).await
                    }
                }
            };
            // The successor gets the timeout to answer, once it has the name.
            let Some(r) = within(deadline + shared.timeout, forward).await else {
                return Err(fdo::Error::NoReply(format!(
                    "the primary instance shut down, and its successor did not answer within {} ms",
                    shared.timeout.as_millis()
                )));
            };
            let unowned = |name: &zbus::names::OwnedErrorName| {
                matches!(
                    name.as_str(),
                    "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner"
                )
            };
            match r {
                Ok(_) => return Ok(()),
                Err(zbus::Error::MethodError(name, _, _)) if unowned(&name) && Instant::now() < deadline => {
                    async_io::Timer::after(HAND_OFF_RETRY).await;
                }
                Err(zbus::Error::MethodError(name, _, _)) if unowned(&name) => {
                    return Err(fdo::Error::ServiceUnknown(format!(
                        "the primary instance shut down, and no successor took {} within {} ms",
                        shared.name,
                        shared.timeout.as_millis()
                    )))
                }
                Err(zbus::Error::MethodError(name, text, _)) => {
                    return Err(fdo::Error::Failed(format!(
                        "the primary instance shut down; its successor answered {name}: {}",
                        text.unwrap_or_default()
                    )))
                }
                Err(e) => {
                    return Err(fdo::Error::Failed(format!(
                        "the primary instance shut down, and the call could not be handed on: {e}"
                    )))
                }
            }
        }
    }
}

/// `f`'s output, unless `deadline` comes first.
pub(super) async fn within<F: Future>(deadline: Instant, f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut timer = async_io::Timer::at(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        match Pin::new(&mut timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The event a send did not deliver.
pub(super) fn unsent(e: TrySendError<Event>) -> Event {
    match e {
        TrySendError::Full(event) | TrySendError::Disconnected(event) => event,
    }
}

/// A call's request that was not queued, and why (`None`: the primary shuts down).
pub(super) type NotQueued = (Box<Request>, Option<String>);

impl Inbox {
    /// Queues a D-Bus call's request; while the queue is full it waits in line (calls
    /// cannot retry as launches do), up to [`MAX_WAITING`] calls. Refused with why, or
    /// `None` once the primary shuts down (its drop sets `closing`, then empties the
    /// line under this lock: a request let in here is never left behind).
    fn queue_dbus(&self, request: Box<Request>) -> std::result::Result<(), NotQueued> {
        let mut waiting = self.dbus_waiting.lock().unwrap_or_else(|p| p.into_inner());
        if self.closing.load(Ordering::SeqCst) {
            return Err((request, None));
        }
        let mut request = request;
        if waiting.is_empty() {
            match self.tx.try_send(Event::Request(request)) {
                Ok(()) => return Ok(()),
                Err(e) => match unsent(e) {
                    Event::Request(r) => request = r,
                    Event::Stop => return Ok(()),
                },
            }
        }
        if waiting.len() >= MAX_WAITING {
            return Err((
                request,
                Some(format!("{BUSY}: the most D-Bus calls that may wait ({MAX_WAITING}) wait")),
            ));
        }
        waiting.push_back(request);
        Ok(())
    }

    /// The app took a request: the D-Bus calls that wait move into the queue, in order.
    pub(in crate::instance) fn dbus_refill(&self) {
        let mut waiting = self.dbus_waiting.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(request) = waiting.pop_front() {
            match self.tx.try_send(Event::Request(request)) {
                Ok(()) => {}
                Err(e) => {
                    if let Event::Request(r) = unsent(e) {
                        waiting.push_front(r);
                    }
                    break;
                }
            }
        }
    }
}

/// Waits for the [`Answer`].
pub(super) struct Wait(Arc<Mutex<Slot>>);

impl Future for Wait {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match slot.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// [`Application`], with calls over the message limit refused before zbus decodes them:
/// those `Filter` cut short (an empty body under a signature), and any larger than the
/// limit on a transport zbus reads itself.
pub(super) struct Limited {
    pub(super) app: Application,
    pub(super) limit: usize,
}

#[async_trait::async_trait]
impl Interface for Limited {
    fn name() -> zbus::names::InterfaceName<'static> {
        <Application as Interface>::name()
    }

    fn spawn_tasks_for_methods(&self) -> bool {
        self.app.spawn_tasks_for_methods()
    }

    async fn get(
        &self,
        property_name: &str,
        server: &zbus::ObjectServer,
        connection: &zbus::Connection,
        header: Option<&zbus::message::Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<OwnedValue>> {
        self.app.get(property_name, server, connection, header, emitter).await
    }

    async fn get_all(
        &self,
        server: &zbus::ObjectServer,
        connection: &zbus::Connection,
        header: Option<&zbus::message::Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> fdo::Result<HashMap<String, OwnedValue>> {
        self.app.get_all(server, connection, header, emitter).await
    }

    async fn set_mut(
        &mut self,
        property_name: &str,
        value: &Variant<'_>,
        server: &zbus::ObjectServer,
        connection: &zbus::Connection,
        header: Option<&zbus::message::Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<()>> {
        self.app.set_mut(property_name, value, server, connection, header, emitter).await
    }

    fn call<'call>(
        &'call self,
        server: &'call zbus::ObjectServer,
        connection: &'call zbus::Connection,
        msg: &'call zbus::Message,
        name: zbus::names::MemberName<'call>,
    ) -> DispatchResult<'call> {
        let body = msg.body();
        let cut = body.is_empty() && *body.signature() != zbus::zvariant::Signature::Unit;
        if cut || body.len() > self.limit {
            let why = format!("the call is larger than the primary instance's limit of {} bytes", self.limit);
            return DispatchResult::new_async(connection, msg, async move {
                Err::<(), _>(fdo::Error::LimitsExceeded(why))
            });
        }
        Interface::call(&self.app, server, connection, msg, name)
    }

    fn call_mut<'call>(
        &'call mut self,
        server: &'call zbus::ObjectServer,
        connection: &'call zbus::Connection,
        msg: &'call zbus::Message,
        name: zbus::names::MemberName<'call>,
    ) -> DispatchResult<'call> {
        self.app.call_mut(server, connection, msg, name)
    }

    fn introspect_to_writer(&self, writer: &mut dyn std::fmt::Write, level: usize) {
        self.app.introspect_to_writer(writer, level)
    }
}
