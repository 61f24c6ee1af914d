//! The most recently committed events, in memory. Seqs are contiguous, so a
//! sink that keeps up finds its next events by arithmetic, without reading
//! or decoding anything from SQLite; a sink that fell further behind than the
//! tail reaches reads the store instead.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::StoredEvent;

pub struct Tail {
    events: Mutex<VecDeque<Arc<StoredEvent>>>,
    capacity: usize,
}

/// The outcome of [`Tail::read_after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailRead {
    /// This many events were appended.
    Read(usize),
    /// The tail does not hold the next event: read the store.
    Miss,
}

impl Tail {
    pub fn new(capacity: usize) -> Self {
        Self { events: Mutex::new(VecDeque::with_capacity(capacity.min(4096))), capacity: capacity.max(1) }
    }

    /// Appends newly committed events (contiguous seqs, ascending).
    pub(super) fn push(&self, stored: Vec<Arc<StoredEvent>>) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let skip = stored.len().saturating_sub(self.capacity);
        if skip > 0 {
            events.clear();
        }
        let overflow = (events.len() + stored.len() - skip).saturating_sub(self.capacity);
        events.drain(..overflow);
        events.extend(stored.into_iter().skip(skip));
    }

    /// Appends to `out` up to `max` events with seq greater than `after`, when
    /// the tail holds the one right after it.
    pub fn read_after(&self, after: u64, max: usize, out: &mut Vec<Arc<StoredEvent>>) -> TailRead {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let Some(first) = events.front().map(|e| e.seq) else { return TailRead::Miss };
        let next = after + 1;
        if next < first {
            return TailRead::Miss;
        }
        let start = (next - first) as usize;
        if start >= events.len() {
            return TailRead::Miss;
        }
        let end = events.len().min(start + max);
        out.extend(events.range(start..end).cloned());
        TailRead::Read(end - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(seqs: std::ops::RangeInclusive<u64>) -> Vec<Arc<StoredEvent>> {
        seqs.map(|seq| Arc::new(StoredEvent { seq, instance: Arc::from("s"), event: Default::default() })).collect()
    }

    #[test]
    fn reads_by_seq_and_misses_what_it_evicted() {
        let tail = Tail::new(4);
        let mut out = Vec::new();
        assert_eq!(tail.read_after(0, 10, &mut out), TailRead::Miss);
        tail.push(events(1..=3));
        assert_eq!(tail.read_after(0, 2, &mut out), TailRead::Read(2));
        assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        tail.push(events(4..=6));
        out.clear();
        // 1 and 2 were evicted (capacity 4).
        assert_eq!(tail.read_after(0, 10, &mut out), TailRead::Miss);
        assert_eq!(tail.read_after(2, 10, &mut out), TailRead::Read(4));
        assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5, 6]);
        assert_eq!(tail.read_after(6, 10, &mut out), TailRead::Miss);
        tail.push(events(7..=20));
        out.clear();
        assert_eq!(tail.read_after(16, 10, &mut out), TailRead::Read(4));
        assert_eq!(out[0].seq, 17);
    }
}
