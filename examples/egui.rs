//! The same single-instance window as `examples/gui.rs`, in egui (through eframe): the first
//! launch opens a window listing the files it was given; later launches add theirs to the
//! list, bring the window forward, get an exit code back, and exit. Quit with the window's
//! close button.
//!
//! ```text
//! cargo run --example egui --features egui-example -- a.txt   # the window
//! cargo run --example egui --features egui-example -- b.txt   # adds b.txt, exits 0
//! ```
//!
//! The pattern to copy: [`Primary::set_waker`] calls egui's `Context::request_repaint`, so
//! a request wakes the UI at once and an idle window does nothing (no polling); `update`
//! then drains the requests with [`Primary::try_recv`]. A launch with no file gets exit
//! code 2 and a message, to show a non-zero reply.
//!
//! For scripts it prints the same lines as `examples/gui.rs`: `PRIMARY <socket path>`, then
//! `OPEN <path>` for each file it opens.
//!
//! Each request brings the window to the front with [`solo_instance::activation::raise`]
//! (feature `activation`; what it does on Wayland, X11 and Windows is in `examples/gui.rs`),
//! given eframe's `Frame`, which hands out the window's raw handles. A GTK 4 or Qt 6 app
//! calls instead `gtk_window_present` after `gtk_window_set_startup_id` with the token, or
//! `QWindow::requestActivate` with `XDG_ACTIVATION_TOKEN` set to it. With
//! `SOLO_EXAMPLE_NO_RAISE=1` the primary does not raise its window (for `tests/activation.sh`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use eframe::egui;
use solo_instance::activation::ActivationErrorKind;
use solo_instance::{Primary, Reply, Request, SingleInstance, Start};

const APP_ID: &str = "org.solo-instance.EguiExample";

struct Opened {
    path: String,
    /// `pid N in DIR`: the launch it came from.
    origin: String,
}

struct App {
    primary: Primary,
    opened: Vec<Opened>,
}

impl App {
    /// Serves every request waiting: adds its files, brings the window forward, replies.
    fn drain(&mut self, ctx: &egui::Context, frame: &eframe::Frame) {
        while let Ok(request) = self.primary.try_recv() {
            let cwd = request.cwd().map(PathBuf::from).unwrap_or_default();
            let origin = format!(
                "pid {} in {}",
                request.pid().map_or_else(|| "?".to_owned(), |p| p.to_string()),
                cwd.display()
            );
            let files: Vec<String> =
                request.args().iter().map(|a| cwd.join(a).to_string_lossy().into_owned()).collect();
            for file in &files {
                println!("OPEN {file}");
                self.opened.push(Opened { path: file.clone(), origin: origin.clone() });
            }
            let _ = std::io::stdout().flush();
            raise(ctx, frame, &request);
            let reply = if files.is_empty() {
                Reply::exit(2).with_stderr("egui example: no file given\n")
            } else {
                Reply::ok().with_stdout(format!("opened {} in the running window\n", files.join(", ")))
            };
            let _ = request.reply(reply);
        }
    }
}

/// Brings the window to the front for a request: eframe's `Frame` hands out the window's
/// raw handles, which [`solo_instance::activation::raise`] takes (see the module docs).
fn raise(ctx: &egui::Context, frame: &eframe::Frame, request: &Request) {
    if std::env::var_os("SOLO_EXAMPLE_NO_RAISE").is_some_and(|v| v == "1") {
        return;
    }
    // GTK 4: gtk_window_present, startup id set; Qt 6: QWindow::requestActivate, XDG_ACTIVATION_TOKEN set.
    match solo_instance::activation::raise(frame, request) {
        Ok(()) => {}
        // macOS: egui's own commands (`Focus` does nothing on Wayland, and on X11 it sends
        // `_NET_ACTIVE_WINDOW` with no timestamp, as does `Minimized(false)`).
        Err(e) if e.kind() == ActivationErrorKind::Unsupported => {
            ctx.send_viewport_cmd(egui::ViewportCommand::Minimized(false));
            ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
        }
        Err(e) => eprintln!("egui example: the window was not raised: {e}"),
    }
}

impl eframe::App for App {
    fn update(&mut self, ctx: &egui::Context, frame: &mut eframe::Frame) {
        self.drain(ctx, frame);
        egui::CentralPanel::default().show(ctx, |ui| {
            ui.heading("solo-instance: files opened in this window");
            ui.separator();
            let newest = self.opened.len().checked_sub(1);
            for (i, file) in self.opened.iter().enumerate() {
                if Some(i) == newest {
                    ui.label(egui::RichText::new(format!("> {}", file.path)).strong().size(18.0));
                    ui.label(format!("   from {}", file.origin));
                } else {
                    ui.label(format!("  {}", file.path));
                }
            }
            if self.opened.is_empty() {
                ui.label("(no file yet: launch again with a file name)");
            }
        });
    }
}

fn main() -> ExitCode {
    match SingleInstance::new(APP_ID).and_then(SingleInstance::start) {
        Ok(Start::Primary(primary)) => {
            println!("PRIMARY {}", primary.socket_path().display());
            let cwd = std::env::current_dir().unwrap_or_default();
            let origin =
                format!("pid {} in {} (this window's own launch)", std::process::id(), cwd.display());
            let opened: Vec<Opened> = std::env::args_os()
                .skip(1)
                .map(|a| Opened { path: cwd.join(a).to_string_lossy().into_owned(), origin: origin.clone() })
                .collect();
            for file in &opened {
                println!("OPEN {}", file.path);
            }
            let _ = std::io::stdout().flush();
            let options = eframe::NativeOptions {
                viewport: egui::ViewportBuilder::default().with_inner_size([720.0, 420.0]),
                ..Default::default()
            };
            let result = eframe::run_native(
                "solo-instance egui",
                options,
                Box::new(move |cc| {
                    let ctx = cc.egui_ctx.clone();
                    // The waker runs on one of the primary's threads: request_repaint is
                    // thread-safe and wakes eframe's event loop.
                    primary.set_waker(move || ctx.request_repaint());
                    Ok(Box::new(App { primary, opened }))
                }),
            );
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("egui example: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Ok(Start::Forwarded(reply)) => {
            reply.print_output();
            reply.process_exit_code()
        }
        Err(e) => {
            eprintln!("egui example: {e}");
            ExitCode::from(1)
        }
    }
}
