//! The loop seen from inside, where a test must know what the thread that runs it does.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::{RecvError, SingleInstance, Start};

/// A [`Stopper`](crate::Stopper) ends a receive call that waits in the loop with no
/// deadline, which only an event ends (`poll(2)`; Windows, the completion port): the call
/// returns, saying stopped. When `stop` runs, the thread has looked at the stop flag and
/// the queue for the last time (it told the test it waits with no deadline), so only the
/// stop's wake-up can end its wait.
#[test]
fn a_stop_wakes_a_receive_call_waiting_in_the_loop() {
    let dir = std::env::temp_dir().join(format!("solo-serve-stop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = SingleInstance::new("org.test.ServeStop").unwrap().directory(&dir).start();
    let Ok(Start::Primary(primary)) = start else { panic!("not the primary: {start:?}") };
    let (waits_tx, waits) = mpsc::channel();
    *primary.ctx.mux.endless_wait.lock().unwrap() = Some(waits_tx);
    let ctx = Arc::clone(&primary.ctx);
    let stopper = primary.stopper();
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let r = primary.recv().err();
        let _ = done_tx.send((r, primary));
    });
    waits.recv_timeout(Duration::from_secs(20)).expect("the receive call never waited with no deadline");
    stopper.stop();
    let (r, primary) =
        done.recv_timeout(Duration::from_secs(20)).expect("the stop did not wake the receive call");
    assert_eq!(r, Some(RecvError));
    *ctx.mux.endless_wait.lock().unwrap() = None;
    drop(primary);
    let _ = std::fs::remove_dir_all(&dir);
}
