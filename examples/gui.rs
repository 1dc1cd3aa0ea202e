//! A windowed app that runs once, with winit: the first launch opens a window that lists
//! the files it was given; later launches hand their files to it, which adds them to the
//! list (the newest marked with the pid and directory it came from), retitles and raises
//! its window, and answers; then they exit. Quit with the window's close button. The event loop sleeps until something happens: the primary's
//! [waker](solo_instance::Primary::set_waker) wakes it through winit's `EventLoopProxy`,
//! with no polling and no timer.
//!
//! ```text
//! cargo run --example gui --features gui-example -- a.txt   # a window "solo-instance gui: a.txt"
//! cargo run --example gui --features gui-example -- b.txt   # the same window, now "...: b.txt"
//! ```
//!
//! For scripts it prints `PRIMARY <socket path>`, then `OPEN <path>` for each file it opens
//! (its own and forwarded ones). The window is drawn on the CPU (softbuffer) with an 8x8
//! bitmap font (font8x8): no GPU, no font file. X11 and Wayland on Linux, macOS, Windows.
//!
//! Every forwarded request also brings the window to the front (restored if minimized)
//! with [`solo_instance::activation::raise`] (feature `activation`), with the proof of user
//! action the launch forwarded:
//! - **Wayland**: `xdg_activation_v1.activate` on this window's surface with the launch's
//!   `XDG_ACTIVATION_TOKEN` (a launch with none asks the compositor for one first).
//! - **X11**: `_NET_ACTIVE_WINDOW` to the root window, with the time in the launch's
//!   `DESKTOP_STARTUP_ID`.
//! - **Windows**: `SetForegroundWindow`, which Windows allows because the launch handed
//!   its foreground right to this process (`AllowSetForegroundWindow`).
//! - **macOS**: winit's `focus_window` (the helper has no macOS code).
//!
//! A GTK 4 or Qt 6 app calls instead `gtk_window_present` after `gtk_window_set_startup_id`
//! with the token, or `QWindow::requestActivate` with `XDG_ACTIVATION_TOKEN` set to it.
//!
//! With `SOLO_EXAMPLE_NO_RAISE=1` in its environment the primary does not raise its window
//! at all: `tests/activation.sh` runs it so to see the focus stay where it was.

use std::io::Write;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use solo_instance::activation::ActivationErrorKind;
use solo_instance::{Primary, Reply, Request, SingleInstance, Start};
use winit::application::ApplicationHandler;
use winit::event::WindowEvent;
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::window::{Window, WindowId};

const APP_ID: &str = "org.solo-instance.GuiExample";

struct App {
    primary: Primary,
    window: Option<Rc<Window>>,
    surface: Option<softbuffer::Surface<Rc<Window>, Rc<Window>>>,
    /// Every file opened, in order (full paths).
    opened: Vec<String>,
    /// Where the newest launch came from: `pid ... in <cwd>`.
    origin: String,
    /// The file in the title: the last one opened.
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
        while let Ok(request) = self.primary.try_recv() {
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
            self.opened.extend(files.iter().cloned());
            self.origin = format!(
                "from pid {} in {}",
                request.pid().map_or_else(|| "?".to_owned(), |p| p.to_string()),
                cwd.display()
            );
            if let Some(window) = &self.window {
                window.set_title(&self.title());
                raise(window, &request);
                window.request_redraw();
            }
            let text =
                format!("opened {} in the running window (pid {})\n", files.join(", "), std::process::id());
            let _ = request.reply(Reply::ok().with_stdout(text));
        }
    }
}

impl App {
    /// Draws the list of opened files, the newest marked with where it came from.
    fn draw(&mut self) {
        let (Some(window), Some(surface)) = (&self.window, &mut self.surface) else { return };
        let size = window.inner_size();
        let (Some(w), Some(h)) = (NonZeroU32::new(size.width), NonZeroU32::new(size.height)) else {
            return;
        };
        if surface.resize(w, h).is_err() {
            return;
        }
        let Ok(mut buffer) = surface.buffer_mut() else { return };
        let mut canvas = Canvas { pixels: &mut buffer, width: w.get() as usize, height: h.get() as usize };
        canvas.pixels.fill(BACKGROUND);
        let mut y = MARGIN;
        canvas.text(MARGIN, y, "solo-instance: files opened in this window", HEADING);
        y += LINE * 2;
        let newest = self.opened.len().saturating_sub(1);
        for (i, file) in self.opened.iter().enumerate() {
            if i == newest {
                canvas.rect(0, y - 4, canvas.width, LINE * 2 + 4, HIGHLIGHT);
                canvas.text(MARGIN, y, &format!("> {file}"), NEWEST);
                canvas.text(MARGIN + 2 * GLYPH, y + LINE, &self.origin, ORIGIN);
                y += LINE;
            } else {
                canvas.text(MARGIN, y, &format!("  {file}"), TEXT);
            }
            y += LINE;
        }
        if self.opened.is_empty() {
            canvas.text(MARGIN, y, "(no file yet: launch again with a file name)", ORIGIN);
        }
        let _ = buffer.present();
    }
}

