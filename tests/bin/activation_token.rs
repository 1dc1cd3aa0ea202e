//! For `tests/activation.sh`: asks the Wayland compositor at `$WAYLAND_DISPLAY` for an
//! activation token, as a launcher does before it starts an app, and prints it.
//!
//! ```text
//! activation_token APP_ID   # prints the token; exit 1 and the error on stderr if none
//! ```

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let app_id = std::env::args().nth(1).unwrap_or_default();
    match solo_instance::activation::request_token(&app_id, Duration::from_secs(5)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("activation_token: {e}");
            ExitCode::from(1)
        }
    }
}
