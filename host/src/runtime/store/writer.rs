//! The store's single writer: a dedicated thread that owns the write
//! connection and commits everything queued while it was busy as one
//! transaction (group commit).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plugboard_proto::CloudEvent;
use plugboard_proto::io::cloudevents::v1::cloud_event::cloud_event_attribute_value::Attr;
use prost::Message as _;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot, watch};

use super::{DeadLetterOp, InstanceCounts, Shared, SideWrites, StoreError, StoredEvent, WriterMsg, now_micros};

/// Events one transaction takes at most, so one commit never holds
/// everything up for long.
const MAX_TRANSACTION_EVENTS: usize = 16 * 1024;

/// Events to store, with the cursors they carry. Each event is encoded
/// (protobuf) into one shared buffer as it is pushed: one allocation per
/// batch, not per event.
#[derive(Debug, Default)]
pub struct EventBatch {
    blob: Vec<u8>,
    items: Vec<Item>,
    cursors: Vec<(Arc<str>, String)>,
}

#[derive(Debug)]
struct Item {
    instance: Arc<str>,
    event: CloudEvent,
    start: usize,
    end: usize,
    time: Option<i64>,
}

impl EventBatch {
    pub fn with_capacity(events: usize) -> Self {
        Self { blob: Vec::with_capacity(events * 160), items: Vec::with_capacity(events), cursors: Vec::new() }
    }

    /// Adds an event (already validated) produced by `instance`.
    pub fn push(&mut self, instance: Arc<str>, event: CloudEvent) {
        let start = self.blob.len();
        // Encoding into a Vec cannot run out of room.
        let _ = event.encode(&mut self.blob);
        let time = event_time_micros(&event);
        self.items.push(Item { instance, event, start, end: self.blob.len(), time });
    }

    /// Records `instance`'s stream position after this batch's events.
    pub fn set_cursor(&mut self, instance: &Arc<str>, cursor: String) {
        match self.cursors.iter_mut().find(|(i, _)| i == instance) {
            Some(entry) => entry.1 = cursor,
            None => self.cursors.push((Arc::clone(instance), cursor)),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    fn clear(&mut self) {
        self.blob.clear();
        self.items.clear();
        self.cursors.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.cursors.is_empty()
    }

    /// The events in this batch, in order.
    pub fn events(&self) -> impl Iterator<Item = &CloudEvent> {
        self.items.iter().map(|i| &i.event)
    }
}

/// Emptied batches, handed back by the writer for the catcher to fill again:
/// at high rates their buffers (hundreds of KiB each) are reused rather than
/// allocated and freed for every batch.
#[derive(Debug, Default)]
pub struct BatchPool {
    free: Mutex<Vec<EventBatch>>,
}

impl BatchPool {
    const KEEP: usize = 8;

    /// An empty batch, with room for `events` when it has to be new.
    pub fn take(&self, events: usize) -> EventBatch {
        let batch = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        batch.unwrap_or_else(|| EventBatch::with_capacity(events))
    }

    fn put(&self, mut batch: EventBatch) {
        batch.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < Self::KEEP {
            free.push(batch);
        }
    }
}

/// What became of each event of an ingested batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Per event, in order: its seq, or `None` when (source, id) was already stored.
    pub seqs: Vec<Option<u64>>,
}

impl Receipt {
    pub fn stored(&self) -> usize {
        self.seqs.iter().filter(|s| s.is_some()).count()
    }
    pub fn duplicates(&self) -> usize {
        self.seqs.len() - self.stored()
    }
}

/// The CloudEvents `time` in Unix microseconds, when the event has one.
fn event_time_micros(event: &CloudEvent) -> Option<i64> {
    match event.attributes.get("time")?.attr.as_ref()? {
        Attr::CeTimestamp(ts) => Some(ts.seconds.saturating_mul(1_000_000) + i64::from(ts.nanos / 1000)),
        Attr::CeString(s) => chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_micros()),
        _ => None,
    }
}

/// Where a waiting submitter hears what became of its events.
type Reply = oneshot::Sender<Result<Receipt, StoreError>>;

/// The seq given to each event of each batch of a transaction.
type Assigned = Vec<Vec<Option<u64>>>;

