//! A windowed app that runs once, with winit: the first launch opens a window titled with
//! the file it was given; later launches hand their file to it, which retitles its window
//! and answers, and exit. The event loop sleeps until something happens: the primary's
//! [waker](solo_instance::Primary::set_waker) wakes it through winit's `EventLoopProxy`,
//! with no polling and no timer.
//!
//! ```text
//! cargo run --example gui --features gui-example -- a.txt   # a window "solo-instance gui: a.txt"
//! cargo run --example gui --features gui-example -- b.txt   # the same window, now "...: b.txt"
//! ```
//!
//! For scripts it prints `PRIMARY <socket path>`, then `OPEN <path>` for each file it opens
//! (its own and forwarded ones). The window draws nothing: winit has no renderer, and the
//! title is the point. X11 and Wayland on Linux, macOS, Windows.
//!
//! Every forwarded request also brings the window to the front (restored if minimized):
//! - **Windows**: `focus_window` calls `SetForegroundWindow`, which Windows allows because
//!   the launch, which the user just started and so owns the foreground right, handed that
//!   right to this process (`AllowSetForegroundWindow`) before it sent the request.
//! - **X11, macOS**: `focus_window` raises and focuses the window.
//! - **Wayland**: a compositor focuses a window only with an activation token, and a launch
//!   forwards its `XDG_ACTIVATION_TOKEN` ([`Request::activation_token`]). winit 0.30 takes a
//!   token only for a *new* window (`with_activation_token`, used here for the primary's own
//!   launch) and has no call to activate an existing window with one (`focus_window` does
//!   nothing there), so for a forwarded launch this example asks for attention instead
//!   (`request_user_attention`: the compositor marks the window). Toolkits that can take
//!   a token for an existing window: GTK (`gtk_window_set_startup_id`), and Qt 6's Wayland
//!   plugin, which uses `XDG_ACTIVATION_TOKEN` from the environment when a window is
//!   activated (set it to the forwarded token, then `QWindow::requestActivate`).
//!
//! [`Request::activation_token`]: solo_instance::Request::activation_token

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use solo_instance::{Primary, Reply, Request, SingleInstance, Start};
use winit::application::ApplicationHandler;
use winit::event::WindowEvent;
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::window::{UserAttentionType, Window, WindowId};

const APP_ID: &str = "org.solo-instance.GuiExample";

struct App {
    primary: Primary,
    window: Option<Window>,
    /// The file the window shows: the last one opened.
    file: Option<String>,
}

impl App {
    fn title(&self) -> String {
        match &self.file {
            Some(file) => format!("solo-instance gui: {file}"),
            None => "solo-instance gui".to_owned(),
        }
    }

    /// Serves every request waiting: retitle the window, reply ok.
    fn drain(&mut self) {
        while let Some(request) = self.primary.try_recv() {
            let cwd = request.cwd().map(PathBuf::from).unwrap_or_default();
            let files: Vec<String> =
                request.args().iter().map(|a| cwd.join(a).to_string_lossy().into_owned()).collect();
            for file in &files {
                println!("OPEN {file}");
            }
            let _ = std::io::stdout().flush();
            if let Some(last) = request.args().last() {
                self.file = Some(last.to_string_lossy().into_owned());
            }
            if let Some(window) = &self.window {
                window.set_title(&self.title());
                raise(window, &request);
            }
            let text =
                format!("opened {} in the running window (pid {})\n", files.join(", "), std::process::id());
            let _ = request.reply(Reply::ok().with_stdout(text));
        }
    }
}

/// Brings the window to the front for a forwarded request (see the module docs).
fn raise(window: &Window, request: &Request) {
    window.set_minimized(false);
    window.set_visible(true);
    window.focus_window();
    // Wayland: winit 0.30 cannot hand `request.activation_token()` to an existing window.
    if is_wayland(window) && request.activation_token().is_some() {
        window.request_user_attention(Some(UserAttentionType::Informational));
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
fn is_wayland(window: &Window) -> bool {
    use winit::raw_window_handle::{HasWindowHandle, RawWindowHandle};
    matches!(window.window_handle().map(|h| h.as_raw()), Ok(RawWindowHandle::Wayland(_)))
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
fn is_wayland(_: &Window) -> bool {
    false
}

impl ApplicationHandler for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_none() {
            #[allow(unused_mut)]
            let mut attributes = Window::default_attributes().with_title(self.title());
            // The primary's own launch token (Wayland, X11 startup notification): the new
            // window may take the focus with it. Children must not inherit it.
            #[cfg(all(unix, not(target_os = "macos")))]
            {
                use winit::platform::startup_notify::{
                    self, EventLoopExtStartupNotify, WindowAttributesExtStartupNotify,
                };
                if let Some(token) = event_loop.read_token_from_env() {
                    startup_notify::reset_activation_token_env();
                    attributes = attributes.with_activation_token(token);
                }
            }
            match event_loop.create_window(attributes) {
                Ok(window) => self.window = Some(window),
                Err(e) => {
                    eprintln!("gui: cannot open a window: {e}");
                    event_loop.exit();
                    return;
                }
            }
        }
        // Launches that arrived before the window existed.
        self.drain();
    }

    /// The primary's waker sent `()`: requests are waiting.
    fn user_event(&mut self, _: &ActiveEventLoop, (): ()) {
        self.drain();
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        if let WindowEvent::CloseRequested = event {
            event_loop.exit();
        }
    }
}

fn main() -> ExitCode {
    let start = SingleInstance::new(APP_ID).and_then(SingleInstance::start);
    match start {
        Ok(Start::Primary(primary)) => {
            let event_loop = match EventLoop::new() {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("gui: no event loop: {e}");
                    return ExitCode::from(1);
                }
            };
            // Sleep until an event: no polling.
            event_loop.set_control_flow(ControlFlow::Wait);
            let proxy = event_loop.create_proxy();
            primary.set_waker(move || {
                // Fails only once the event loop has ended.
                let _ = proxy.send_event(());
            });
            println!("PRIMARY {}", primary.socket_path().display());
            let cwd = std::env::current_dir().unwrap_or_default();
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            for arg in &args {
                println!("OPEN {}", cwd.join(arg).display());
            }
            let _ = std::io::stdout().flush();
            let file = args.last().map(|a| a.to_string_lossy().into_owned());
            let mut app = App { primary, window: None, file };
            if let Err(e) = event_loop.run_app(&mut app) {
                eprintln!("gui: {e}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Ok(Start::Forwarded(reply)) => {
            reply.print_output();
            reply.process_exit_code()
        }
        Err(e) => {
            eprintln!("gui: {e}");
            ExitCode::from(1)
        }
    }
}
