//! The JSON-lines event writer: streaming threads hand finished lines to one writer thread through a
//! bounded channel (so a slow disk slows the pipeline down instead of growing memory).

use crate::config::EventsTarget;
use std::io::{BufWriter, Write};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Capacity of the channel in lines.
const CAPACITY: usize = 1024;

/// The sending side, cloned into pad probes.
#[derive(Clone)]
pub struct EventSender {
    tx: SyncSender<Option<String>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl EventSender {
    /// Queues one line (without newline). Blocks when the writer is behind. Returns `false` once the
    /// writer has failed or stopped.
    pub fn send(&self, line: String) -> bool {
        match self.tx.try_send(Some(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(line)) => self.tx.send(line).is_ok(),
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// The writer's error, if it failed.
    pub fn error(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The writer thread; [`EventWriter::finish`] flushes and reports the first write error.
pub struct EventWriter {
    sender: Option<EventSender>,
    thread: Option<JoinHandle<()>>,
    failed: Arc<Mutex<Option<String>>>,
    target: EventsTarget,
}

impl EventWriter {
    /// Opens the target (a file is created or truncated) and starts the thread.
    pub fn start(target: &EventsTarget) -> std::io::Result<EventWriter> {
        let out: Box<dyn Write + Send> = match target {
            EventsTarget::Stdout => Box::new(std::io::stdout()),
            EventsTarget::File(p) => Box::new(std::fs::File::create(p)?),
        };
        let (tx, rx) = sync_channel::<Option<String>>(CAPACITY);
        let failed = Arc::new(Mutex::new(None));
        let f2 = failed.clone();
        let thread = std::thread::Builder::new()
            .name("vigil-events".into())
            .spawn(move || write_loop(rx, out, f2))?;
        Ok(EventWriter {
            sender: Some(EventSender {
                tx,
                failed: failed.clone(),
            }),
            thread: Some(thread),
            failed,
            target: target.clone(),
        })
    }

    pub fn sender(&self) -> Option<EventSender> {
        self.sender.clone()
    }

    /// Writes every line queued so far, stops the thread (later lines are dropped) and returns the first
    /// error, naming the target.
    pub fn finish(mut self) -> Result<(), String> {
        if let Some(s) = self.sender.take() {
            let _ = s.tx.send(None);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let failed = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match failed {
            None => Ok(()),
            Some(e) => Err(match &self.target {
                EventsTarget::Stdout => format!("writing events to standard output: {e}"),
                EventsTarget::File(p) => format!("writing events to {}: {e}", p.display()),
            }),
        }
    }
}

fn write_loop(
    rx: Receiver<Option<String>>,
    out: Box<dyn Write + Send>,
    failed: Arc<Mutex<Option<String>>>,
) {
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let write = |out: &mut BufWriter<_>, line: String| {
        out.write_all(line.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
    };
    let mut result = Ok(());
    'outer: while let Ok(Some(line)) = rx.recv() {
        result = write(&mut out, line);
        // Write whatever else is queued, then flush so that `tail -f` sees whole lines promptly.
        while result.is_ok() {
            match rx.try_recv() {
                Ok(Some(line)) => result = write(&mut out, line),
                Ok(None) => break 'outer,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => break 'outer,
            }
        }
        if result.is_ok() {
            result = out.flush();
        }
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = out.flush();
    }
    if let Err(e) = result {
        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        // Dropping `rx` makes further sends fail fast.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_lines_to_a_file() {
        let p =
            std::env::temp_dir().join(format!("vigil-events-test-{}.jsonl", std::process::id()));
        let w = EventWriter::start(&EventsTarget::File(p.clone())).unwrap();
        let s = w.sender().unwrap();
        assert!(s.send("{\"a\":1}".into()));
        assert!(s.send("{\"a\":2}".into()));
        w.finish().unwrap();
        assert!(!s.send("late".into()));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        std::fs::remove_file(&p).ok();
    }
}
