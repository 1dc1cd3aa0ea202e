//! The demo to run first: a terminal "editor" that runs once. The first launch opens the
//! files it is given and stays; later launches hand their files to it and exit.
//!
//! ```text
//! cargo run --example editor -- a.txt      # terminal 1: the editor opens a.txt, stays
//! cargo run --example editor -- b.txt      # terminal 2: b.txt opens in terminal 1
//! cargo run --example editor -- --quit     # ends the editor
//! cargo run --example editor -- --help     # usage (answered here, never forwarded)
//! ```
//!
//! Quit with `--quit` from another terminal, or Ctrl-C in the editor's. Its lock and socket
//! live in `$XDG_RUNTIME_DIR` (else `$TMPDIR/solo-instance-<uid>`; on Windows
//! `%LOCALAPPDATA%\solo-instance` and a named pipe), as `org.solo-instance.Editor.*`.
//!
//! Built with `--features dbus` (Linux), the editor also answers
//! `org.freedesktop.Application` as `org.solo-instance.Editor`: the desktop's file manager,
//! `gapplication launch org.solo-instance.Editor c.txt` or a DBusActivatable desktop entry
//! open files in it, and `gapplication action org.solo-instance.Editor quit` ends it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use solo_instance::{Origin, Reply, SingleInstance, Start};

const USAGE: &str = "\
usage: editor [FILE...]     open FILEs in the running editor, or start it with them
       editor --quit        end the running editor
       editor --help        this text

The first launch becomes the editor and stays; later launches hand their files to it
and exit with its answer.
";

fn main() -> ExitCode {
    // Asked of this launch, not of the running editor: answered here, nothing forwarded.
    if std::env::args_os().skip(1).any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let instance = match SingleInstance::new("org.solo-instance.Editor") {
        Ok(i) => i,
        Err(e) => {
            eprintln!("editor: {e}");
            return ExitCode::from(1);
        }
    };
    match instance.start() {
        Ok(Start::Primary(primary)) => {
            let here = std::env::current_dir().unwrap_or_default();
            let mut open = Vec::new();
            println!("editor: running as the primary instance (pid {})", std::process::id());
            println!("editor: later launches hand their files to this one; `--quit` ends it");
            for arg in std::env::args_os().skip(1) {
                open_file(&mut open, &here, &arg);
            }
            for request in primary.requests() {
                // A D-Bus call (feature `dbus`): files as URIs, or an action.
                match request.origin() {
                    Origin::Launch => {}
                    Origin::ActivateAction { action, .. } if action == "quit" => {
                        println!("editor: quit (over D-Bus)");
                        let _ = request.reply(Reply::ok());
                        break;
                    }
                    origin => {
                        if let Some(token) = request.activation_token() {
                            println!(
                                "editor: raising the window (activation token {})",
                                token.to_string_lossy()
                            );
                        }
                        // Files arrive as `file://` URIs (an `Open` call; with `dbus` only).
                        #[cfg(not(feature = "dbus"))]
                        let _ = origin;
                        #[cfg(feature = "dbus")]
                        for path in origin.file_paths() {
                            match path {
                                Ok(path) => {
                                    open_file(&mut open, Path::new("/"), &path.into_os_string());
                                }
                                Err(uri) => println!("editor: cannot open {uri}: not a local file"),
                            }
                        }
                        let _ = request.reply(Reply::ok());
                        continue;
                    }
                }
                let cwd = request.cwd().map(Path::to_path_buf).unwrap_or_default();
                if request.args().iter().any(|a| a == "--quit") {
                    let _ = request.reply(Reply::ok().with_stdout("editor: the editor is closing\n"));
                    break;
                }
                if let Some(token) = request.activation_token() {
                    println!("editor: raising the window (activation token {})", token.to_string_lossy());
                }
                let mut names = Vec::new();
                for arg in request.args() {
                    names.push(open_file(&mut open, &cwd, arg).display().to_string());
                }
                let text = match names.len() {
                    0 => "editor: the running editor is already open\n".to_owned(),
                    _ => format!(
                        "editor: opened {} in the running editor (pid {})\n",
                        names.join(", "),
                        std::process::id()
                    ),
                };
                let _ = request.reply(Reply::ok().with_stdout(text));
            }
            println!("editor: closed {} file(s)", open.len());
            ExitCode::SUCCESS
        }
        Ok(Start::Forwarded(reply)) => reply.finish(),
        Err(e) => {
            eprintln!("editor: {e}");
            ExitCode::from(1)
        }
    }
}

/// "Opens" a file: resolves it against the launch's directory and shows what is in it.
fn open_file(open: &mut Vec<PathBuf>, cwd: &Path, arg: &OsString) -> PathBuf {
    let path = cwd.join(arg);
    let what = match std::fs::read(&path) {
        Ok(bytes) => format!("{} lines", bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count()),
        Err(_) => "new file".to_owned(),
    };
    println!("editor: opened {} ({what})", path.display());
    open.push(path);
    PathBuf::from(arg)
}
