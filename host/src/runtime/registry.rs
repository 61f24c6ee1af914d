//! Discovery: every executable in the plugins directory is started once and
//! asked to describe itself.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;

use crate::plugin::{self, Described, StartOptions};

/// Plugins described at the same time during discovery.
const PARALLEL_DESCRIBES: usize = 8;

/// One executable found in the plugins directory.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub file_name: String,
    /// What it said about itself, or why it could not say.
    pub described: Result<Arc<Described>, String>,
}

impl Entry {
    /// The described name, or the file name for a plugin that failed.
    pub fn name(&self) -> &str {
        match &self.described {
            Ok(d) => &d.info.name,
            Err(_) => &self.file_name,
        }
    }
}

/// Why the plugins directory could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read plugins directory {dir}: {source}")]
pub struct RegistryError {
    pub dir: PathBuf,
    pub source: std::io::Error,
}

/// The plugins found in one directory.
#[derive(Debug, Clone)]
pub struct Registry {
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
}

impl Registry {
    /// Starts every executable in `dir` (in parallel), describes it and stops it.
    pub async fn discover(dir: &Path, options: &StartOptions) -> Result<Self, RegistryError> {
        let paths = executables(dir).map_err(|source| RegistryError { dir: dir.to_owned(), source })?;
        let mut entries: Vec<Entry> = futures_util::stream::iter(paths)
            .map(|path| describe(path, options))
            .buffer_unordered(PARALLEL_DESCRIBES)
            .collect()
            .await;
        entries.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        for e in &entries {
            if let Err(reason) = &e.described {
                tracing::warn!(plugin = %e.file_name, path = %e.path.display(), "cannot describe plugin: {reason}");
            }
        }
        Ok(Self { dir: dir.to_owned(), entries })
    }

    /// A described plugin by its described name, else by file name.
    pub fn find(&self, name: &str) -> Option<(&Entry, &Arc<Described>)> {
        self.described()
            .find(|(_, d)| d.info.name == name)
            .or_else(|| self.described().find(|(e, _)| e.file_name == name))
    }

    /// Whether a file of that name exists but could not be described.
    pub fn broken(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.described.is_err() && e.file_name == name)
    }

    /// Names of the described plugins, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.entries.iter().filter_map(|e| e.described.as_ref().ok()).map(|d| d.info.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn described(&self) -> impl Iterator<Item = (&Entry, &Arc<Described>)> {
        self.entries.iter().filter_map(|e| e.described.as_ref().ok().map(|d| (e, d)))
    }
}

pub(crate) async fn describe(path: PathBuf, options: &StartOptions) -> Entry {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let described = match plugin::launch(&file_name, &path, options).await {
        Ok(handle) => {
            let described = Arc::clone(handle.described());
            handle.shutdown().await;
            Ok(described)
        }
        Err(e) => Err(e.to_string()),
    };
    Entry { path, file_name, described }
}

/// Regular, executable, non-hidden files (symlinks followed), sorted.
fn executables(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}
