//! The removal watch where nothing can be removed (Windows' pipes): the items the loop
//! calls, none of which ever runs, since no watch is ever made.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Context;
use super::State;

/// Unused: no watch is ever set.
pub(super) const WATCH_DELAY: Duration = Duration::ZERO;

/// No watch exists: its source cannot be made.
pub(super) struct Watch {
    pub(super) fd: crate::sys::WatchSource,
}

pub(super) fn concerns_us(w: &Watch, _socket: &Path, _lock: &Path) -> bool {
    match w.fd {}
}

pub(super) fn unusable(_ctx: &Arc<Context>, _st: &mut State) {}

pub(super) fn check_soon(_st: &mut State) {}

pub(super) fn start(_ctx: &Arc<Context>, st: &mut State) {
    st.watch_at = None;
}

pub(super) fn upkeep(_ctx: &Arc<Context>, st: &mut State) {
    st.check_at = None;
}
