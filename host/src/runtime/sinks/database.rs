//! The `database` sink (Senlin's database dispatcher): an `events` table in
//! an SQLite file the operator names, one row per event, queryable with the
//! `sqlite3` tool:
//!
//! ```sh
//! sqlite3 events.db "SELECT type, count(*) FROM events GROUP BY type"
//! sqlite3 events.db "SELECT json_extract(event, '$.data.index') FROM events LIMIT 3"
//! ```
//!
//! Redelivery is harmless: (source, id) is unique and repeats are ignored.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plugboard_proto::io::cloudevents::v1::cloud_event::Data;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, params};

use super::config::DatabaseSinkConfig;
use super::{DeliveryError, Sink};
use crate::runtime::routing::filter::attribute_text;
use crate::runtime::store::StoredEvent;

pub struct DatabaseSink {
    config: DatabaseSinkConfig,
    table: String,
    conn: Arc<Mutex<Option<Connection>>>,
}

impl DatabaseSink {
    pub fn new(config: DatabaseSinkConfig) -> Self {
        let table = config.table.clone().unwrap_or_else(|| "events".to_owned());
        Self { config, table, conn: Arc::default() }
    }
}

fn open(config: &DatabaseSinkConfig, table: &str) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(&config.path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            seq             INTEGER NOT NULL,  -- plugboard's store seq
            instance        TEXT    NOT NULL,  -- the source instance
            id              TEXT    NOT NULL,
            source          TEXT    NOT NULL,
            type            TEXT    NOT NULL,
            subject         TEXT,
            time            TEXT,              -- RFC 3339
            datacontenttype TEXT,
            data,                              -- text, or a blob for binary data
            event           TEXT    NOT NULL,  -- the whole event, CloudEvents JSON format
            delivered_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            UNIQUE (source, id)
        );"
    ))?;
    Ok(conn)
}

fn insert(conn: &mut Connection, table: &str, events: &[Arc<StoredEvent>]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT OR IGNORE INTO {table} (seq, instance, id, source, type, subject, time, datacontenttype, data, event) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?;
        for stored in events {
            let e = &stored.event;
            let data = ToSqlOutput::Borrowed(match &e.data {
                None => ValueRef::Null,
                Some(Data::TextData(t)) => ValueRef::Text(t.as_bytes()),
                Some(Data::BinaryData(b)) => ValueRef::Blob(b),
                Some(Data::ProtoData(any)) => ValueRef::Blob(&any.value),
            });
            let json = String::from_utf8(plugboard_proto::event::to_json_vec(e)).unwrap_or_default();
            stmt.execute(params![
                stored.seq as i64,
                &*stored.instance,
                e.id,
                e.source,
                e.r#type,
                attribute_text(e, "subject"),
                attribute_text(e, "time"),
                attribute_text(e, "datacontenttype"),
                data,
                json,
            ])?;
        }
    }
    tx.commit()
}

#[tonic::async_trait]
impl Sink for DatabaseSink {
    async fn deliver(&mut self, events: &[Arc<StoredEvent>]) -> Result<(), DeliveryError> {
        let conn = Arc::clone(&self.conn);
        let config = self.config.clone();
        let table = self.table.clone();
        let events = events.to_vec();
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                *guard =
                    Some(open(&config, &table).map_err(|e| format!("cannot open {}: {e}", config.path.display()))?);
            }
            let Some(c) = guard.as_mut() else { return Err("database not open".to_owned()) };
            insert(c, &table, &events).map_err(|e| {
                // Start over with a fresh connection on the next attempt.
                *guard = None;
                format!("cannot insert into {} table {table}: {e}", config.path.display())
            })
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(DeliveryError::retry(message)),
            Err(e) => Err(DeliveryError::retry(format!("database sink task failed: {e}"))),
        }
    }
}