/// One transaction's worth of requests, in arrival order.
#[derive(Default)]
struct Work {
    entries: Vec<(EventBatch, Option<Reply>)>,
    events: usize,
}

impl Work {
    /// Adds a request; true when it asks the writer to stop.
    fn add(&mut self, msg: WriterMsg) -> bool {
        match msg {
            WriterMsg::Batch(batch) => {
                self.events += batch.len();
                self.entries.push((batch, None));
            }
            WriterMsg::Ingest(batch, reply) => {
                self.events += batch.len();
                self.entries.push((batch, Some(reply)));
            }
            WriterMsg::Nudge => {}
            WriterMsg::Close => return true,
        }
        false
    }

    /// Answers waiting submitters with `error`; their events are not stored.
    fn fail_ingests(&mut self, error: &str) {
        self.entries.retain_mut(|(_, reply)| match reply.take() {
            Some(reply) => {
                let _ = reply.send(Err(StoreError::Commit(error.to_owned())));
                false
            }
            None => true,
        });
    }
}

pub(super) struct Writer {
    conn: Connection,
    path: PathBuf,
    next_seq: u64,
    shared: Arc<Shared>,
    committed: watch::Sender<u64>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        path: PathBuf,
        next_seq: u64,
        shared: Arc<Shared>,
        committed: watch::Sender<u64>,
    ) -> Self {
        Self { conn, path, next_seq, shared, committed }
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<WriterMsg>) {
        let mut closing = false;
        while !closing {
            let Some(first) = rx.blocking_recv() else { break };
            let mut work = Work::default();
            closing = work.add(first);
            while !closing && work.events < MAX_TRANSACTION_EVENTS {
                match rx.try_recv() {
                    Ok(msg) => closing = work.add(msg),
                    Err(_) => break,
                }
            }
            if closing {
                // Everything queued before the close request is committed too.
                while let Ok(msg) = rx.try_recv() {
                    work.add(msg);
                }
            }
            self.commit(work, closing);
        }
        // Side writes made after the last transaction.
        self.commit(Work::default(), true);
        tracing::debug!(path = %self.path.display(), "event store writer stopped");
    }

    /// Commits `work`, retrying with backoff while the database refuses (disk
    /// full, I/O errors): source events held here are not lost, and the
    /// queues behind the writer push back on the sources meanwhile.
    fn commit(&mut self, mut work: Work, closing: bool) {
        let side = std::mem::take(&mut *self.shared.side.lock().unwrap_or_else(|e| e.into_inner()));
        if work.entries.is_empty() && side.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(50);
        let mut failures = 0;
        loop {
            match self.write(&work, &side) {
                Ok((assigned, next_seq)) => {
                    self.next_seq = next_seq;
                    self.publish(work, assigned);
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let message = e.to_string();
                    tracing::error!(path = %self.path.display(), failures, "cannot commit to the event store: {message}; retrying in {delay:?}");
                    work.fail_ingests(&message);
                    if closing && failures >= 5 {
                        tracing::error!(
                            events = work.events,
                            "giving up on the event store at shutdown; sources resume from their last stored cursor"
                        );
                        return;
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One transaction: events (dedupe by the UNIQUE (source, id) index),
    /// source cursors, then the side writes. Returns the seq given to each
    /// event and the next free seq.
    fn write(&mut self, work: &Work, side: &SideWrites) -> Result<(Assigned, u64), rusqlite::Error> {
        let now = now_micros();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut seq = self.next_seq;
        let mut assigned = Vec::with_capacity(work.entries.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (seq, instance, source, id, type, time, stored_at, event) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut cursor = tx.prepare_cached(
                "INSERT INTO source_cursors (instance, cursor, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (instance) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            )?;
            for (batch, _) in &work.entries {
                let mut seqs = Vec::with_capacity(batch.items.len());
                for item in &batch.items {
                    let inserted = insert.execute(params![
                        seq as i64,
                        &*item.instance,
                        item.event.source,
                        item.event.id,
                        item.event.r#type,
                        item.time,
                        now,
                        &batch.blob[item.start..item.end],
                    ])?;
                    if inserted == 1 {
                        seqs.push(Some(seq));
                        seq += 1;
                    } else {
                        seqs.push(None);
                    }
                }
                for (instance, value) in &batch.cursors {
                    cursor.execute(params![&**instance, value, now])?;
                }
                assigned.push(seqs);
            }
        }
        write_side(&tx, side, now)?;
        tx.commit()?;
        Ok((assigned, seq))
    }

    /// After a commit: answer submitters, count, hand the new events to the
    /// tail and announce the new committed seq.
    fn publish(&mut self, work: Work, assigned: Assigned) {
        let mut stored = Vec::with_capacity(work.events);
        let mut replies = Vec::new();
        {
            let mut counts = self.shared.counts.lock().unwrap_or_else(|e| e.into_inner());
            for ((mut batch, reply), seqs) in work.entries.into_iter().zip(assigned) {
                let mut current: Option<(Arc<str>, InstanceCounts)> = None;
                for (item, seq) in batch.items.drain(..).zip(seqs.iter()) {
                    if current.as_ref().is_none_or(|(i, _)| *i != item.instance) {
                        if let Some((instance, delta)) = current.take() {
                            add_counts(&mut counts, instance, delta);
                        }
                        current = Some((Arc::clone(&item.instance), InstanceCounts::default()));
                    }
                    let Some((_, delta)) = current.as_mut() else { continue };
                    match seq {
                        Some(seq) => {
                            delta.stored += 1;
                            stored.push(Arc::new(StoredEvent {
                                seq: *seq,
                                instance: item.instance,
                                event: item.event,
                            }));
                        }
                        None => {
                            delta.duplicates += 1;
                            tracing::debug!(
                                source = %item.instance,
                                id = %item.event.id,
                                ce_source = %item.event.source,
                                "dropped a duplicate event"
                            );
                        }
                    }
                }
                if let Some((instance, delta)) = current {
                    add_counts(&mut counts, instance, delta);
                }
                if let Some(reply) = reply {
                    replies.push((reply, seqs));
                }
                self.shared.pool.put(batch);
            }
        }
        if !stored.is_empty() {
            self.shared.tail.push(stored);
            self.committed.send_replace(self.next_seq - 1);
        }
        // Last: whoever waits on a receipt finds the events already visible.
        for (reply, seqs) in replies {
            let _ = reply.send(Ok(Receipt { seqs }));
        }
    }
}

fn add_counts(counts: &mut HashMap<Arc<str>, InstanceCounts>, instance: Arc<str>, delta: InstanceCounts) {
    let entry = counts.entry(instance).or_default();
    entry.stored += delta.stored;
    entry.duplicates += delta.duplicates;
}

fn write_side(tx: &rusqlite::Transaction<'_>, side: &SideWrites, now: i64) -> Result<(), rusqlite::Error> {
    if side.is_empty() {
        return Ok(());
    }
    let mut cursor = tx.prepare_cached(
        "INSERT INTO sink_cursors (sink, seq, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
    )?;
    for (sink, seq) in &side.sink_cursors {
        cursor.execute(params![sink, *seq as i64, now])?;
    }
    for op in &side.dead_letters {
        match op {
            DeadLetterOp::Keep { sink, seq, attempts, error } => {
                tx.prepare_cached(
                    "INSERT INTO dead_letters (sink, seq, attempts, error, dead_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (sink, seq) DO UPDATE SET attempts = dead_letters.attempts + excluded.attempts, \
                     error = excluded.error, dead_at = excluded.dead_at",
                )?
                .execute(params![sink, *seq as i64, attempts, error, now])?;
            }
            DeadLetterOp::Clear { sink, seq } => {
                tx.prepare_cached("DELETE FROM dead_letters WHERE sink = ?1 AND seq = ?2")?
                    .execute(params![sink, *seq as i64])?;
            }
            DeadLetterOp::ClearFrom { sink, since } => {
                tx.prepare_cached("DELETE FROM dead_letters WHERE sink = ?1 AND seq >= ?2")?
                    .execute(params![sink, *since as i64])?;
            }
        }
    }
    let mut done = tx.prepare_cached("DELETE FROM replays WHERE id = ?1")?;
    for id in &side.done_replays {
        done.execute(params![id])?;
    }
    Ok(())
}
