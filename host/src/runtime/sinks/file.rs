//! The `file` sink: CloudEvents JSON lines appended to a file (created when
//! missing; its directory must exist).

use std::sync::Arc;

use tokio::io::AsyncWriteExt as _;

use super::config::FileSinkConfig;
use super::{DeliveryError, Sink, json_lines};
use crate::runtime::store::StoredEvent;

pub struct FileSink {
    config: FileSinkConfig,
    file: Option<tokio::fs::File>,
    buffer: Vec<u8>,
}

impl FileSink {
    pub fn new(config: FileSinkConfig) -> Self {
        Self { config, file: None, buffer: Vec::with_capacity(64 * 1024) }
    }

    fn error(&self, what: &str, e: std::io::Error) -> DeliveryError {
        DeliveryError::retry(format!("cannot {what} {}: {e}", self.config.path.display()))
    }
}

#[tonic::async_trait]
impl Sink for FileSink {
    async fn deliver(&mut self, events: &[Arc<StoredEvent>]) -> Result<(), DeliveryError> {
        if self.file.is_none() {
            // Opened on first use (and again after a failure), so a missing
            // directory or a full disk is a retried delivery, not a dead host.
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.config.path)
                .await
                .map_err(|e| self.error("open", e))?;
            end_with_newline(&mut file).await.map_err(|e| self.error("append to", e))?;
            self.file = Some(file);
        }
        self.buffer.clear();
        json_lines(events, &mut self.buffer);
        let Some(file) = self.file.as_mut() else { return Err(DeliveryError::retry("file not open")) };
        let mut result = file.write_all(&self.buffer).await.map_err(|e| ("append to", e));
        if result.is_ok() {
            result = file.flush().await.map_err(|e| ("append to", e));
        }
        if result.is_ok() && self.config.fsync {
            result = file.sync_data().await.map_err(|e| ("fsync", e));
        }
        if let Err((what, e)) = result {
            // A partial line may have been written: the retry reopens the
            // file and ends that line first.
            self.file = None;
            return Err(self.error(what, e));
        }
        Ok(())
    }

    async fn close(&mut self) {
        if let Some(mut file) = self.file.take() {
            let _ = file.flush().await;
        }
    }
}

/// Terminates a line a failed write left unfinished, so the next line is whole.
async fn end_with_newline(file: &mut tokio::fs::File) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    if file.metadata().await?.len() == 0 {
        return Ok(());
    }
    file.seek(std::io::SeekFrom::End(-1)).await?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last).await?;
    if last[0] != b'\n' {
        file.write_all(b"\n").await?;
    }
    Ok(())
}
