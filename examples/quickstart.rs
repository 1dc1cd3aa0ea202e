//! The README's quick start, as a program: `tests/instance.rs` runs it as a forwarded
//! launch, and checks that the README shows this file's code.
use std::process::ExitCode;

use solo_instance::{Reply, SingleInstance, Start};

fn main() -> Result<ExitCode, solo_instance::Error> {
    match SingleInstance::new("org.example.Editor")?.start()? {
        Start::Primary(primary) => {
            for request in primary.requests() {
                println!("open {:?} (from {:?})", request.args(), request.cwd());
                request.reply(Reply::ok())?; // a launch that went away is no error
            }
            Ok(ExitCode::SUCCESS)
        }
        // Another instance runs and got our arguments: print its answer, exit with its
        // code. A refusal (`Reply::error`) is `Err(Error::Rejected)` from `start()?`.
        Start::Forwarded(reply) => Ok(reply.finish()),
    }
}
