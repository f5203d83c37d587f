//! The JSON-lines targets (file, stdout, any writer): one line per message, in order, on a thread of
//! their own. A failed write drops that message (counted) and is reported once; later messages are
//! still tried.

use crate::{PublishError, Shared, Status};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

pub(crate) fn start(
    out: Box<dyn Write + Send>,
    shared: Arc<Shared>,
) -> Result<JoinHandle<()>, PublishError> {
    shared.connected.store(true, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("vigil-publish".into())
        .spawn(move || run(out, &shared))
        .map_err(PublishError::Thread)
}

fn run(mut out: Box<dyn Write + Send>, shared: &Shared) {
    let mut failing = false;
    loop {
        let mut b = shared.lock();
        let msg = loop {
            if let Some(m) = b.take() {
                break Some(m);
            }
            if shared.closing.load(Ordering::SeqCst) {
                break None;
            }
            b = shared.changed.wait(b).unwrap_or_else(|p| p.into_inner());
        };
        drop(b);
        let Some(msg) = msg else {
            return;
        };
        let mut line = msg.payload.into_bytes();
        line.push(b'\n');
        // Flush each line so that readers (`tail -f`, a test) see whole lines promptly.
        let result = out.write_all(&line).and_then(|_| out.flush());
        let mut b = shared.lock();
        match result {
            Ok(()) => {
                b.delivered();
                drop(b);
                if failing {
                    failing = false;
                    shared.connected.store(true, Ordering::SeqCst);
                }
            }
            Err(e) => {
                b.failed();
                drop(b);
                if !failing {
                    failing = true;
                    shared.connected.store(false, Ordering::SeqCst);
                    (shared.status)(Status::Failed(format!("write failed: {e}")));
                }
            }
        }
        shared.changed.notify_all();
    }
}
