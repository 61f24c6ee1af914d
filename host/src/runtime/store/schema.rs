//! The event store's tables. One schema version, recorded in SQLite's
//! `user_version`; a store written by a newer plugboard is refused rather
//! than misread.

use rusqlite::Connection;

/// The schema this build reads and writes.
pub const VERSION: i64 = 1;

const SCHEMA: &str = r#"
-- Every stored event, in store order. `seq` is assigned by the single writer,
-- contiguous and never reused. The event itself is the protobuf-encoded
-- io.cloudevents.v1.CloudEvent (compact and lossless); the other columns are
-- copies for dedupe and queries.
CREATE TABLE IF NOT EXISTS events (
    seq       INTEGER PRIMARY KEY,
    instance  TEXT    NOT NULL,  -- the source instance that produced it
    source    TEXT    NOT NULL,  -- CloudEvents source
    id        TEXT    NOT NULL,  -- CloudEvents id
    type      TEXT    NOT NULL,
    time      INTEGER,           -- CloudEvents time, unix microseconds, when given
    stored_at INTEGER NOT NULL,  -- unix microseconds
    event     BLOB    NOT NULL,
    -- Dedupe on (source, id). Ids come first: they differ early, sources
    -- often share long prefixes, and every insert compares keys.
    UNIQUE (id, source)
);

-- Per source instance: the cursor of the last event stored for it, written
-- in the same transaction as that event.
CREATE TABLE IF NOT EXISTS source_cursors (
    instance   TEXT PRIMARY KEY,
    cursor     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Per sink: every event with seq <= `seq` has been delivered, skipped by the
-- routes or dead-lettered.
CREATE TABLE IF NOT EXISTS sink_cursors (
    sink       TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Events a sink could not take after its retries, kept for `events replay`.
CREATE TABLE IF NOT EXISTS dead_letters (
    sink       TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    error      TEXT    NOT NULL,
    dead_at    INTEGER NOT NULL,
    PRIMARY KEY (sink, seq)
) WITHOUT ROWID;

-- Replays asked for by `plugboard events replay`, applied by the running (or
-- next) host and then deleted. `since` NULL means "the dead letters".
CREATE TABLE IF NOT EXISTS replays (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sink         TEXT    NOT NULL,
    since        INTEGER,
    requested_at INTEGER NOT NULL
);
"#;

/// Why the schema could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("it was written by a newer plugboard (schema version {found}; this one knows {VERSION})")]
    Newer { found: i64 },
}

/// Creates the tables of an empty store, or checks an existing one.
pub fn ensure(conn: &Connection) -> Result<(), SchemaError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(SchemaError::Newer { found });
    }
    if found < VERSION {
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", VERSION)?;
    }
    Ok(())
}

/// Checks a store opened by a reader (CLI) without creating anything.
pub fn check(conn: &Connection) -> Result<(), SchemaError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(SchemaError::Newer { found });
    }
    Ok(())
}
