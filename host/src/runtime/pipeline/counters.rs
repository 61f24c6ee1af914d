//! What the pipeline did with each source instance's events, counted since
//! the host started. (The store counts stored events and duplicates.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one source instance.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Events the instance produced.
    pub received: AtomicU64,
    /// Rejected as invalid CloudEvents.
    pub invalid: AtomicU64,
    /// Dropped by `drop_types`.
    pub dropped: AtomicU64,
}

impl SourceCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.invalid.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// Counters of every instance, fixed when the host starts.
#[derive(Debug, Default)]
pub struct Counters {
    sources: HashMap<Arc<str>, Arc<SourceCounters>>,
}

impl Counters {
    pub fn new<'a>(instances: impl IntoIterator<Item = &'a Arc<str>>) -> Self {
        Self { sources: instances.into_iter().map(|i| (Arc::clone(i), Arc::default())).collect() }
    }

    /// The counters of `instance` (a fresh, unshared set for an unknown one).
    pub fn source(&self, instance: &str) -> Arc<SourceCounters> {
        self.sources.get(instance).cloned().unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<SourceCounters>)> {
        self.sources.iter()
    }
}
