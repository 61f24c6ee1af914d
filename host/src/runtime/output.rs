//! The `run` command's event output: one structured-mode CloudEvent JSON
//! object per line on stdout.

use std::io::Write;

use plugboard_proto::event::Json;
use tokio::sync::mpsc;

use super::sources::EmittedEvent;

/// Writes events as they come; flushes whenever the queue is momentarily
/// empty, so lines appear at once at low rates and in bulk at high rates.
pub async fn print_events(mut rx: mpsc::Receiver<EmittedEvent>) {
    let stdout = std::io::stdout();
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut out = stdout.lock();
        for emitted in batch.drain(..) {
            if serde_json::to_writer(&mut out, &Json(&emitted.event)).is_err() || out.write_all(b"\n").is_err() {
                return; // stdout closed: nobody is reading.
            }
        }
        if out.flush().is_err() {
            return;
        }
    }
}
