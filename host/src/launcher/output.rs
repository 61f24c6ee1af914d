//! The plugin's stdout and stderr.
//!
//! stdout: the first line is the handshake; everything after it is drained
//! and dropped so the plugin never blocks on a full pipe.
//! stderr: each line is parsed as an hclog JSON entry (or a `[LEVEL]` line)
//! and re-logged through `tracing` under the plugin's name; the last lines are
//! kept for error messages.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::oneshot;
use tracing::Instrument as _;

/// Longest handshake line accepted.
const MAX_HANDSHAKE_LINE: usize = 64 * 1024;
/// Longer stderr lines are logged in pieces of this size (go-plugin's buffer).
const MAX_LOG_LINE: usize = 64 * 1024;
/// Stderr lines kept for diagnostics.
const STDERR_TAIL: usize = 20;

/// The fields every log line about a plugin process carries.
#[derive(Debug, Clone)]
pub(crate) struct LogLabels {
    /// The instance (the launch's name).
    pub instance: Arc<str>,
    /// The plugin it runs.
    pub plugin: Arc<str>,
}

/// How the first stdout line ended.
#[derive(Debug)]
pub(crate) enum FirstLine {
    Line(String),
    /// stdout closed before a full line.
    Eof(String),
    TooLong,
}

/// Reads the handshake line, then drains stdout until EOF.
pub(crate) fn read_stdout<R: AsyncRead + Unpin + Send + 'static>(
    stdout: R,
    labels: LogLabels,
    after_handshake: Arc<std::sync::atomic::AtomicU64>,
) -> oneshot::Receiver<FirstLine> {
    let (tx, rx) = oneshot::channel();
    let task = async move {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        let first = {
            let mut limited = (&mut reader).take(MAX_HANDSHAKE_LINE as u64);
            match limited.read_until(b'\n', &mut line).await {
                Ok(_) if line.ends_with(b"\n") => FirstLine::Line(String::from_utf8_lossy(&line).into_owned()),
                Ok(n) if n >= MAX_HANDSHAKE_LINE => FirstLine::TooLong,
                _ => FirstLine::Eof(String::from_utf8_lossy(&line).into_owned()),
            }
        };
        let _ = tx.send(first);
        let mut dropped = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            dropped += n as u64;
            after_handshake.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if dropped > 0 {
            tracing::debug!(
                plugin = %labels.plugin,
                instance = %labels.instance,
                bytes = dropped,
                "discarded stdout written after the handshake"
            );
        }
    };
    // In the span of whoever launched the plugin (its instance, under `run`).
    tokio::spawn(task.in_current_span());
    rx
}

/// The last stderr lines of a plugin.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: &str) {
        if let Ok(mut tail) = self.0.lock() {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
    }

    /// The kept lines, oldest first, joined by newlines.
    pub fn text(&self) -> String {
        self.0.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }
}

/// Re-logs stderr until EOF.
pub(crate) fn read_stderr<R: AsyncRead + Unpin + Send + 'static>(
    stderr: R,
    labels: LogLabels,
    tail: StderrTail,
    redact: Vec<String>,
) {
    let task = async move {
        let mut reader = BufReader::with_capacity(MAX_LOG_LINE, stderr);
        let mut line = Vec::with_capacity(256);
        let mut state = LogState::default();
        loop {
            line.clear();
            let n = match (&mut reader).take(MAX_LOG_LINE as u64).read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let text = String::from_utf8_lossy(&line[..n]);
            let text = text.trim_end_matches(['\n', '\r']);
            if text.is_empty() {
                continue;
            }
            let redacted;
            let text = if redact.iter().any(|r| !r.is_empty() && text.contains(r.as_str())) {
                redacted = redact
                    .iter()
                    .filter(|r| !r.is_empty())
                    .fold(text.to_owned(), |t, r| t.replace(r.as_str(), "********"));
                redacted.as_str()
            } else {
                text
            };
            tail.push(text);
            relog(&labels, text, &mut state);
        }
    };
    // In the span of whoever launched the plugin (its instance, under `run`).
    tokio::spawn(task.in_current_span());
}

