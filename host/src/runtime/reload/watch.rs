//! What asks for a reload: changes in the plugins directory, changes of the
//! config file, and SIGHUP.
//!
//! A binary being copied in fires a burst of events, and a half-written file
//! must never be started: events are gathered until the directory is quiet,
//! then the executables' identities (size, mtime, inode) are sampled until
//! two samples agree. Only then is a reload requested.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::identity;

/// What triggered a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    PluginsDir,
    ConfigFile,
    Signal,
    /// The files changed while the host was starting, before they were watched.
    Startup,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::PluginsDir => "plugins directory changed",
            Trigger::ConfigFile => "config file changed",
            Trigger::Signal => "SIGHUP",
            Trigger::Startup => "changed while plugboard started",
        }
    }
}

/// One reload to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRequest {
    pub triggers: BTreeSet<Trigger>,
}

impl ReloadRequest {
    /// "SIGHUP, plugins directory changed"
    pub fn reason(&self) -> String {
        self.triggers.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// What to watch and how patiently.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub plugins_dir: PathBuf,
    /// The config file, when there is one.
    pub config: Option<PathBuf>,
    /// Watch files (`reload.watch`); SIGHUP works either way.
    pub watch_files: bool,
    /// No event for this long ends a burst.
    pub quiet: Duration,
    /// Time between two identity samples of the plugins directory.
    pub settle: Duration,
    /// Give up waiting for the directory to settle after this long.
    pub settle_max: Duration,
}

impl WatchOptions {
    pub fn new(plugins_dir: PathBuf, config: Option<PathBuf>) -> Self {
        Self {
            plugins_dir,
            config,
            watch_files: true,
            quiet: Duration::from_millis(300),
            settle: Duration::from_millis(250),
            settle_max: Duration::from_secs(30),
        }
    }
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch { path: PathBuf, source: notify::Error },
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
}

/// Takes over SIGHUP (whose default would end the process). Call it as
/// early as possible: a SIGHUP that arrives later, even before [`spawn`],
/// is kept for it.
pub fn hangup() -> Result<tokio::signal::unix::Signal, WatchError> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).map_err(WatchError::Signal)
}

/// Starts watching; reload requests arrive on the returned channel until
/// `shutdown` is cancelled.
pub fn spawn(
    options: WatchOptions,
    hup: tokio::signal::unix::Signal,
    shutdown: CancellationToken,
) -> Result<mpsc::Receiver<ReloadRequest>, WatchError> {
    let (fs_tx, fs_rx) = mpsc::unbounded_channel();
    let watcher = if options.watch_files { Some(watch_files(&options, fs_tx)?) } else { None };
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(run(options, watcher, fs_rx, hup, tx, shutdown));
    Ok(rx)
}

/// The config file and plugins directory, canonical (events name canonical paths).
struct Targets {
    plugins_dir: PathBuf,
    config: Option<(PathBuf, std::ffi::OsString)>,
}

impl Targets {
    fn classify(&self, path: &Path) -> Option<Trigger> {
        if let Some((dir, name)) = &self.config
            && path.parent() == Some(dir.as_path())
            && path.file_name() == Some(name.as_os_str())
        {
            return Some(Trigger::ConfigFile);
        }
        let name = path.file_name()?.to_string_lossy();
        // Hidden files are never plugins: a copy staged as `.name` and renamed shows as the rename.
        (path.parent() == Some(self.plugins_dir.as_path()) && !name.starts_with('.')).then_some(Trigger::PluginsDir)
    }
}

fn watch_files(
    options: &WatchOptions,
    tx: mpsc::UnboundedSender<Trigger>,
) -> Result<notify::RecommendedWatcher, WatchError> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let plugins_dir = canonical(&options.plugins_dir);
    // Editors replace a config by renaming a new file over it: watch its directory.
    let config = options.config.as_ref().and_then(|c| {
        let c = canonical(c);
        Some((c.parent()?.to_owned(), c.file_name()?.to_owned()))
    });
    let targets = Targets { plugins_dir: plugins_dir.clone(), config: config.clone() };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Starting a plugin reads its binary: reads must not trigger reloads.
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        for path in &event.paths {
            if let Some(trigger) = targets.classify(path) {
                let _ = tx.send(trigger);
            }
        }
    })
    .map_err(|source| WatchError::Watch { path: plugins_dir.clone(), source })?;
    watcher
        .watch(&plugins_dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Watch { path: plugins_dir.clone(), source })?;
    if let Some((dir, _)) = &config
        && dir != &plugins_dir
    {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Watch { path: dir.clone(), source })?;
    }
    Ok(watcher)
}

