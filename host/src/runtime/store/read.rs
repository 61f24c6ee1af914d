//! Reading the store: sink catch-up, `plugboard events ...`, and what a host
//! finds when it opens the store. Each reader has its own connection (WAL:
//! readers never block the writer nor each other).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use plugboard_proto::CloudEvent;
use prost::Message as _;
use rusqlite::{Connection, OptionalExtension as _, params};

use super::{DB_FILE, Opened, StoreError, StoredEvent, connect, now_micros, schema};

/// A read connection (it may also file replay requests).
pub struct Reader {
    conn: Connection,
    path: PathBuf,
    /// Instance names seen, so rows share one allocation per instance.
    instances: HashMap<String, Arc<str>>,
}

/// What `events list` selects.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Source instance name.
    pub instance: Option<String>,
    /// Exact CloudEvents type.
    pub ty: Option<String>,
    /// Only events with seq greater than or equal to this.
    pub since: Option<u64>,
    pub limit: Option<usize>,
}

/// An event as `events list` shows it.
#[derive(Debug, Clone)]
pub struct ListedEvent {
    pub stored: StoredEvent,
    /// When it was stored, Unix microseconds.
    pub stored_at: i64,
}

/// An event a sink gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub sink: String,
    pub seq: u64,
    pub attempts: u32,
    pub error: String,
    /// Unix microseconds.
    pub dead_at: i64,
}

/// A pending `events replay` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub id: i64,
    pub sink: String,
    /// Replay every event from this seq on; `None`: the sink's dead letters.
    pub since: Option<u64>,
}

