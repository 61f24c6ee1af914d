//! `file_watch` source: watches files and directories and emits
//! created/modified/deleted/moved events (like ansible.eda's `file_watch`,
//! which uses python's watchdog; here notify and inotify).

mod config;
mod watch;

use plugboard_sdk::prelude::*;

use crate::config::Config;
use crate::watch::{ChangeKind, Report};

const HELP: &str = "\
file_watch: reports changes under the watched paths.

Config:
  path | paths     a file or directory, or a list of them (required; they must exist;
                   relative paths are relative to the host's working directory)
  recursive        watch subdirectories too (false)
  ignore_regexes   changes whose every path matches one of these regexes are not reported
  debounce         changes to one path within this window are merged (100ms)

Events: type dev.plugboard.file_watch.created | .modified | .deleted | .moved; subject = the
path; data = {change, src_path, dest_path (moved only), type: file|dir|symlink|other|unknown,
root_path}. A move into the watched paths is reported as created, out of them as deleted.
Metadata-only changes (chmod, touch) are not reported. When a watched path itself is
deleted the stream fails after reporting it, so the host restarts the source (with backoff)
until the path is back. A kernel queue overflow is logged as a warning: changes were lost.
Cursors: none (changes cannot be replayed; after a restart, watching starts afresh).";

struct FileWatch;

#[plugboard_sdk::async_trait]
impl Source for FileWatch {
    async fn stream(&self, ctx: SourceContext, events: EventSender) -> Result<(), PluginError> {
        let config: Config = ctx.config()?;
        let settings = config.check().map_err(PluginError::invalid_config)?;
        let (_watch, mut reports) = watch::start(&settings).map_err(PluginError::unavailable)?;
        let roots: Vec<String> = settings.roots.iter().map(|r| r.display().to_string()).collect();
        tracing::info!(paths = ?roots, recursive = settings.recursive, "watching");
        let source = format!("/plugboard/file_watch/{}", ctx.instance);
        while let Some(report) = reports.recv().await {
            let change = match report {
                Report::Change(change) => change,
                Report::Overflow => {
                    tracing::warn!("the kernel's event queue overflowed: some changes were not reported");
                    continue;
                }
                Report::Error(e) => {
                    tracing::warn!("watch error: {e}");
                    continue;
                }
            };
            let root_gone = change.change == ChangeKind::Deleted && settings.roots.contains(&change.src_path);
            let event =
                EventBuilder::new(format!("dev.plugboard.file_watch.{}", change.change.name()), source.as_str())
                    .subject(change.src_path.to_string_lossy())
                    .json(&change)
                    .build();
            events.send(event, "").await?;
            if root_gone {
                return Err(PluginError::unavailable(format!(
                    "watched path {} was deleted",
                    change.src_path.display()
                )));
            }
        }
        Err(PluginError::internal("the watcher stopped"))
    }
}

fn main() {
    Plugin::new("file_watch", env!("CARGO_PKG_VERSION"))
        .description("watches files and directories and emits created/modified/deleted/moved events")
        .help(HELP)
        .config_schema(config::schema())
        .source(FileWatch)
        .serve()
}

#[cfg(test)]
mod tests;
