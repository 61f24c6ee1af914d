//! The `plugboard` command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::commands::client::RemoteClient;
use super::commands::http::CommandBody;
use super::commands::{Caller, CommandRequest, CommandService, shell};
use super::config::Config;
use super::events_cli;
use super::executors::ExecutorPool;
use super::host::Host;
use super::plan::{self, Plan};
use super::registry::Registry;
use super::store::ListFilter;

/// plugboard: a plugin host for event-driven automation and chat-ops.
#[derive(Debug, Parser)]
#[command(name = "plugboard", version, about)]
pub struct Cli {
    /// Log filter (tracing syntax), e.g. "info" or "plugboard_host=debug".
    #[arg(long, global = true, env = "PLUGBOARD_LOG")]
    log_level: Option<String>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Directory of plugin executables (overrides the config's plugins_dir).
    #[arg(long, global = true, env = "PLUGBOARD_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// HTTP listen address for `run` (overrides the config's http.listen; port 0 picks one).
    #[arg(long, global = true, env = "PLUGBOARD_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Directory of the host's durable state, the event store (overrides the
    /// config's state_dir; default $XDG_STATE_HOME/plugboard, i.e. ~/.local/state/plugboard).
    #[arg(long, global = true, env = super::state::STATE_DIR_ENV)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run sources, executors and the event pipeline (without `sinks:` in the
    /// config, events are printed as CloudEvents JSON lines on stdout).
    Run {
        /// YAML configuration; without it, the embedded default runs.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run one command on the executor whose prefix matches, and exit with its exit code.
    Exec {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// User name passed to the executor.
        #[arg(long, default_value_t = default_user())]
        user: String,
        /// Run the command on a running host through its API (e.g. http://127.0.0.1:8787).
        #[arg(long, env = "PLUGBOARD_REMOTE")]
        remote: Option<String>,
        /// Bearer token for --remote (the host's http.token).
        #[arg(long, env = "PLUGBOARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The command words, after `--`.
        #[arg(last = true, required = true)]
        words: Vec<String>,
    },
    /// Interactive prompt: run commands on a running host, or on an embedded one when none runs.
    Shell {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The host's URL (default: the configured http.listen, if a host answers there).
        #[arg(long, env = "PLUGBOARD_REMOTE")]
        remote: Option<String>,
        /// Bearer token for the host's API (its http.token).
        #[arg(long, env = "PLUGBOARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Never look for a running host: run executors in this process.
        #[arg(long, conflicts_with = "remote")]
        embedded: bool,
        /// User name the commands run as.
        #[arg(long, default_value_t = default_user())]
        user: String,
    },
    /// List the plugins found in the plugins directory; `status` and
    /// `enable` look at and steer the instances of a running host.
    Plugins {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: Option<PluginsCommand>,
    },
    /// Tools for plugin authors.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Look into the event store: stored events, dead letters, replays.
    Events {
        /// The config whose state_dir holds the store.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Post one event to a running host's POST /v1/events.
    Send {
        /// CloudEvents type, e.g. com.example.deploy.
        #[arg(long = "type", value_name = "T")]
        ty: String,
        /// CloudEvents source, e.g. /ci/pipeline.
        #[arg(long, value_name = "S")]
        source: String,
        /// JSON data.
        #[arg(long, value_name = "JSON")]
        data: Option<String>,
        /// CloudEvents id (default: a new UUIDv7).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        /// The host's base URL (default: http:// and the listen address of --listen or the config).
        #[arg(long, env = "PLUGBOARD_URL")]
        url: Option<String>,
        /// Bearer token (default: the config's http.events_token or http.token).
        #[arg(long, env = "PLUGBOARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Every plugin instance of a running host: state, pid, uptime, restarts, health, last exit.
    Status {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The API's JSON reply instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-enable an instance deactivated after repeated failures.
    Enable {
        /// The instance name.
        name: String,
        /// Which instance when a source and a sink share the name.
        #[arg(long, value_parser = ["source", "executor", "sink"])]
        kind: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, clap::Args)]
struct RemoteArgs {
    /// The host's URL (default: http:// and the listen address of --listen or the config).
    #[arg(long, env = "PLUGBOARD_REMOTE")]
    remote: Option<String>,
    /// Bearer token (default: the config's http.token).
    #[arg(long, env = "PLUGBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Launch a plugin executable as the host would and report, item by item,
    /// what it gets right and wrong. Exits 0 only when every required item passes.
    Check {
        /// The plugin executable.
        path: PathBuf,
        /// Instance config (JSON) that the plugin's schema must accept and that
        /// Stream/Execute receive.
        #[arg(long, default_value = "{}")]
        config: String,
        /// Which kind to exercise (default: the first the plugin declares).
        #[arg(long, value_enum)]
        kind: Option<CheckKind>,
        /// Deadline for start-up, the first event and a command's result.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CheckKind {
    Source,
    Executor,
    Sink,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Stored events, oldest first.
    List {
        /// Only events of this source instance.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// Only events of this CloudEvents type.
        #[arg(long = "type", value_name = "T")]
        ty: Option<String>,
        /// Only events with this store seq or later.
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// At most this many events.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// JSON lines: {"seq", "instance", "stored_at", "event"}.
        #[arg(long)]
        json: bool,
    },
    /// Deliver events to a sink again: its dead letters, or every event from --since on.
    Replay {
        #[arg(long, value_name = "NAME")]
        sink: String,
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
    },
    /// Events sinks gave up on after their retries.
    DeadLetters {
        #[arg(long, value_name = "NAME")]
        sink: Option<String>,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
}

fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run { .. } => "info",
        _ => "warn",
    };
    init_logging(cli.log_level.as_deref().unwrap_or(default_level), cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plugboard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run { ref config } => {
                run(config.as_deref(), cli.plugins_dir.as_deref(), cli.listen, cli.state_dir.as_deref()).await
            }
            Command::Exec { ref remote, ref token, ref user, ref words, .. } if remote.is_some() => {
                exec_remote(remote.as_deref().unwrap_or_default(), token.clone(), user, words).await
            }
            Command::Exec { ref config, ref user, ref words, .. } => {
                exec(config.as_deref(), cli.plugins_dir.as_deref(), user, words.clone()).await
            }
            Command::Shell { ref config, ref remote, ref token, embedded, ref user } => {
                shell(config.as_deref(), cli.plugins_dir.as_deref(), remote.clone(), token.clone(), embedded, user)
                    .await
            }
            Command::Plugins { ref config, command: None } => {
                plugins(config.as_deref(), cli.plugins_dir.as_deref()).await
            }
            Command::Plugins { ref config, command: Some(ref command) } => {
                plugins_remote(config.as_deref(), cli.listen, command).await
            }
            Command::Plugin { command: PluginCommand::Check { ref path, ref config, kind, timeout } } => {
                plugin_check(path, config, kind, timeout).await
            }
            Command::Events { ref config, ref command } => {
                let state_dir = state_dir(cli.state_dir.as_deref(), config.as_deref())?;
                match command {
                    EventsCommand::List { source, ty, since, limit, json } => {
                        let filter =
                            ListFilter { instance: source.clone(), ty: ty.clone(), since: *since, limit: *limit };
                        events_cli::list(&state_dir, &filter, *json)
                    }
                    EventsCommand::Replay { sink, since } => events_cli::replay(&state_dir, sink, *since),
                    EventsCommand::DeadLetters { sink, json } => {
                        events_cli::dead_letters(&state_dir, sink.as_deref(), *json)
                    }
                }
            }
            Command::Send { ref ty, ref source, ref data, ref id, ref subject, ref url, ref token, ref config } => {
                let config = config.as_deref().map(Config::load).transpose()?.unwrap_or_default();
                let url = url.clone().unwrap_or_else(|| {
                    let mut addr = cli.listen.unwrap_or(config.http.listen);
                    if addr.ip().is_unspecified() {
                        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    format!("http://{addr}")
                });
                let token = token.clone().or(config.http.events_token.clone()).or(config.http.token.clone());
                events_cli::send(events_cli::SendArgs {
                    url: &url,
                    token: token.as_deref(),
                    ty,
                    source,
                    id: id.as_deref(),
                    subject: subject.as_deref(),
                    data: data.as_deref(),
                })
                .await
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("plugboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `plugins` beside the plugboard executable: where `make` installs the contrib plugins.
fn default_plugins_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("plugins")))
        .unwrap_or_else(|| PathBuf::from("plugins"))
}

/// The config file (if one is named), the plugins directory (`--plugins-dir`,
/// else the config's, else the default) and the start options it gives.
fn load_config(
    config_path: Option<&Path>,
    plugins_dir: Option<&Path>,
) -> anyhow::Result<(Option<Config>, PathBuf, crate::plugin::StartOptions)> {
    let config = match config_path {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    let dir = plugins_dir
        .map(Path::to_path_buf)
        .or_else(|| config.as_ref().and_then(|c| c.plugins_dir.clone()))
        .unwrap_or_else(default_plugins_dir);
    let start = config.as_ref().map(plan::start_options).unwrap_or_default();
    Ok((config, dir, start))
}

/// Loads the config (or the embedded default), discovers plugins and checks
/// one against the other.
async fn load_plan(config_path: Option<&Path>, plugins_dir: Option<&Path>) -> anyhow::Result<(Plan, Registry, Config)> {
    let (config, dir, start) = load_config(config_path, plugins_dir)?;
    let registry = Registry::discover(&dir, &start).await.with_context(|| {
        if config_path.is_none() {
            "run `make` first to build and install the contrib plugins".to_owned()
        } else {
            String::new()
        }
    })?;
    let (config, origin) = match config {
        Some(c) => (c, config_path.map(Path::to_path_buf).unwrap_or_default()),
        None => (plan::embedded_default(&registry), PathBuf::from("<embedded default>")),
    };
    let plan = plan::plan(&config, &registry, origin)?;
    Ok((plan, registry, config))
}

async fn run(
    config_path: Option<&Path>,
    plugins_dir: Option<&Path>,
    listen: Option<std::net::SocketAddr>,
    state_dir: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (plan, registry, mut config) = load_plan(config_path, plugins_dir).await?;
    let origin = super::reload::Origin {
        config: config_path.map(Path::to_path_buf),
        plugins_dir: plugins_dir.map(Path::to_path_buf),
        listen,
    };
    let loaded = super::reload::Loaded::take(registry.clone(), &origin);
    // SIGHUP is the host's from here on (its default would end the process).
    let hup = super::reload::watch::hangup();
    if let Some(listen) = listen {
        config.http.listen = listen;
    }
    if let Some(dir) = state_dir {
        config.state_dir = Some(dir.to_owned());
    }
    tracing::info!(
        plugins_dir = %registry.dir.display(),
        sources = plan.sources.len(),
        executors = plan.executors.len(),
        "plugboard running"
    );
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let host = Host::start(plan, &config, shutdown.clone()).await?;
    match hup {
        Ok(hup) => spawn_reloader(&host, loaded, &config, origin, hup, shutdown),
        Err(e) => tracing::warn!("hot plug is off: {e}"),
    }
    host.wait().await;
    // The plugins are gone; their cgroups follow before the host does.
    crate::launcher::limits::settle(std::time::Duration::from_secs(2)).await;
    Ok(ExitCode::SUCCESS)
}

/// Hot plug: the plugins directory and config file are watched (unless
/// `reload.watch: false`) and SIGHUP reloads.
fn spawn_reloader(
    host: &Host,
    loaded: super::reload::Loaded,
    config: &Config,
    origin: super::reload::Origin,
    hup: tokio::signal::unix::Signal,
    shutdown: CancellationToken,
) {
    use super::reload;
    let mut watch = reload::WatchOptions::new(loaded.registry.dir.clone(), origin.config.clone());
    watch.watch_files = config.reload.watch;
    let current = reload::Current::new(Arc::clone(&host.plan), loaded);
    let reloader = reload::Reloader::new(origin, current, host.instances(), Some(host.host_events.clone()));
    match reload::spawn(reloader, watch, hup, shutdown) {
        Ok(_) => {}
        Err(e) => tracing::warn!("hot plug is off: {e}"),
    }
}

/// `--state-dir`, else the config's `state_dir`, else the default.
fn state_dir(flag: Option<&Path>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_owned());
    }
    if let Some(path) = config
        && let Some(dir) = Config::load(path)?.state_dir
    {
        return Ok(dir);
    }
    Ok(super::state::default_state_dir())
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        shutdown.cancel();
    });
}

async fn exec(
    config: Option<&Path>,
    plugins_dir: Option<&Path>,
    user: &str,
    words: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let (plan, _registry, config) = load_plan(config, plugins_dir).await?;
    let pool = Arc::new(ExecutorPool::new(&plan));
    // The same command service as every other surface: help, policies, limits, masking.
    let service = CommandService::new(Arc::clone(&pool), &config.commands, None);
    let request = CommandRequest {
        command: shell_words::join(&words),
        caller: Caller {
            user: user.to_owned(),
            channel: "terminal".into(),
            platform: "cli".into(),
            ..Default::default()
        },
        event: None,
    };
    let stdout = std::io::stdout();
    let reply = service
        .run(request, |chunk| {
            let mut out = stdout.lock();
            let _ = out.write_all(chunk);
            let _ = out.flush();
        })
        .await;
    pool.stop().await;
    if !reply.error.is_empty() {
        eprintln!("plugboard: {}", reply.error);
    }
    Ok(ExitCode::from(exit_code_byte(reply.exit_code)))
}

/// `exec --remote`: the command through a running host's API, output streamed.
async fn exec_remote(url: &str, token: Option<String>, user: &str, words: &[String]) -> anyhow::Result<ExitCode> {
    let client = RemoteClient::new(url, token);
    let body = CommandBody {
        command: shell_words::join(words),
        user: Some(user.to_owned()),
        channel: Some("terminal".into()),
        platform: Some("cli".into()),
    };
    let stdout = std::io::stdout();
    let reply = client
        .run(&body, |text| {
            let mut out = stdout.lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        })
        .await?;
    if !reply.error.is_empty() {
        eprintln!("plugboard: {}", reply.error);
    }
    Ok(ExitCode::from(exit_code_byte(reply.exit_code)))
}

async fn shell(
    config_path: Option<&Path>,
    plugins_dir: Option<&Path>,
    remote: Option<String>,
    token: Option<String>,
    embedded: bool,
    user: &str,
) -> anyhow::Result<ExitCode> {
    let identity = shell::Identity { user: user.to_owned(), channel: "terminal".into() };
    let config = match config_path {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    let token = token.or_else(|| config.as_ref().and_then(|c| c.http.token.clone()));
    if let Some(url) = remote {
        return shell::run(shell::Backend::Remote(RemoteClient::new(&url, token)), identity)
            .await
            .map(|_| ExitCode::SUCCESS);
    }
    if !embedded {
        let listen = config
            .as_ref()
            .map(|c| c.http.listen)
            .unwrap_or_else(|| crate::runtime::http::HttpConfig::default().listen);
        let client = RemoteClient::new(&listen.to_string(), token);
        if client.healthy().await {
            return shell::run(shell::Backend::Remote(client), identity).await.map(|_| ExitCode::SUCCESS);
        }
    }
    let (plan, _registry, config) = load_plan(config_path, plugins_dir).await?;
    let pool = Arc::new(ExecutorPool::new(&plan));
    let service = Arc::new(CommandService::new(Arc::clone(&pool), &config.commands, None));
    let result = shell::run(shell::Backend::Embedded(service), identity).await;
    pool.stop().await;
    result.map(|_| ExitCode::SUCCESS)
}

async fn plugin_check(
    path: &Path,
    config: &str,
    kind: Option<CheckKind>,
    timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    use plugboard_proto::plugboard::v1::PluginKind;
    let config: serde_json::Value =
        serde_json::from_str(config).with_context(|| format!("--config is not JSON: {config}"))?;
    let mut options = super::check::CheckOptions::new(path);
    options.config = config;
    options.timeout = timeout;
    options.kind = kind.map(|k| match k {
        CheckKind::Source => PluginKind::Source,
        CheckKind::Executor => PluginKind::Executor,
        CheckKind::Sink => PluginKind::Sink,
    });
    let report = super::check::check(&options).await;
    println!("{report}");
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Exit codes outside 0..=255 (negative, huge) become 1, never a false 0.
fn exit_code_byte(code: i32) -> u8 {
    u8::try_from(code).ok().filter(|c| *c != 0 || code == 0).unwrap_or(1)
}

/// `plugins status` and `plugins enable`, against a running host.
async fn plugins_remote(
    config: Option<&Path>,
    listen: Option<std::net::SocketAddr>,
    command: &PluginsCommand,
) -> anyhow::Result<ExitCode> {
    let remote_args = match command {
        PluginsCommand::Status { remote, .. } | PluginsCommand::Enable { remote, .. } => remote,
    };
    let config = config.map(Config::load).transpose()?.unwrap_or_default();
    let url = remote_args.remote.clone().unwrap_or_else(|| {
        let mut addr = listen.unwrap_or(config.http.listen);
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    });
    let token = remote_args.token.clone().or(config.http.token.clone());
    let remote = super::plugins_cli::Remote { url: &url, token: token.as_deref() };
    match command {
        PluginsCommand::Status { json, .. } => super::plugins_cli::status(&remote, *json).await,
        PluginsCommand::Enable { name, kind, .. } => super::plugins_cli::enable(&remote, name, kind.as_deref()).await,
    }
}

async fn plugins(config: Option<&Path>, plugins_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (_, dir, start) = load_config(config, plugins_dir)?;
    let registry = Registry::discover(&dir, &start).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<16} {:<16} {:<10} {:<24} PATH", "NAME", "KINDS", "VERSION", "PREFIXES")?;
    let mut broken = 0;
    for entry in &registry.entries {
        match &entry.described {
            Ok(d) => writeln!(
                out,
                "{:<16} {:<16} {:<10} {:<24} {}",
                d.info.name,
                d.kinds_text(),
                d.info.version,
                if d.info.command_prefixes.is_empty() { "-".to_owned() } else { d.info.command_prefixes.join(",") },
                entry.path.display()
            )?,
            Err(reason) => {
                broken += 1;
                let first_line = reason.lines().next().unwrap_or_default();
                writeln!(out, "{:<16} {:<16} {:<10} {:<24} {}", entry.file_name, "-", "-", "-", entry.path.display())?;
                writeln!(out, "  error: {first_line}")?;
            }
        }
    }
    if registry.entries.is_empty() {
        writeln!(out, "(no plugins in {})", registry.dir.display())?;
    }
    let mut ambiguous = 0;
    for clash in registry.clashes() {
        match registry.canonical(&clash.name) {
            Some(entry) => writeln!(out, "warning: {clash}; {:?} runs {}", clash.name, entry.path.display())?,
            None => {
                ambiguous += 1;
                writeln!(out, "error: {clash}")?;
            }
        }
    }
    Ok(if broken == 0 && ambiguous == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_never_turn_failures_into_success() {
        assert_eq!(exit_code_byte(0), 0);
        assert_eq!(exit_code_byte(3), 3);
        assert_eq!(exit_code_byte(-1), 1);
        assert_eq!(exit_code_byte(256), 1);
    }
}
