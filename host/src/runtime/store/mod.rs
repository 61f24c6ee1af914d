//! The durable event store: one SQLite database (`events.db`) in WAL mode
//! under the host's `state_dir`.
//!
//! One dedicated writer thread owns the only write connection and commits in
//! groups: everything queued while the previous transaction was committing
//! goes into the next one, so durability (an fsync per commit) does not cost
//! throughput. Each source's cursor is written in the same transaction as its
//! events; sink cursors, dead letters and applied replays ride along. Readers
//! (sink dispatchers, the CLI) use their own connections.
//!
//! Recently committed events also stay in memory ([`Tail`]), so a sink that
//! keeps up reads them without touching SQLite.

mod read;
pub mod schema;
mod tail;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plugboard_proto::CloudEvent;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

pub use read::{DeadLetter, ListFilter, ListedEvent, Reader, Replay, SharedReader};
pub use tail::{Tail, TailRead};
pub use writer::{BatchPool, EventBatch, Receipt};

/// The database file inside `state_dir`.
pub const DB_FILE: &str = "events.db";
/// Held (flock) by the host that owns `state_dir`.
pub const LOCK_FILE: &str = "plugboard.lock";
/// Committed events kept in memory for sinks that keep up.
pub const TAIL_EVENTS: usize = 64 * 1024;
/// Writer requests queued before submitters wait.
const WRITER_QUEUE: usize = 2;

/// One event as stored: its place in the store and the instance it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub instance: Arc<str>,
    pub event: CloudEvent,
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("state directory {path} is in use by another plugboard host{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error("cannot lock the state directory {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("no event store at {0}: has `plugboard run` run with this state_dir?")]
    Missing(PathBuf),
    #[error("event store {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("event store {path}: {source}")]
    Schema { path: PathBuf, source: schema::SchemaError },
    #[error("the event store has shut down")]
    Closed,
    #[error("the event store could not commit: {0}")]
    Commit(String),
}

impl StoreError {
    fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite { path: path.to_owned(), source }
    }
}

/// What a freshly opened store already holds.
#[derive(Debug, Clone, Default)]
pub struct Opened {
    /// The last cursor stored per source instance.
    pub source_cursors: HashMap<String, String>,
    /// The delivery cursor per sink.
    pub sink_cursors: HashMap<String, u64>,
    /// The highest stored seq (0 when empty).
    pub last_seq: u64,
}

/// Per source instance: events stored and duplicates dropped by the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct InstanceCounts {
    pub stored: u64,
    pub duplicates: u64,
}

/// Writes that need no reply and ride along with the next transaction.
#[derive(Debug, Default)]
pub(crate) struct SideWrites {
    /// Only the latest cursor per sink matters.
    sink_cursors: HashMap<String, u64>,
    /// Dead-letter changes, applied in the order they were made.
    dead_letters: Vec<DeadLetterOp>,
    done_replays: Vec<i64>,
}

#[derive(Debug)]
enum DeadLetterOp {
    Keep { sink: String, seq: u64, attempts: u32, error: String },
    Clear { sink: String, seq: u64 },
    ClearFrom { sink: String, since: u64 },
}

impl SideWrites {
    fn is_empty(&self) -> bool {
        self.sink_cursors.is_empty() && self.dead_letters.is_empty() && self.done_replays.is_empty()
    }
}

enum WriterMsg {
    /// Events from the catcher: no reply.
    Batch(EventBatch),
    /// Events whose submitter waits until they are durable (HTTP ingress).
    Ingest(EventBatch, oneshot::Sender<Result<Receipt, StoreError>>),
    /// Side writes are waiting.
    Nudge,
    /// Commit what is queued, then stop.
    Close,
}

/// What the writer thread shares with the store's handles.
struct Shared {
    side: Mutex<SideWrites>,
    tail: Arc<Tail>,
    counts: Mutex<HashMap<Arc<str>, InstanceCounts>>,
    pool: BatchPool,
}

struct Inner {
    path: PathBuf,
    tx: mpsc::Sender<WriterMsg>,
    shared: Arc<Shared>,
    committed: watch::Receiver<u64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: nix::fcntl::Flock<File>,
}

/// The host's handle on its event store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish()
    }
}

