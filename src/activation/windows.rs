//! `SetForegroundWindow`, which Windows allows because the launch handed its foreground
//! right to this process (`AllowSetForegroundWindow`) before it sent the request.

use windows_sys::Win32::UI::WindowsAndMessaging::{IsIconic, SetForegroundWindow, ShowWindow, SW_RESTORE};

use super::{ActivationError, ActivationErrorKind};

pub(super) fn activate(hwnd: isize) -> Result<(), ActivationError> {
    let hwnd = hwnd as windows_sys::Win32::Foundation::HWND;
    // SAFETY: plain Win32 calls on a window handle, which the caller's window handle
    // borrows for this call; a handle that is no longer a window makes them fail, not
    // misbehave.
    let brought = unsafe {
        if IsIconic(hwnd) != 0 {
            ShowWindow(hwnd, SW_RESTORE);
        }
        SetForegroundWindow(hwnd)
    };
    if brought == 0 {
        return Err(ActivationError::new(
            ActivationErrorKind::Refused,
            "Windows refused SetForegroundWindow (the launch did not hand over its foreground right, \
             or it had none: it was not started by the user)",
        ));
    }
    Ok(())
}
