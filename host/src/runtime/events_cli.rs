//! `plugboard events ...` and `plugboard send`: looking into the event store
//! (read-only, safe while a host runs), asking for replays, and posting an
//! event to a running host.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};

use super::store::{ListFilter, Reader};

fn micros_text(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Events read from the store per page, so a large store is listed in
/// bounded memory.
const LIST_PAGE: usize = 10_000;

/// `events list`: stored events, oldest first.
pub fn list(state_dir: &Path, filter: &ListFilter, json: bool) -> anyhow::Result<ExitCode> {
    let mut reader = Reader::open(state_dir)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if !json {
        writeln!(out, "{:<8} {:<16} {:<32} {:<36} TIME", "SEQ", "SOURCE", "TYPE", "ID")?;
    }
    let mut page = filter.clone();
    let mut left = filter.limit.unwrap_or(usize::MAX);
    let mut listed = 0usize;
    while left > 0 {
        page.limit = Some(left.min(LIST_PAGE));
        let events = reader.list(&page)?;
        let Some(last) = events.last().map(|e| e.stored.seq) else { break };
        for e in &events {
            if json {
                write!(
                    out,
                    "{{\"seq\":{},\"instance\":{},\"stored_at\":\"{}\",\"event\":",
                    e.stored.seq,
                    serde_json::to_string(&*e.stored.instance)?,
                    micros_text(e.stored_at)
                )?;
                serde_json::to_writer(&mut out, &plugboard_proto::event::Json(&e.stored.event))?;
                writeln!(out, "}}")?;
            } else {
                let time = super::routing::filter::attribute_text(&e.stored.event, "time").unwrap_or_default();
                writeln!(
                    out,
                    "{:<8} {:<16} {:<32} {:<36} {}",
                    e.stored.seq, e.stored.instance, e.stored.event.r#type, e.stored.event.id, time
                )?;
            }
        }
        listed += events.len();
        left -= events.len();
        page.since = Some(last + 1);
    }
    if listed == 0 && !json {
        writeln!(out, "(no events)")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `events dead-letters`: events sinks gave up on.
pub fn dead_letters(state_dir: &Path, sink: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let mut reader = Reader::open(state_dir)?;
    let dead = reader.dead_letters(sink)?;
    let seqs: Vec<u64> = dead.iter().map(|d| d.seq).collect();
    let events: std::collections::HashMap<u64, _> =
        reader.events_by_seq(&seqs)?.into_iter().map(|e| (e.seq, e)).collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        for d in &dead {
            let event = events.get(&d.seq).map(|e| {
                serde_json::from_slice::<serde_json::Value>(&plugboard_proto::event::to_json_vec(&e.event))
                    .unwrap_or_default()
            });
            let line = serde_json::json!({
                "sink": d.sink,
                "seq": d.seq,
                "attempts": d.attempts,
                "error": d.error,
                "dead_at": micros_text(d.dead_at),
                "event": event,
            });
            writeln!(out, "{line}")?;
        }
    } else {
        writeln!(
            out,
            "{:<16} {:<8} {:<8} {:<24} {:<32} {:<36} ERROR",
            "SINK", "SEQ", "ATTEMPTS", "DEAD AT", "TYPE", "ID"
        )?;
        for d in &dead {
            let (ty, id) =
                events.get(&d.seq).map(|e| (e.event.r#type.as_str(), e.event.id.as_str())).unwrap_or(("?", "?"));
            writeln!(
                out,
                "{:<16} {:<8} {:<8} {:<24} {:<32} {:<36} {}",
                d.sink,
                d.seq,
                d.attempts,
                micros_text(d.dead_at),
                ty,
                id,
                d.error
            )?;
        }
        if dead.is_empty() {
            writeln!(out, "(no dead letters)")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `events replay`: files a replay request the running (or next) host applies.
pub fn replay(state_dir: &Path, sink: &str, since: Option<u64>) -> anyhow::Result<ExitCode> {
    let reader = Reader::open(state_dir)?;
    let sinks = reader.sink_cursors()?;
    if !sinks.contains_key(sink) {
        let mut known: Vec<&str> = sinks.keys().map(String::as_str).collect();
        known.sort_unstable();
        anyhow::bail!(
            "no sink named {sink:?} has run with this store; sinks: {}",
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        );
    }
    let what = match since {
        Some(since) => format!("every event from seq {since} on"),
        None => {
            let n = reader.dead_letters(Some(sink))?.len();
            if n == 0 {
                println!("sink {sink:?} has no dead letters");
                return Ok(ExitCode::SUCCESS);
            }
            format!("its {n} dead letter{}", if n == 1 { "" } else { "s" })
        }
    };
    let id = reader.request_replay(sink, since)?;
    println!(
        "replay {id} requested: sink {sink:?} gets {what} again; a running host starts within a second, otherwise the next `plugboard run` does"
    );
    Ok(ExitCode::SUCCESS)
}

/// What `send` posts.
pub struct SendArgs<'a> {
    pub url: &'a str,
    pub token: Option<&'a str>,
    pub ty: &'a str,
    pub source: &'a str,
    pub id: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub data: Option<&'a str>,
}

/// `send`: one structured-mode event to a running host's `POST /v1/events`.
pub async fn send(args: SendArgs<'_>) -> anyhow::Result<ExitCode> {
    let id = args.id.map(str::to_owned).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut event = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": args.source,
        "type": args.ty,
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
    });
    if let Some(subject) = args.subject {
        event["subject"] = subject.into();
    }
    if let Some(data) = args.data {
        let data: serde_json::Value = serde_json::from_str(data).context("--data is not JSON")?;
        event["datacontenttype"] = "application/json".into();
        event["data"] = data;
    }
    let url = format!("{}/v1/events", args.url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot build an HTTP client")?;
    let mut request =
        client.post(&url).header(reqwest::header::CONTENT_TYPE, "application/cloudevents+json").body(event.to_string());
    if let Some(token) = args.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("cannot reach {url} (is `plugboard run` running?)"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    if status == reqwest::StatusCode::ACCEPTED {
        match reply["seqs"].get(0).and_then(|s| s.as_u64()) {
            Some(seq) => println!("stored event {id} (seq {seq})"),
            None if reply["duplicates"].as_u64() == Some(1) => println!("event {id} was already stored"),
            None => println!("event {id} accepted and dropped by drop_types"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let message = reply["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| reply.to_string());
    anyhow::bail!("{url} answered {status}: {message}")
}
