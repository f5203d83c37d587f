//! SIGINT/SIGTERM for the CLI's long-running commands: the first asks for a graceful stop, the
//! second for a stop at once (each command polls [`count`]), a third leaves the process.

use std::sync::atomic::{AtomicUsize, Ordering};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_sig: libc::c_int) {
    if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 2 {
        // Third signal: the process is stuck; leave now (async-signal-safe).
        unsafe { libc::_exit(130) };
    }
}

/// Installs the handlers (process-wide) and resets the count.
pub fn install() {
    SIGNALS.store(0, Ordering::SeqCst);
    // SAFETY: the handler only touches an atomic and may call `_exit`, both async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

/// The signals received since [`install`].
pub fn count() -> usize {
    SIGNALS.load(Ordering::SeqCst)
}
