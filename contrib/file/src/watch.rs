//! Knowing when a configured file may have changed. The directories holding
//! the files are watched, not the files: editors and deploy tools replace a
//! file by renaming a new one over it, and a file may not exist yet.

use std::collections::BTreeSet;
use std::path::PathBuf;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

use crate::config::Settings;

pub enum Report {
    /// These configured files may have changed: read them again.
    Changed(BTreeSet<PathBuf>),
    Error(String),
}

/// A running watch; dropping it stops watching.
pub struct Watch {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

pub fn start(settings: &Settings) -> Result<(Watch, mpsc::Receiver<Report>), String> {
    let files: BTreeSet<PathBuf> = settings.files.iter().map(|f| f.path.clone()).collect();
    let (tx, rx) = mpsc::channel(64);
    let watched = files.clone();
    let mut debouncer = new_debouncer(settings.debounce, None, move |result: DebounceEventResult| {
        let report = match result {
            Ok(events) => {
                let mut changed = BTreeSet::new();
                for event in &events {
                    if event.need_rescan() {
                        // Changes were lost: read everything again.
                        changed.extend(watched.iter().cloned());
                    }
                    changed.extend(event.paths.iter().filter(|p| watched.contains(*p)).cloned());
                }
                if changed.is_empty() {
                    return;
                }
                Report::Changed(changed)
            }
            Err(errors) => Report::Error(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
        };
        let _ = tx.blocking_send(report);
    })
    .map_err(|e| format!("cannot start watching: {e}"))?;
    let dirs: BTreeSet<PathBuf> = files.iter().filter_map(|f| f.parent().map(PathBuf::from)).collect();
    for dir in &dirs {
        let fail = |e: &dyn std::fmt::Display| {
            let of: Vec<String> =
                files.iter().filter(|f| f.parent() == Some(dir.as_path())).map(|f| f.display().to_string()).collect();
            format!("cannot watch {} (the directory of {}): {e}", dir.display(), of.join(", "))
        };
        // notify's own message for a missing directory ("No path was found") says less.
        std::fs::metadata(dir).map_err(|e| fail(&e))?;
        debouncer.watch(dir, RecursiveMode::NonRecursive).map_err(|e| fail(&e))?;
    }
    Ok((Watch { _debouncer: debouncer }, rx))
}
