//! Layer 2: plugboard's plugin kinds on top of the generic launcher.
//!
//! [`launch`] starts a plugboard plugin (plugboard's handshake constants) and
//! asks it to `Describe` itself; [`PluginHandle`] then gives typed clients
//! for the kinds it declared: [`SourceClient`], [`ExecutorClient`],
//! [`SinkClient`].

mod describe;
mod executor;
mod sink;
mod source;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use plugboard_proto::handshake::HANDSHAKE;
use plugboard_proto::plugboard::v1::{DescribeRequest, PluginInfo, PluginKind, plugin_client::PluginClient};

use crate::launcher::{AddressPolicy, LaunchConfig, LaunchError, Limits, PluginProcess, RunAs, Sha256};

pub use describe::{ConfigSchema, DescribeError, Described, kind_name, valid_prefix, validate_info};
pub use executor::{CommandOutcome, CommandRequest, ExecuteError, ExecutorClient};
pub use sink::SinkClient;
pub use source::{SourceClient, SourceEvent};

/// Largest message exchanged with a plugin (events, command output chunks,
/// sink batches) unless its `max_message_size` says otherwise.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Why a plugboard plugin could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("plugin answered Describe with an error: {0}")]
    Describe(String),
    #[error("plugin describes itself wrongly: {0}")]
    Invalid(#[from] DescribeError),
}

/// Options for starting one plugin process.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub start_timeout: Duration,
    pub kill_grace: Duration,
    /// Secrets masked in the plugin's forwarded logs.
    pub redact: Vec<String>,
    /// Launch security per executable file name; others get the default.
    pub security: Arc<BTreeMap<String, LaunchSecurity>>,
    /// The described plugin name per executable file name, so the logs of
    /// its processes name the plugin beside the instance.
    pub plugin_names: Arc<BTreeMap<String, String>>,
    /// Limits, environment, identity and message size of each process.
    pub isolation: Arc<IsolationTable>,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            start_timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(2),
            redact: Vec::new(),
            security: Arc::default(),
            plugin_names: Arc::default(),
            isolation: Arc::default(),
        }
    }
}

impl StartOptions {
    /// The settings for the executable at `path` (by file name).
    pub fn security_for(&self, path: &Path) -> LaunchSecurity {
        path.file_name().and_then(|n| self.security.get(n.to_string_lossy().as_ref())).cloned().unwrap_or_default()
    }

    /// The isolation of the process started as `name` from `path`: the
    /// instance's when `name` is a configured instance, else its executable's.
    pub fn isolation_for(&self, name: &str, path: &Path) -> &Isolation {
        let t = &*self.isolation;
        t.instances
            .get(name)
            .or_else(|| path.file_name().and_then(|n| t.executables.get(n.to_string_lossy().as_ref())))
            .unwrap_or(&t.default)
    }
}

/// How one plugin process is confined (resolved from the config's three levels).
#[derive(Debug, Clone, PartialEq)]
pub struct Isolation {
    pub limits: Limits,
    /// The host's whole environment (an escape hatch); by default the plugin
    /// gets only the handshake variables, `env_allow` and `env`.
    pub inherit_env: bool,
    /// Host variables passed through when set.
    pub env_allow: Vec<String>,
    pub env: Vec<(String, String)>,
    pub run_as: Option<RunAs>,
    /// Largest gRPC message either way, in bytes.
    pub max_message_size: usize,
}

impl Default for Isolation {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            inherit_env: false,
            env_allow: Vec::new(),
            env: Vec::new(),
            run_as: None,
            max_message_size: MAX_MESSAGE_SIZE,
        }
    }
}

/// Isolation by instance name, by executable file name, and for the rest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IsolationTable {
    pub default: Isolation,
    pub executables: BTreeMap<String, Isolation>,
    pub instances: BTreeMap<String, Isolation>,
}

/// How a plugboard plugin executable is launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSecurity {
    /// go-plugin AutoMTLS; on by default (measured cost: see `make bench`).
    pub auto_mtls: bool,
    pub sha256: Option<Sha256>,
    pub address_policy: AddressPolicy,
}

impl Default for LaunchSecurity {
    fn default() -> Self {
        Self { auto_mtls: true, sha256: None, address_policy: AddressPolicy::default() }
    }
}

/// A started plugboard plugin and what it said about itself.
#[derive(Debug, Clone)]
pub struct PluginHandle {
    process: Arc<PluginProcess>,
    described: Arc<Described>,
    max_message_size: usize,
}

/// Starts the plugin at `path`, waits for it to be healthy and describes it.
pub async fn launch(name: &str, path: &Path, options: &StartOptions) -> Result<PluginHandle, StartError> {
    let mut cfg = LaunchConfig::new(name, path, HANDSHAKE);
    cfg.plugin = path.file_name().and_then(|f| options.plugin_names.get(f.to_string_lossy().as_ref())).cloned();
    cfg.start_timeout = options.start_timeout;
    cfg.kill_grace = options.kill_grace;
    cfg.redact = options.redact.clone();
    let security = options.security_for(path);
    cfg.auto_mtls = security.auto_mtls;
    cfg.sha256 = security.sha256;
    cfg.address_policy = security.address_policy;
    let isolation = options.isolation_for(name, path);
    cfg.limits = isolation.limits.clone();
    cfg.inherit_env = isolation.inherit_env;
    cfg.env_allow = isolation.env_allow.iter().map(Into::into).collect();
    cfg.env = isolation.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    cfg.run_as = isolation.run_as.clone();
    let max_message_size = isolation.max_message_size;
    let timeout = options.start_timeout;
    // Describe travels with the launcher's health check: one round trip less at start.
    let describe = |channel| async move {
        let mut client = PluginClient::new(channel)
            .max_decoding_message_size(max_message_size)
            .max_encoding_message_size(max_message_size);
        tokio::time::timeout(timeout, client.describe(DescribeRequest {})).await
    };
    let (process, described) = PluginProcess::launch_with(cfg, describe).await?;
    let info = match described {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(status)) => {
            process.shutdown().await;
            return Err(StartError::Describe(status.message().to_owned()));
        }
        Err(_) => {
            process.shutdown().await;
            return Err(StartError::Describe("Describe timed out".into()));
        }
    };
    let described = match describe::validate_info(info) {
        Ok(d) => d,
        Err(e) => {
            process.shutdown().await;
            return Err(e.into());
        }
    };
    Ok(PluginHandle { process: Arc::new(process), described: Arc::new(described), max_message_size })
}

impl PluginHandle {
    pub fn process(&self) -> &PluginProcess {
        &self.process
    }

    pub fn info(&self) -> &PluginInfo {
        &self.described.info
    }

    pub fn described(&self) -> &Arc<Described> {
        &self.described
    }

    /// Largest message either way on this plugin's calls and streams.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    pub fn has_kind(&self, kind: PluginKind) -> bool {
        self.described.has_kind(kind)
    }

    pub fn source(&self) -> SourceClient {
        SourceClient::with_max_message_size(self.process.channel(), self.max_message_size)
    }

    pub fn executor(&self) -> ExecutorClient {
        ExecutorClient::with_max_message_size(self.process.channel(), self.max_message_size)
    }

    pub fn sink(&self) -> SinkClient {
        SinkClient::with_max_message_size(self.process.channel(), self.max_message_size)
    }

    /// Stops the process gracefully (see [`PluginProcess::shutdown`]).
    pub async fn shutdown(&self) -> crate::launcher::ExitReason {
        self.process.shutdown().await
    }
}