async fn run(
    options: WatchOptions,
    // Kept alive for as long as requests are wanted.
    _watcher: Option<notify::RecommendedWatcher>,
    mut fs_rx: mpsc::UnboundedReceiver<Trigger>,
    mut hup: tokio::signal::unix::Signal,
    tx: mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) {
    loop {
        let mut triggers = BTreeSet::new();
        tokio::select! {
            Some(trigger) = fs_rx.recv() => {
                triggers.insert(trigger);
                // The rest of the burst.
                while let Ok(Some(trigger)) = tokio::time::timeout(options.quiet, fs_rx.recv()).await {
                    triggers.insert(trigger);
                }
            }
            Some(()) = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                triggers.insert(Trigger::Signal);
            }
            _ = shutdown.cancelled() => return,
        }
        tokio::select! {
            _ = settle(&options) => {}
            _ = shutdown.cancelled() => return,
        }
        // Whatever arrived while settling is covered by this reload.
        while let Ok(trigger) = fs_rx.try_recv() {
            triggers.insert(trigger);
        }
        if tx.send(ReloadRequest { triggers }).await.is_err() {
            return;
        }
    }
}

/// Waits until no executable in the plugins directory changes size, mtime
/// or inode between two samples (a copy in progress keeps changing).
async fn settle(options: &WatchOptions) {
    let deadline = tokio::time::Instant::now() + options.settle_max;
    let mut last = identity::snapshot(&options.plugins_dir).ok();
    loop {
        tokio::time::sleep(options.settle).await;
        let now = identity::snapshot(&options.plugins_dir).ok();
        if now == last {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                plugins_dir = %options.plugins_dir.display(),
                "plugins directory still changing after {:?}; reloading anyway",
                options.settle_max
            );
            return;
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn options(dir: &Path) -> WatchOptions {
        WatchOptions {
            quiet: Duration::from_millis(100),
            settle: Duration::from_millis(100),
            ..WatchOptions::new(dir.join("plugins"), Some(dir.join("plugboard.yaml")))
        }
    }

    async fn next(rx: &mut mpsc::Receiver<ReloadRequest>) -> ReloadRequest {
        tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("a reload request").expect("open")
    }

    #[tokio::test]
    async fn a_burst_of_writes_is_one_request_once_the_file_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("plugboard.yaml"), "").unwrap();
        let shutdown = CancellationToken::new();
        let mut rx = spawn(options(dir.path()), hangup().unwrap(), shutdown.clone()).unwrap();

        let exe = dir.path().join("plugins/plugboard-new");
        let writer = {
            let exe = exe.clone();
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut f = std::fs::File::create(&exe).unwrap();
                std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
                for _ in 0..20 {
                    f.write_all(&[0u8; 4096]).unwrap();
                    f.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let request = next(&mut rx).await;
        writer.await.unwrap();
        assert_eq!(request.triggers, BTreeSet::from([Trigger::PluginsDir]));
        // The request came only once the whole file was there.
        assert_eq!(std::fs::metadata(&exe).unwrap().len(), 20 * 4096);

        std::fs::write(dir.path().join("plugboard.yaml"), "sources: []\n").unwrap();
        assert_eq!(next(&mut rx).await.triggers, BTreeSet::from([Trigger::ConfigFile]));

        // Other files beside the config do not count.
        std::fs::write(dir.path().join("other.txt"), "x").unwrap();
        std::fs::write(dir.path().join("plugins/.staged"), "x").unwrap();
        std::fs::write(dir.path().join("plugboard.yaml"), "sources: [] # again\n").unwrap();
        assert_eq!(next(&mut rx).await.triggers, BTreeSet::from([Trigger::ConfigFile]));
        shutdown.cancel();
    }
}