impl Reader {
    /// Opens the store in `state_dir` (for the CLI); it must exist.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        Self::open_existing(&state_dir.join(DB_FILE))
    }

    pub(super) fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        let conn = connect(path)?;
        schema::check(&conn).map_err(|source| StoreError::Schema { path: path.to_owned(), source })?;
        Ok(Self { conn, path: path.to_owned(), instances: HashMap::new() })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        StoreError::sqlite(&self.path)
    }

    fn instance(&mut self, name: String) -> Arc<str> {
        if let Some(i) = self.instances.get(&name) {
            return Arc::clone(i);
        }
        let i: Arc<str> = Arc::from(name.as_str());
        self.instances.insert(name, Arc::clone(&i));
        i
    }

    /// Decodes one row; a row that does not decode is reported and skipped.
    fn decode(&mut self, seq: i64, instance: String, blob: &[u8]) -> Option<StoredEvent> {
        match CloudEvent::decode(blob) {
            Ok(event) => Some(StoredEvent { seq: seq as u64, instance: self.instance(instance), event }),
            Err(e) => {
                tracing::error!(path = %self.path.display(), seq, "skipping a stored event that does not decode: {e}");
                None
            }
        }
    }

    /// Appends up to `limit` events with seq greater than `after`, in order.
    pub fn events_after(
        &mut self,
        after: u64,
        limit: usize,
        out: &mut Vec<Arc<StoredEvent>>,
    ) -> Result<(), StoreError> {
        let rows: Vec<(i64, String, Vec<u8>)> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT seq, instance, event FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")
                .map_err(StoreError::sqlite(&self.path))?;
            stmt.query_map(params![after as i64, limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .and_then(|rows| rows.collect())
                .map_err(StoreError::sqlite(&self.path))?
        };
        out.extend(
            rows.into_iter().filter_map(|(seq, instance, blob)| self.decode(seq, instance, &blob).map(Arc::new)),
        );
        Ok(())
    }

    /// The events with these seqs (those that exist), in seq order.
    pub fn events_by_seq(&mut self, seqs: &[u64]) -> Result<Vec<Arc<StoredEvent>>, StoreError> {
        let mut rows = Vec::with_capacity(seqs.len());
        {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT seq, instance, event FROM events WHERE seq = ?1")
                .map_err(StoreError::sqlite(&self.path))?;
            for seq in seqs {
                let row: Option<(i64, String, Vec<u8>)> = stmt
                    .query_row(params![*seq as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
                    .map_err(StoreError::sqlite(&self.path))?;
                rows.extend(row);
            }
        }
        rows.sort_by_key(|r| r.0);
        Ok(rows
            .into_iter()
            .filter_map(|(seq, instance, blob)| self.decode(seq, instance, &blob).map(Arc::new))
            .collect())
    }

    /// Events matching `filter`, in store order.
    pub fn list(&mut self, filter: &ListFilter) -> Result<Vec<ListedEvent>, StoreError> {
        let rows: Vec<(i64, String, i64, Vec<u8>)> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT seq, instance, stored_at, event FROM events \
                     WHERE seq >= ?1 AND (?2 IS NULL OR instance = ?2) AND (?3 IS NULL OR type = ?3) \
                     ORDER BY seq LIMIT ?4",
                )
                .map_err(StoreError::sqlite(&self.path))?;
            let limit = filter.limit.map_or(-1, |l| l as i64);
            stmt.query_map(params![filter.since.unwrap_or(0) as i64, filter.instance, filter.ty, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(StoreError::sqlite(&self.path))?
        };
        Ok(rows
            .into_iter()
            .filter_map(|(seq, instance, stored_at, blob)| {
                self.decode(seq, instance, &blob).map(|stored| ListedEvent { stored, stored_at })
            })
            .collect())
    }

    /// Dead letters, of one sink or all, in sink then seq order.
    pub fn dead_letters(&self, sink: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT sink, seq, attempts, error, dead_at FROM dead_letters \
                 WHERE ?1 IS NULL OR sink = ?1 ORDER BY sink, seq",
            )
            .map_err(self.err())?;
        stmt.query_map(params![sink], |r| {
            Ok(DeadLetter {
                sink: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                attempts: r.get(2)?,
                error: r.get(3)?,
                dead_at: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err())
    }

    /// Pending replay requests for `sink`, oldest first.
    pub fn replays(&self, sink: &str) -> Result<Vec<Replay>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, sink, since FROM replays WHERE sink = ?1 ORDER BY id")
            .map_err(self.err())?;
        stmt.query_map(params![sink], |r| {
            Ok(Replay { id: r.get(0)?, sink: r.get(1)?, since: r.get::<_, Option<i64>>(2)?.map(|s| s.max(0) as u64) })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err())
    }

    /// Files a replay request for the running (or next) host.
    pub fn request_replay(&self, sink: &str, since: Option<u64>) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO replays (sink, since, requested_at) VALUES (?1, ?2, ?3)",
                params![sink, since.map(|s| s as i64), now_micros()],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every sink cursor, by sink name.
    pub fn sink_cursors(&self) -> Result<HashMap<String, u64>, StoreError> {
        sink_cursors(&self.conn).map_err(self.err())
    }

    /// The highest stored seq (0 when empty).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        last_seq(&self.conn).map_err(self.err())
    }
}

fn sink_cursors(conn: &Connection) -> Result<HashMap<String, u64>, rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT sink, seq FROM sink_cursors")?;
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?.collect()
}

fn last_seq(conn: &Connection) -> Result<u64, rusqlite::Error> {
    let seq: Option<i64> = conn.query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// What the host needs from a store it just opened.
pub(super) fn opened(conn: &Connection) -> Result<Opened, rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT instance, cursor FROM source_cursors")?;
    let source_cursors = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(Opened { source_cursors, sink_cursors: sink_cursors(conn)?, last_seq: last_seq(conn)? })
}

/// A reader for async code: each call runs on the blocking pool.
#[derive(Clone)]
pub struct SharedReader {
    inner: Arc<Mutex<Reader>>,
}

impl SharedReader {
    pub fn new(reader: Reader) -> Self {
        Self { inner: Arc::new(Mutex::new(reader)) }
    }

    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Reader) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&mut inner.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(|e| StoreError::Commit(format!("store read task failed: {e}")))?
    }
}
