//! Pipeline metrics, read at scrape time from the counters the pipeline
//! keeps anyway: per source instance (the catcher's atomics, the store's
//! stored/duplicate counts, the queue's permits) and per sink (its stats and
//! cursor against the store's committed seq). The event path pays nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::runtime::pipeline::{Counters, Pipeline, SinkSet};
use crate::runtime::store::Store;

pub struct PipelineCollector {
    store: Store,
    counters: Arc<Counters>,
    sinks: SinkSet,
}

impl std::fmt::Debug for PipelineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineCollector").field("store", &self.store).finish_non_exhaustive()
    }
}

/// Per source instance, at one scrape.
struct SourceRow {
    name: Arc<str>,
    received: u64,
    stored: u64,
    deduplicated: u64,
    rejected: u64,
    dropped: u64,
    queued: usize,
}

impl PipelineCollector {
    /// Reads `pipeline`'s counters (sources and sinks a reload adds too);
    /// holds no queue sender, so it never keeps the pipeline from stopping.
    pub fn new(pipeline: &Pipeline) -> Self {
        Self { store: pipeline.store.clone(), counters: Arc::clone(&pipeline.counters), sinks: pipeline.sinks.clone() }
    }

    fn sources(&self) -> Vec<SourceRow> {
        let stored = self.store.instance_counts();
        self.counters
            .snapshot()
            .into_iter()
            .map(|c| {
                let s = stored.get(&c.name).copied().unwrap_or_default();
                SourceRow {
                    name: c.name,
                    received: c.received,
                    stored: s.stored,
                    deduplicated: s.duplicates,
                    rejected: c.invalid,
                    dropped: c.dropped,
                    queued: c.queued,
                }
            })
            .collect()
    }
}

/// Encodes one family with a `label` per row.
fn family<R, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    label: &str,
    rows: &[R],
    row: impl Fn(&R) -> (&str, M),
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for r in rows {
        let (value, metric) = row(r);
        metric.encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

impl Collector for PipelineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.sources();
        let counter = MetricType::Counter;
        let e = &mut encoder;
        family(e, "plugboard_events_received", "Events a source instance produced", counter, "source", &rows, |r| {
            (&r.name, ConstCounter::new(r.received))
        })?;
        family(e, "plugboard_events_stored", "Events newly stored", counter, "source", &rows, |r| {
            (&r.name, ConstCounter::new(r.stored))
        })?;
        family(
            e,
            "plugboard_events_deduplicated",
            "Events not stored again: same source and id as a stored one",
            counter,
            "source",
            &rows,
            |r| (&r.name, ConstCounter::new(r.deduplicated)),
        )?;
        family(
            e,
            "plugboard_events_rejected",
            "Events rejected as invalid CloudEvents",
            counter,
            "source",
            &rows,
            |r| (&r.name, ConstCounter::new(r.rejected)),
        )?;
        family(e, "plugboard_events_dropped", "Events dropped by drop_types", counter, "source", &rows, |r| {
            (&r.name, ConstCounter::new(r.dropped))
        })?;
        family(
            e,
            "plugboard_queue_depth",
            "Events a source instance has queued that are not yet handed to the store",
            MetricType::Gauge,
            "source",
            &rows,
            |r| (&r.name, ConstGauge::new(r.queued as i64)),
        )?;

        let committed = *self.store.committed().borrow();
        let sinks = &self.sinks.stats();
        family(e, "plugboard_events_delivered", "Events a sink took", counter, "sink", sinks, |(name, s)| {
            (name, ConstCounter::new(s.delivered.load(Ordering::Relaxed)))
        })?;
        family(
            e,
            "plugboard_events_dead_lettered",
            "Events a sink refused for good or that failed every retry",
            counter,
            "sink",
            sinks,
            |(name, s)| (name, ConstCounter::new(s.dead_lettered.load(Ordering::Relaxed))),
        )?;
        family(
            e,
            "plugboard_sink_backlog",
            "Events stored but not yet dealt with by the sink (delivered, skipped or dead-lettered)",
            MetricType::Gauge,
            "sink",
            sinks,
            |(name, s)| {
                let backlog = committed.saturating_sub(s.cursor.load(Ordering::Relaxed));
                (name, ConstGauge::new(i64::try_from(backlog).unwrap_or(i64::MAX)))
            },
        )?;
        Ok(())
    }
}
