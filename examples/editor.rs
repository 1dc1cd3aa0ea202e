//! The demo to run first: a terminal "editor" that runs once. The first launch opens the
//! files it is given and stays; later launches hand their files to it and exit.
//!
//! ```text
//! cargo run --example editor -- a.txt      # terminal 1: the editor opens a.txt, stays
//! cargo run --example editor -- b.txt      # terminal 2: b.txt opens in terminal 1
//! cargo run --example editor -- --quit     # ends the editor
//! cargo run --example editor -- --help     # usage (answered here, never forwarded)
//! cargo run --example editor -- --wait c.txt   # waits until c.txt is closed:
//! cargo run --example editor -- --close c.txt  # closes it in the running editor
//! ```
//!
//! `--wait` makes it usable as git's editor: `GIT_EDITOR="cargo run --example editor --
//! --wait" git commit` hands the message file to the running editor and waits, past any
//! timeout, until `--close` closes that file there (or the editor quits, which closes every
//! file). The running editor's answer streams to the waiting terminal at once.
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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use solo_instance::{Origin, Reply, Request, SingleInstance, Start};

const USAGE: &str = "\
usage: editor [FILE...]          open FILEs in the running editor, or start it with them
       editor --wait FILE...    the same, and wait until they are closed (for GIT_EDITOR)
       editor --close FILE...   close FILEs in the running editor
       editor --quit            end the running editor (it closes every file)
       editor --help            this text

The first launch becomes the editor and stays; later launches hand their files to it
and exit with its answer.
";

fn main() -> ExitCode {
    // Asked of this launch, not of the running editor: answered here, nothing forwarded.
    if std::env::args_os().skip(1).any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    // `--wait`: once the running editor has the files, wait for its answer as long as it
    // runs (it answers when they are closed).
    let wait = std::env::args_os().skip(1).any(|a| a == "--wait");
    let instance = match SingleInstance::new("org.solo-instance.Editor") {
        Ok(i) => i.wait_for_reply(wait),
        Err(e) => {
            eprintln!("editor: {e}");
            return ExitCode::from(1);
        }
    };
    match instance.start() {
        Ok(Start::Primary(primary)) => {
            let here = std::env::current_dir().unwrap_or_default();
            let mut open = Vec::new();
            // `--wait` launches, each with the files it waits for.
            let mut waiting: Vec<(Vec<PathBuf>, Request)> = Vec::new();
            println!("editor: running as the primary instance (pid {})", std::process::id());
            println!("editor: later launches hand their files to this one; `--quit` ends it");
            for arg in std::env::args_os().skip(1).filter(|a| a != "--wait") {
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
                if request.args().first().is_some_and(|a| a == "--close") {
                    for arg in &request.args()[1..] {
                        let path = cwd.join(arg);
                        open.retain(|p| p != &path);
                        println!("editor: closed {}", path.display());
                    }
                    // Launches waiting for files none of which is open any more are answered.
                    let (done, still): (Vec<_>, Vec<_>) =
                        waiting.drain(..).partition(|(files, _)| files.iter().all(|f| !open.contains(f)));
                    waiting = still;
                    for (files, launch) in done {
                        let names: Vec<_> = files.iter().map(|f| f.display().to_string()).collect();
                        let _ = launch
                            .reply(Reply::ok().with_stdout(format!("editor: closed {}\n", names.join(", "))));
                    }
                    let _ = request.reply(Reply::ok());
                    continue;
                }
                if let Some(token) = request.activation_token() {
                    println!("editor: raising the window (activation token {})", token.to_string_lossy());
                }
                let mut names = Vec::new();
                let mut files = Vec::new();
                for arg in request.args().iter().filter(|a| a.as_os_str() != "--wait") {
                    names.push(open_file(&mut open, &cwd, arg).display().to_string());
                    files.push(cwd.join(arg));
                }
                if request.is_waiting() && !files.is_empty() {
                    // Streamed to the waiting terminal now; the reply comes at `--close`.
                    let _ = writeln!(
                        request.stdout(),
                        "editor: opened {} in the running editor (pid {}); waiting until closed \
                         (editor --close FILE)",
                        names.join(", "),
                        std::process::id()
                    );
                    waiting.push((files, request));
                    continue;
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
            for (_, launch) in waiting {
                let _ = launch.reply(Reply::ok().with_stdout("editor: the editor closed\n"));
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
