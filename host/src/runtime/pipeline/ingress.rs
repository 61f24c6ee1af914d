//! Events that arrive with someone waiting for the answer (HTTP ingress, a
//! source's answer to a forwarded request): all validated first, stored in
//! one transaction, acknowledged only once durable. A request with one bad
//! event stores nothing.

use std::collections::HashMap;
use std::sync::Arc;

use plugboard_proto::CloudEvent;
use plugboard_proto::event::EventError;

use super::counters::{Counters, SourceCounters};
use super::drop_types::DropTypes;
use crate::runtime::store::{EventBatch, Store, StoreError};

/// What became of an accepted request's events.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    /// Newly stored.
    pub stored: usize,
    /// Already stored before (same source and id): not stored again.
    pub duplicates: usize,
    /// Dropped by the instance's `drop_types`.
    pub dropped: usize,
    /// The store seq of each newly stored event.
    pub seqs: Vec<u64>,
}

/// Why nothing of a request was stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("event {index}{}: {error}", if id.is_empty() { String::new() } else { format!(" (id {id:?})") })]
    Invalid { index: usize, id: String, error: EventError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The pipeline's synchronous entrance. Cheap to clone.
#[derive(Clone)]
pub struct Ingress {
    store: Store,
    drop_types: Arc<HashMap<String, DropTypes>>,
    counters: Arc<Counters>,
}

impl Ingress {
    pub fn new(store: Store, drop_types: Arc<HashMap<String, DropTypes>>, counters: Arc<Counters>) -> Self {
        Self { store, drop_types, counters }
    }

    /// Counts events of `instance` rejected before they could be parsed into
    /// CloudEvents (malformed HTTP requests).
    pub fn count_invalid(&self, instance: &str, n: u64) {
        let counters = self.counters.source(instance);
        SourceCounters::add(&counters.received, n);
        SourceCounters::add(&counters.invalid, n);
    }

    /// Validates every event, drops unwanted types, stores the rest under
    /// `instance` and returns once they are durable.
    pub async fn ingest(&self, instance: &Arc<str>, events: Vec<CloudEvent>) -> Result<IngestReport, IngestError> {
        let counters = self.counters.source(instance);
        SourceCounters::add(&counters.received, events.len() as u64);
        let mut invalid = events
            .iter()
            .enumerate()
            .filter_map(|(index, e)| plugboard_proto::event::validate(e).err().map(|error| (index, e, error)));
        if let Some((index, event, error)) = invalid.next() {
            SourceCounters::add(&counters.invalid, 1 + invalid.count() as u64);
            return Err(IngestError::Invalid { index, id: event.id.clone(), error });
        }
        let drop_types = self.drop_types.get(&**instance);
        let mut batch = EventBatch::with_capacity(events.len());
        let mut dropped = 0;
        for event in events {
            if drop_types.is_some_and(|d| d.drops(&event.r#type)) {
                dropped += 1;
            } else {
                batch.push(Arc::clone(instance), event);
            }
        }
        SourceCounters::add(&counters.dropped, dropped as u64);
        if batch.is_empty() {
            return Ok(IngestReport { dropped, ..Default::default() });
        }
        let receipt = self.store.ingest(batch).await?;
        Ok(IngestReport {
            stored: receipt.stored(),
            duplicates: receipt.duplicates(),
            dropped,
            seqs: receipt.seqs.iter().flatten().copied().collect(),
        })
    }
}
