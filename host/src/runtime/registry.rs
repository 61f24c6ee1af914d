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

/// Two or more executables describing the same plugin name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    pub name: String,
    /// The executables, sorted by file name.
    pub paths: Vec<PathBuf>,
}

impl std::fmt::Display for Clash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        write!(
            f,
            "plugin name {:?} is described by more than one executable: {}; remove or rename all but one",
            self.name,
            files.join(" and ")
        )
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
        let registry = Self { dir: dir.to_owned(), entries };
        for clash in registry.clashes() {
            match registry.canonical(&clash.name) {
                Some(entry) => tracing::warn!(
                    plugin = %clash.name,
                    "{clash}; until then instances naming {:?} run {}",
                    clash.name,
                    entry.path.display()
                ),
                None => tracing::warn!(plugin = %clash.name, "{clash}"),
            }
        }
        Ok(registry)
    }

    /// The executables describing themselves as `name`, when more than one does.
    pub fn clash(&self, name: &str) -> Option<Clash> {
        let mut paths: Vec<PathBuf> =
            self.described().filter(|(_, d)| d.info.name == name).map(|(e, _)| e.path.clone()).collect();
        paths.sort();
        (paths.len() > 1).then(|| Clash { name: name.to_owned(), paths })
    }

    /// Among the executables describing `name`, the one whose file is named
    /// for it (`plugboard-<name>` or `<name>`), when exactly one is: a variant
    /// installed under another file name is then addressed by that file name,
    /// and `name` means the canonical one.
    pub fn canonical(&self, name: &str) -> Option<&Entry> {
        let canonical = format!("plugboard-{name}");
        let mut named = self
            .described()
            .filter(|(e, d)| d.info.name == name && (e.file_name == canonical || e.file_name == name))
            .map(|(e, _)| e);
        let first = named.next()?;
        named.next().is_none().then_some(first)
    }

    /// The clash on `name` when no canonical file settles it: an instance
    /// naming it cannot tell which executable to run.
    pub fn ambiguous(&self, name: &str) -> Option<Clash> {
        self.clash(name).filter(|_| self.canonical(name).is_none())
    }

    /// Every plugin name more than one executable describes, by name.
    pub fn clashes(&self) -> Vec<Clash> {
        self.names().iter().filter_map(|name| self.clash(name)).collect()
    }

    /// A described plugin by its described name, else by file name.
    pub fn find(&self, name: &str) -> Option<(&Entry, &Arc<Described>)> {
        if let Some(entry) = self.canonical(name) {
            return self.described().find(|(e, _)| std::ptr::eq(*e, entry));
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use plugboard_proto::plugboard::v1::PluginKind;

    use super::*;
    use crate::runtime::config::Config;
    use crate::runtime::reload::diff::tests::described;

    fn with_echo_as(extra: &str) -> Registry {
        let mut registry = crate::runtime::reload::diff::tests::registry();
        registry.entries.push(Entry {
            path: Path::new("/plugins").join(extra),
            file_name: extra.into(),
            described: Ok(described("echo", PluginKind::Executor, &["echo"])),
        });
        registry
    }

    fn with_two_echoes() -> Registry {
        let mut registry = with_echo_as("plugboard-echo-copy");
        let original = registry.entries.iter_mut().find(|e| e.file_name == "plugboard-echo").unwrap();
        original.file_name = "plugboard-echo-old".into();
        original.path = Path::new("/plugins").join("plugboard-echo-old");
        registry
    }

    #[test]
    fn a_clash_with_one_canonically_named_file_runs_that_one_and_is_still_listed() {
        let registry = with_echo_as("plugboard-echo-copy");
        assert!(registry.ambiguous("echo").is_none());
        let (entry, _) = registry.find("echo").unwrap();
        assert_eq!(entry.file_name, "plugboard-echo");
        assert_eq!(registry.find("plugboard-echo-copy").unwrap().0.file_name, "plugboard-echo-copy");
        assert_eq!(registry.clashes().len(), 1);
    }

    #[test]
    fn two_executables_of_one_name_are_a_clash_naming_both_files() {
        let registry = with_two_echoes();
        let clash = registry.ambiguous("echo").expect("a clash");
        assert_eq!(clash.paths, [Path::new("/plugins/plugboard-echo-copy"), Path::new("/plugins/plugboard-echo-old")]);
        assert_eq!(registry.clashes(), [clash]);
        assert!(registry.ambiguous("echo2").is_none());
        assert!(crate::runtime::reload::diff::tests::registry().clashes().is_empty());

        // An instance naming it is a plan error that names both files.
        let config = Config::parse("executors: [{ name: e, plugin: echo }, { name: f, plugin: echo2 }]\n").unwrap();
        let err = crate::runtime::plan::plan(&config, &registry, "test.yaml".into()).unwrap_err().to_string();
        assert!(
            err.contains("executors[0] \"e\": plugin name \"echo\" is described by more than one executable: /plugins/plugboard-echo-copy and /plugins/plugboard-echo-old; remove or rename all but one"),
            "{err}"
        );
        assert!(!err.contains("echo2"), "only the clashing name is reported: {err}");

        // The embedded default (every executor) reports it once, not as a duplicate instance.
        let config = crate::runtime::plan::embedded_default(&registry);
        let err = crate::runtime::plan::plan(&config, &registry, "<default>".into()).unwrap_err().to_string();
        assert_eq!(err.matches("described by more than one executable").count(), 1, "{err}");
        assert!(!err.contains("duplicate"), "{err}");
    }
}