/// Once a plugin prints a panic, its untagged lines are errors too.
#[derive(Debug, Default)]
pub(crate) struct LogState {
    panicking: bool,
}

/// Log levels of plugin output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One stderr line, understood.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LogLine {
    pub level: Level,
    pub message: String,
    /// Extra hclog fields as `key=value` pairs.
    pub fields: String,
}

fn parse_level(s: &str) -> Option<Level> {
    Some(match s.to_ascii_lowercase().as_str() {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "info" => Level::Info,
        "warn" | "warning" => Level::Warn,
        "error" => Level::Error,
        _ => return None,
    })
}

/// Understands a line as go-plugin does: hclog JSON, then `[LEVEL]` prefixes,
/// then panics, else debug.
pub(crate) fn parse_line(line: &str, state: &mut LogState) -> LogLine {
    if line.starts_with('{')
        && let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_str::<serde_json::Value>(line)
    {
        let message = obj.remove("@message");
        let level = obj.remove("@level");
        if let (Some(serde_json::Value::String(message)), Some(serde_json::Value::String(level))) = (message, level) {
            obj.remove("@timestamp");
            let fields = obj
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(" ");
            return LogLine { level: parse_level(&level).unwrap_or(Level::Debug), message, fields };
        }
        return LogLine { level: Level::Debug, message: line.to_owned(), fields: String::new() };
    }
    for (prefix, level) in [
        ("[TRACE]", Level::Trace),
        ("[DEBUG]", Level::Debug),
        ("[INFO]", Level::Info),
        ("[WARN]", Level::Warn),
        ("[ERROR]", Level::Error),
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return LogLine { level, message: rest.trim_start().to_owned(), fields: String::new() };
        }
    }
    let is_panic = line.starts_with("panic: ")
        || line.starts_with("fatal error: ")
        || (line.starts_with("thread '") && line.contains("' panicked at"));
    if is_panic {
        state.panicking = true;
    }
    let level = if state.panicking { Level::Error } else { Level::Debug };
    LogLine { level, message: line.to_owned(), fields: String::new() }
}

fn relog(labels: &LogLabels, line: &str, state: &mut LogState) {
    let l = parse_line(line, state);
    let text = if l.fields.is_empty() { l.message } else { format!("{} {}", l.message, l.fields) };
    let (plugin, instance) = (&*labels.plugin, &*labels.instance);
    match l.level {
        Level::Trace => tracing::trace!(plugin, instance, "{text}"),
        Level::Debug => tracing::debug!(plugin, instance, "{text}"),
        Level::Info => tracing::info!(plugin, instance, "{text}"),
        Level::Warn => tracing::warn!(plugin, instance, "{text}"),
        Level::Error => tracing::error!(plugin, instance, "{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hclog_json_lines_keep_level_message_and_fields() {
        let mut s = LogState::default();
        let l = parse_line(
            r#"{"@level":"warn","@message":"plugin address","@module":"kv","@timestamp":"2026-11-22T09:32:02.529743Z","network":"unix","n":3}"#,
            &mut s,
        );
        assert_eq!(l.level, Level::Warn);
        assert_eq!(l.message, "plugin address");
        assert_eq!(l.fields, "@module=kv n=3 network=unix");
    }

    #[test]
    fn json_without_hclog_keys_is_debug_verbatim() {
        let mut s = LogState::default();
        let l = parse_line(r#"{"level":"info","msg":"logrus"}"#, &mut s);
        assert_eq!(l.level, Level::Debug);
        assert_eq!(l.message, r#"{"level":"info","msg":"logrus"}"#);
    }

    #[test]
    fn bracket_prefixes_and_panics() {
        let mut s = LogState::default();
        assert_eq!(parse_line("[ERROR] boom", &mut s).level, Level::Error);
        assert_eq!(parse_line("[INFO] ok", &mut s).message, "ok");
        assert_eq!(parse_line("plain text", &mut s).level, Level::Debug);
        assert_eq!(parse_line("thread 'main' panicked at src/main.rs:3:5:", &mut s).level, Level::Error);
        assert_eq!(parse_line("note: run with RUST_BACKTRACE=1", &mut s).level, Level::Error);
    }
}
