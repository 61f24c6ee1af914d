//! `recorder`: a plugin for the end-to-end tests, both SOURCE and SINK.
//!
//! As a source it streams the events of its `script` config verbatim (no
//! validation: tests use it to send invalid events, duplicates and types to
//! drop), with cursor = index, resuming after the cursor; and it turns every
//! HTTP request forwarded to it into events whose data echoes the request,
//! all headers included (so tests can check that credentials are redacted).
//! Request headers steer it: `x-event-type`, `x-event-id`, `x-event-count`,
//! `x-invalid: 1` (answer with an invalid event), `x-reply-status`.
//!
//! As a sink it appends every published event (JSON format) to `path`,
//! refusing the first `fail_first` publishes and exiting with status 3 on the
//! publish numbered `exit_on_publish` (counting from 1, per process).

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use plugboard_sdk::prelude::*;
use plugboard_sdk::proto::io::cloudevents::v1::cloud_event::Data;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceConfig {
    #[serde(default)]
    script: Vec<ScriptedEvent>,
}

/// An event exactly as the test wrote it (missing fields stay empty).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedEvent {
    #[serde(default)]
    id: String,
    #[serde(default)]
    source: String,
    #[serde(default = "spec_version")]
    specversion: String,
    #[serde(default, rename = "type")]
    ty: String,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

fn spec_version() -> String {
    "1.0".into()
}

impl ScriptedEvent {
    fn to_event(&self) -> CloudEvent {
        let mut event = CloudEvent {
            id: self.id.clone(),
            source: self.source.clone(),
            spec_version: self.specversion.clone(),
            r#type: self.ty.clone(),
            data: self.data.as_ref().map(|d| Data::TextData(d.to_string())),
            ..Default::default()
        };
        for (k, v) in &self.attributes {
            event.attributes.insert(k.clone(), plugboard_sdk::proto::event::string_attr(v.clone()));
        }
        event
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkConfig {
    path: std::path::PathBuf,
    #[serde(default)]
    fail_first: u64,
    #[serde(default)]
    exit_on_publish: Option<u64>,
}

struct Recorder {
    publishes: AtomicU64,
}

#[plugboard_sdk::async_trait]
impl Source for Recorder {
    async fn stream(&self, ctx: SourceContext, events: EventSender) -> Result<(), PluginError> {
        let config: SourceConfig = ctx.config()?;
        let start = match ctx.resume_cursor.as_deref() {
            None => 0,
            Some(c) => c.parse::<usize>().map_err(|_| PluginError::invalid_argument("bad cursor"))? + 1,
        };
        for (i, scripted) in config.script.iter().enumerate().skip(start) {
            events.send(scripted.to_event(), i.to_string()).await?;
        }
        // Stay up for HTTP requests.
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn handle_request(&self, ctx: SourceContext, req: HttpRequest) -> Result<HttpResponse, PluginError> {
        let header = |name: &str| req.headers.get(name).cloned();
        let count: usize = header("x-event-count").and_then(|c| c.parse().ok()).unwrap_or(1);
        let ty = header("x-event-type").unwrap_or_else(|| "dev.plugboard.test.request".into());
        let data = serde_json::json!({
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "headers": req.headers,
            "body": String::from_utf8_lossy(&req.body),
        });
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let mut builder = EventBuilder::new(ty.as_str(), format!("/test/recorder/{}", ctx.instance)).json(&data);
            if let Some(id) = header("x-event-id") {
                builder = builder.id(if count == 1 { id } else { format!("{id}-{i}") });
            }
            out.push(builder.build());
        }
        if header("x-invalid").as_deref() == Some("1") {
            out.push(CloudEvent {
                id: String::new(),
                source: "/x".into(),
                spec_version: "1.0".into(),
                r#type: "t".into(),
                ..Default::default()
            });
        }
        let status = header("x-reply-status").and_then(|s| s.parse().ok()).unwrap_or(200);
        let ids: Vec<String> = out.iter().map(|e| e.id.clone()).collect();
        let mut headers = std::collections::HashMap::new();
        headers.insert("x-recorded".to_owned(), ids.join(","));
        Ok(HttpResponse { status, headers, body: format!("recorded {}\n", ids.join(",")).into_bytes(), events: out })
    }
}

#[plugboard_sdk::async_trait]
impl Sink for Recorder {
    async fn publish(&self, ctx: SinkContext, events: Vec<CloudEvent>) -> Result<(), PluginError> {
        let config: SinkConfig = ctx.config()?;
        let n = self.publishes.fetch_add(1, Ordering::SeqCst) + 1;
        if config.exit_on_publish == Some(n) {
            std::process::exit(3);
        }
        if n <= config.fail_first {
            return Err(PluginError::unavailable(format!("refusing publish {n} of the first {}", config.fail_first)));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(|e| PluginError::internal(format!("open {}: {e}", config.path.display())))?;
        let mut buf = Vec::new();
        for e in &events {
            buf.extend(plugboard_sdk::proto::event::to_json_vec(e));
            buf.push(b'\n');
        }
        file.write_all(&buf).map_err(|e| PluginError::internal(format!("write: {e}")))?;
        Ok(())
    }
}

fn main() {
    Plugin::new("recorder", "0.1.0")
        .description("test plugin: scripted source, request echo, file-recording sink")
        .source(Recorder { publishes: AtomicU64::new(0) })
        .sink(Recorder { publishes: AtomicU64::new(0) })
        .serve()
}