const BACKGROUND: u32 = 0x0020_2430;
const HIGHLIGHT: u32 = 0x0030_4a6a;
const HEADING: u32 = 0x00ff_d479;
const TEXT: u32 = 0x00d8_dee9;
const NEWEST: u32 = 0x00ff_ffff;
const ORIGIN: u32 = 0x0096_b4d2;
/// Each font pixel is drawn as SCALE x SCALE.
const SCALE: usize = 2;
const GLYPH: usize = 8 * SCALE;
const LINE: usize = GLYPH + 8;
const MARGIN: usize = 16;

/// A window-sized `0RGB` pixel buffer to draw rectangles and 8x8 text into.
struct Canvas<'a> {
    pixels: &'a mut [u32],
    width: usize,
    height: usize,
}

impl Canvas<'_> {
    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, color: u32) {
        for row in y.min(self.height)..(y + h).min(self.height) {
            let start = row * self.width;
            self.pixels[start + x.min(self.width)..start + (x + w).min(self.width)].fill(color);
        }
    }

    fn text(&mut self, x: usize, y: usize, text: &str, color: u32) {
        use font8x8::UnicodeFonts;
        for (i, c) in text.chars().enumerate() {
            let glyph = font8x8::BASIC_FONTS
                .get(c)
                .or_else(|| font8x8::LATIN_FONTS.get(c))
                .or_else(|| font8x8::BASIC_FONTS.get('?'))
                .unwrap_or([0; 8]);
            let gx = x + i * GLYPH;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        self.rect(gx + col * SCALE, y + row * SCALE, SCALE, SCALE, color);
                    }
                }
            }
        }
    }
}

/// Brings the window to the front for a forwarded request (see the module docs).
fn raise(window: &Window, request: &Request) {
    if std::env::var_os("SOLO_EXAMPLE_NO_RAISE").is_some_and(|v| v == "1") {
        return;
    }
    // Not `set_minimized(false)` first: on X11 winit sends `_NET_ACTIVE_WINDOW` for it, with
    // no timestamp. Activating restores a minimized window.
    // GTK 4: gtk_window_present, startup id set; Qt 6: QWindow::requestActivate, XDG_ACTIVATION_TOKEN set.
    match solo_instance::activation::raise(window, request) {
        Ok(()) => {}
        Err(e) if e.kind() == ActivationErrorKind::Unsupported => {
            window.set_minimized(false);
            window.focus_window();
        }
        Err(e) => eprintln!("gui: the window was not raised: {e}"),
    }
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
            let window = match event_loop.create_window(attributes) {
                Ok(window) => Rc::new(window),
                Err(e) => {
                    eprintln!("gui: cannot open a window: {e}");
                    event_loop.exit();
                    return;
                }
            };
            let surface = softbuffer::Context::new(Rc::clone(&window))
                .and_then(|context| softbuffer::Surface::new(&context, Rc::clone(&window)));
            match surface {
                Ok(surface) => self.surface = Some(surface),
                Err(e) => eprintln!("gui: cannot draw in the window ({e}); it keeps only its title"),
            }
            self.window = Some(window);
        }
        // Launches that arrived before the window existed.
        self.drain();
    }

    /// The primary's waker sent `()`: requests are waiting.
    fn user_event(&mut self, _: &ActiveEventLoop, (): ()) {
        self.drain();
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => event_loop.exit(),
            WindowEvent::RedrawRequested => self.draw(),
            _ => {}
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
            let opened = args.iter().map(|a| cwd.join(a).to_string_lossy().into_owned()).collect();
            let origin =
                format!("from pid {} in {} (this window's own launch)", std::process::id(), cwd.display());
            let mut app = App { primary, window: None, surface: None, opened, origin, file };
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
