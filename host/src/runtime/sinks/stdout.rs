//! The `stdout` sink: structured-mode CloudEvents JSON, one event per line.

use std::sync::Arc;

use tokio::io::AsyncWriteExt as _;

use super::{DeliveryError, Sink, json_lines};
use crate::runtime::store::StoredEvent;

pub struct StdoutSink {
    out: tokio::io::Stdout,
    buffer: Vec<u8>,
}

impl StdoutSink {
    pub fn new() -> Self {
        Self { out: tokio::io::stdout(), buffer: Vec::with_capacity(64 * 1024) }
    }
}

#[tonic::async_trait]
impl Sink for StdoutSink {
    async fn deliver(&mut self, events: &[Arc<StoredEvent>]) -> Result<(), DeliveryError> {
        self.buffer.clear();
        json_lines(events, &mut self.buffer);
        // One write per batch: lines appear at once at low rates, in bulk at high rates.
        self.out
            .write_all(&self.buffer)
            .await
            .map_err(|e| DeliveryError::retry(format!("cannot write to stdout: {e}")))?;
        self.out.flush().await.map_err(|e| DeliveryError::retry(format!("cannot write to stdout: {e}")))
    }
}