/// Opens a connection with the settings every plugboard connection uses.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(StoreError::sqlite(path))?;
    // Another connection (the writer, or a CLI replay request) may hold the
    // write lock for the length of one group commit.
    conn.busy_timeout(Duration::from_secs(10)).map_err(StoreError::sqlite(path))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the store in `state_dir`, takes the
    /// directory's lock and starts the writer thread.
    pub fn open(state_dir: &Path) -> Result<(Self, Opened), StoreError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|source| StoreError::CreateDir { path: state_dir.to_owned(), source })?;
        let lock = lock_state_dir(state_dir)?;
        let path = state_dir.join(DB_FILE);
        let conn = connect(&path)?;
        let sqlite = StoreError::sqlite(&path);
        conn.pragma_update(None, "journal_mode", "WAL").map_err(&sqlite)?;
        // FULL: a commit is on disk (WAL fsynced) before anyone is told so.
        conn.pragma_update(None, "synchronous", "FULL").map_err(&sqlite)?;
        conn.pragma_update(None, "temp_store", "MEMORY").map_err(&sqlite)?;
        conn.pragma_update(None, "cache_size", -32_768).map_err(&sqlite)?;
        schema::ensure(&conn).map_err(|source| StoreError::Schema { path: path.clone(), source })?;
        let opened = read::opened(&conn).map_err(&sqlite)?;
        drop(sqlite);

        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let (committed_tx, committed) = watch::channel(opened.last_seq);
        let shared = Arc::new(Shared {
            side: Mutex::default(),
            tail: Arc::new(Tail::new(TAIL_EVENTS)),
            counts: Mutex::default(),
            pool: BatchPool::default(),
        });
        let writer = writer::Writer::new(conn, path.clone(), opened.last_seq + 1, Arc::clone(&shared), committed_tx);
        let thread = std::thread::Builder::new()
            .name("plugboard-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Commit(format!("cannot start the writer thread: {e}")))?;
        let inner = Inner { path: path.clone(), tx, shared, committed, thread: Mutex::new(Some(thread)), _lock: lock };
        Ok((Self { inner: Arc::new(inner) }, opened))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// An empty batch to fill (recycled when one is free).
    pub fn batch(&self, events: usize) -> EventBatch {
        self.inner.shared.pool.take(events)
    }

    /// Queues events for the next group commit (back-pressure: waits while
    /// the writer is behind).
    pub async fn submit(&self, batch: EventBatch) -> Result<(), StoreError> {
        self.inner.tx.send(WriterMsg::Batch(batch)).await.map_err(|_| StoreError::Closed)
    }

    /// Stores events and returns once they are durable.
    pub async fn ingest(&self, batch: EventBatch) -> Result<Receipt, StoreError> {
        let (reply, receipt) = oneshot::channel();
        self.inner.tx.send(WriterMsg::Ingest(batch, reply)).await.map_err(|_| StoreError::Closed)?;
        receipt.await.map_err(|_| StoreError::Closed)?
    }

    /// Returns once everything submitted before is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.ingest(EventBatch::default()).await.map(|_| ())
    }

    /// Records that `sink` has dealt with every event up to `seq`.
    pub fn set_sink_cursor(&self, sink: &str, seq: u64) {
        self.side(|s| {
            s.sink_cursors.insert(sink.to_owned(), seq);
        });
    }

    /// Keeps an event `sink` gave up on.
    pub fn dead_letter(&self, sink: &str, seq: u64, attempts: u32, error: &str) {
        let op = DeadLetterOp::Keep { sink: sink.to_owned(), seq, attempts, error: error.to_owned() };
        self.side(|s| s.dead_letters.push(op));
    }

    /// Forgets a dead letter that has now been delivered.
    pub fn clear_dead_letter(&self, sink: &str, seq: u64) {
        self.side(|s| s.dead_letters.push(DeadLetterOp::Clear { sink: sink.to_owned(), seq }));
    }

    /// Forgets `sink`'s dead letters from `since` on (they are being replayed).
    pub fn clear_dead_letters_from(&self, sink: &str, since: u64) {
        self.side(|s| s.dead_letters.push(DeadLetterOp::ClearFrom { sink: sink.to_owned(), since }));
    }

    /// Marks a replay request as applied.
    pub fn replay_done(&self, id: i64) {
        self.side(|s| s.done_replays.push(id));
    }

    fn side(&self, f: impl FnOnce(&mut SideWrites)) {
        {
            let mut side = self.inner.shared.side.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut side);
        }
        // A full queue means the writer is busy and will see the side writes
        // with its next transaction anyway.
        let _ = self.inner.tx.try_send(WriterMsg::Nudge);
    }

    /// Recently committed events.
    pub fn tail(&self) -> &Arc<Tail> {
        &self.inner.shared.tail
    }

    /// The highest committed seq, updated after every commit.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.inner.committed.clone()
    }

    /// Whether the writer still takes events (false once closed, or if its
    /// thread ended).
    pub fn is_open(&self) -> bool {
        !self.inner.tx.is_closed()
    }

    /// Stored and duplicate counts per source instance since the host started.
    pub fn instance_counts(&self) -> HashMap<Arc<str>, InstanceCounts> {
        self.inner.shared.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new read connection.
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Reader::open_existing(&self.inner.path)
    }

    /// Commits what is queued (side writes included) and stops the writer.
    /// Later submissions fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        let _ = self.inner.tx.send(WriterMsg::Close).await;
        let thread = self.inner.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Takes an exclusive, non-blocking lock on `state_dir`; the kernel releases
/// it however the host ends (SIGKILL included).
fn lock_state_dir(state_dir: &Path) -> Result<nix::fcntl::Flock<File>, StoreError> {
    use std::io::{Read, Seek, Write};
    let path = state_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StoreError::Lock { path: path.clone(), source })?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = lock.rewind();
            let _ = write!(lock, "{}", std::process::id());
            Ok(lock)
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Err(StoreError::Locked { path: state_dir.to_owned(), pid: pid.trim().parse().ok() })
        }
        Err((_, errno)) => Err(StoreError::Lock { path, source: errno.into() }),
    }
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or_default()
}

#[cfg(test)]
mod tests;
