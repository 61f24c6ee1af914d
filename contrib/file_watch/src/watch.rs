//! Watching the roots with notify (inotify on Linux) through
//! notify-debouncer-full, which pairs a rename's two halves into one event
//! and merges bursts of writes; each debounced event becomes one [`Change`].

use std::path::{Path, PathBuf};

use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebouncedEvent, Debouncer, RecommendedCache, new_debouncer};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Modified,
    Deleted,
    Moved,
}

impl ChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Moved => "moved",
        }
    }
}

/// One reported change (the event's data, in watchdog's terms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub change: ChangeKind,
    pub src_path: PathBuf,
    /// Where it was moved to (moves only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_path: Option<PathBuf>,
    /// "file", "dir", "symlink", "other", or "unknown" (e.g. gone before we looked).
    #[serde(rename = "type")]
    pub file_type: &'static str,
    /// The configured path the change happened under.
    pub root_path: PathBuf,
}

/// What the watcher thread hands over.
pub enum Report {
    Change(Change),
    /// The kernel's event queue overflowed: some changes were lost.
    Overflow,
    Error(String),
}

/// A running watch; dropping it stops watching.
pub struct Watch {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

/// Starts watching every root (they must exist). Changes arrive on the receiver.
pub fn start(settings: &Settings) -> Result<(Watch, mpsc::Receiver<Report>), String> {
    for root in &settings.roots {
        if let Err(e) = std::fs::symlink_metadata(root) {
            return Err(format!("cannot watch {}: {e}", root.display()));
        }
    }
    // Bounded: if the source cannot keep up, the debouncer thread waits
    // (and inotify's own queue absorbs, then reports an overflow).
    let (tx, rx) = mpsc::channel(1024);
    let roots = settings.roots.clone();
    let ignore = settings.ignore.clone();
    let mut debouncer =
        new_debouncer(settings.debounce, None, move |result: notify_debouncer_full::DebounceEventResult| {
            let reports: Vec<Report> = match result {
                Ok(events) => events.iter().filter_map(|e| report(e, &roots, ignore.as_ref())).collect(),
                Err(errors) => errors.into_iter().map(|e| Report::Error(e.to_string())).collect(),
            };
            for r in reports {
                if tx.blocking_send(r).is_err() {
                    return; // the source has stopped
                }
            }
        })
        .map_err(|e| format!("cannot start watching: {e}"))?;
    let mode = if settings.recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
    for root in &settings.roots {
        debouncer.watch(root, mode).map_err(|e| format!("cannot watch {}: {e}", root.display()))?;
    }
    Ok((Watch { _debouncer: debouncer }, rx))
}

fn report(event: &DebouncedEvent, roots: &[PathBuf], ignore: Option<&regex::RegexSet>) -> Option<Report> {
    if event.need_rescan() {
        return Some(Report::Overflow);
    }
    let first = event.paths.first()?.clone();
    let (change, dest_path, known_type) = match event.kind {
        EventKind::Create(kind) => (ChangeKind::Created, None, create_type(kind)),
        EventKind::Remove(kind) => (ChangeKind::Deleted, None, remove_type(kind)),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            (ChangeKind::Moved, Some(event.paths.get(1)?.clone()), None)
        }
        // One half of a rename: moved in from outside the watched paths, or out of them.
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => (ChangeKind::Created, None, None),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => (ChangeKind::Deleted, None, None),
        EventKind::Modify(ModifyKind::Name(_)) => {
            let change = if first.exists() { ChangeKind::Created } else { ChangeKind::Deleted };
            (change, None, None)
        }
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Other) => {
            (ChangeKind::Modified, None, None)
        }
        // Metadata-only changes (chmod, touch), reads and opens are not changes of content.
        EventKind::Modify(ModifyKind::Metadata(_)) | EventKind::Access(_) | EventKind::Any | EventKind::Other => {
            return None;
        }
    };
    if let Some(set) = ignore {
        let ignored = |p: &Path| set.is_match(&p.to_string_lossy());
        if ignored(&first) && dest_path.as_deref().is_none_or(ignored) {
            return None;
        }
    }
    let existing = dest_path.as_deref().unwrap_or(&first);
    let file_type = known_type.unwrap_or_else(|| file_type(existing));
    let root_path = roots.iter().filter(|r| first.starts_with(r)).max_by_key(|r| r.as_os_str().len())?.clone();
    Some(Report::Change(Change { change, src_path: first, dest_path, file_type, root_path }))
}

fn create_type(kind: CreateKind) -> Option<&'static str> {
    match kind {
        CreateKind::File => Some("file"),
        CreateKind::Folder => Some("dir"),
        _ => None,
    }
}

fn remove_type(kind: RemoveKind) -> Option<&'static str> {
    match kind {
        RemoveKind::File => Some("file"),
        RemoveKind::Folder => Some("dir"),
        _ => Some("unknown"),
    }
}

fn file_type(path: &Path) -> &'static str {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => "file",
        Ok(m) if m.is_dir() => "dir",
        Ok(m) if m.file_type().is_symlink() => "symlink",
        Ok(_) => "other",
        Err(_) => "unknown",
    }
}
