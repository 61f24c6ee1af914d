//! `file` source: loads YAML and JSON files at start and again whenever one
//! changes, one event per file (like ansible.eda's `file`, which loads them
//! as facts).

mod config;
mod load;
mod watch;

use std::collections::BTreeMap;

use plugboard_sdk::prelude::*;

use crate::config::{Config, File};
use crate::load::Outcome;
use crate::watch::Report;

pub const TYPE_LOADED: &str = "dev.plugboard.file.loaded";
pub const TYPE_INVALID: &str = "dev.plugboard.file.invalid";
pub const TYPE_MISSING: &str = "dev.plugboard.file.missing";

const HELP: &str = "\
file: loads YAML/JSON files at start and again whenever one changes; one event per file.

Config:
  files     required list of .yaml/.yml/.json files (relative paths are relative to the
            host's working directory; each file's directory must exist, the file need not)
  debounce  changes to one file within this window are merged before it is read (100ms)

Events (subject = the file's path):
  dev.plugboard.file.loaded   data = the parsed content; id derived from the path, the
                              modification time and the content
  dev.plugboard.file.invalid  the file cannot be read or parsed (or is over 16 MiB):
                              data = {path, error}; also logged as a warning
  dev.plugboard.file.missing  the file does not exist (at start, or it was deleted):
                              data = {path, error}
A file is reported only when its state changed since its last event: rewriting the same
content, or touching it, emits nothing.
Cursors: the state of every file (a digest of its content) as of the event. After a
restart, files unchanged since their last stored event are not reported again; changed
ones are.";

struct FileSource;

/// Each file's state as of the last event (the cursor, as JSON).
type States = BTreeMap<String, String>;

fn states_from_cursor(cursor: Option<&str>) -> Result<States, PluginError> {
    match cursor {
        None => Ok(States::new()),
        Some(c) => serde_json::from_str(c)
            .map_err(|e| PluginError::invalid_argument(format!("resume cursor is not this source's file states: {e}"))),
    }
}

struct Emitter {
    source: String,
    states: States,
    events: EventSender,
}

impl Emitter {
    /// Reads `file` and sends an event if its state changed.
    async fn check(&mut self, file: &File) -> Result<(), PluginError> {
        let outcome = load::load(file).await;
        let path = file.path.to_string_lossy().into_owned();
        if self.states.get(&path).map(String::as_str) == Some(outcome.state()) {
            tracing::debug!(path = %path, "unchanged");
            return Ok(());
        }
        self.states.insert(path.clone(), outcome.state().to_owned());
        let event = match outcome {
            Outcome::Loaded { value, id, .. } => {
                tracing::info!(path = %path, "loaded");
                EventBuilder::new(TYPE_LOADED, self.source.as_str()).id(id).json(&value)
            }
            Outcome::Invalid { error, .. } => {
                tracing::warn!(path = %path, "cannot load {path}: {error}");
                EventBuilder::new(TYPE_INVALID, self.source.as_str())
                    .json(&serde_json::json!({ "path": path, "error": error }))
            }
            Outcome::Missing { error } => {
                tracing::warn!(path = %path, "{path} does not exist");
                EventBuilder::new(TYPE_MISSING, self.source.as_str())
                    .json(&serde_json::json!({ "path": path, "error": error }))
            }
        };
        let cursor = serde_json::to_string(&self.states).unwrap_or_default();
        self.events.send(event.subject(path).build(), cursor).await?;
        Ok(())
    }
}

#[plugboard_sdk::async_trait]
impl Source for FileSource {
    async fn stream(&self, ctx: SourceContext, events: EventSender) -> Result<(), PluginError> {
        let config: Config = ctx.config()?;
        let settings = config.check().map_err(PluginError::invalid_config)?;
        let states = states_from_cursor(ctx.resume_cursor.as_deref())?;
        // Watch first, then load: a change in between is seen by both at worst.
        let (_watch, mut reports) = watch::start(&settings).map_err(PluginError::unavailable)?;
        tracing::info!(files = settings.files.len(), resumed = !states.is_empty(), "loading and watching files");
        let mut emitter = Emitter { source: format!("/plugboard/file/{}", ctx.instance), states, events };
        for file in &settings.files {
            emitter.check(file).await?;
        }
        while let Some(report) = reports.recv().await {
            match report {
                Report::Changed(paths) => {
                    // In config order, so events for several files come in a stable order.
                    for file in settings.files.iter().filter(|f| paths.contains(&f.path)) {
                        emitter.check(file).await?;
                    }
                }
                Report::Error(e) => tracing::warn!("watch error: {e}"),
            }
        }
        Err(PluginError::internal("the watcher stopped"))
    }
}

fn main() {
    Plugin::new("file", env!("CARGO_PKG_VERSION"))
        .description("loads YAML/JSON files at start and whenever one changes, one event per file")
        .help(HELP)
        .config_schema(config::schema())
        .source(FileSource)
        .serve()
}

#[cfg(test)]
mod tests;
