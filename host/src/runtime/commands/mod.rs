//! The command service every surface shares — the HTTP API, Slack and
//! Mattermost slash commands, `plugboard shell`, `exec --remote` and
//! automations: resolution, the built-in `help`, permissions, limits,
//! secret masking and the audit trail, in one place.
//!
//! A command goes: split into words → `help`? → aliases and longest prefix
//! (runtime/resolve.rs) → policy (before any plugin is contacted) → the
//! executor instance (runtime/executors.rs: supervised process, concurrency
//! slots, timeout) → output capped and masked → reply → audit event.

pub mod audit;
pub mod automation;
pub mod chat;
pub mod client;
pub mod http;
pub mod output;
pub mod policy;
pub mod shell;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use plugboard_proto::CloudEvent;
use plugboard_proto::plugboard::v1::CommandContext;
use serde::{Deserialize, Serialize};

use super::executors::{CommandError, ExecutorPool};
use super::host_events::HostEvents;
use super::metrics::CommandMetrics;
use super::resolve::{ResolveError, Resolved};
use super::secrets::{SecretString, mask_text};
use output::OutputCollector;
pub use policy::{Caller, Decision, Policy, PolicyConfig};

/// The built-in command that lists what the caller may run.
pub const HELP: &str = "help";

/// `commands:` in the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// Group name → user names; policies grant or deny by group.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Who may run what. None: everyone may run everything. Any: deny by default.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// Slack-compatible slash commands on `POST /v1/chat/slack`.
    #[serde(default)]
    pub slack: Option<chat::SlackConfig>,
    /// Mattermost-compatible slash commands on `POST /v1/chat/mattermost`.
    #[serde(default)]
    pub mattermost: Option<chat::MattermostConfig>,
}

impl CommandsConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Policy::problems(&self.policies);
        let mut need = |at: &str, secret: &SecretString| match secret.resolve() {
            Ok(Some(_)) => {}
            Ok(None) => problems.push(format!("{at} is required")),
            Err(e) => problems.push(format!("{at}: {e}")),
        };
        if let Some(slack) = &self.slack {
            need("commands.slack.signing_secret", &slack.signing_secret);
        }
        if let Some(mm) = &self.mattermost {
            need("commands.mattermost.token", &mm.token);
        }
        problems.extend(chat::problems(self.slack.as_ref()));
        problems
    }
}

/// One command to run, from any surface.
#[derive(Debug, Clone, Default)]
pub struct CommandRequest {
    pub command: String,
    pub caller: Caller,
    /// The event that triggered it (automations).
    pub event: Option<CloudEvent>,
}

/// How a command ended, beyond its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ran and exited 0.
    Ok,
    /// Ran and exited non-zero.
    Failed,
    /// A policy refused it; no plugin was contacted.
    Denied,
    /// No executor answers it.
    Unknown,
    /// Unbalanced quotes and the like.
    Invalid,
    /// The executor already runs its `max_concurrent` commands.
    Busy,
    /// The executor's timeout expired; the call was cancelled.
    Timeout,
    /// The executor is down, restarting or died during the command.
    Unavailable,
    /// The executor failed the call.
    Error,
}

impl Status {
    /// Its name in replies and in the `outcome` label of the command metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Denied => "denied",
            Status::Unknown => "unknown",
            Status::Invalid => "invalid",
            Status::Busy => "busy",
            Status::Timeout => "timeout",
            Status::Unavailable => "unavailable",
            Status::Error => "error",
        }
    }

    /// The exit code reported when no plugin result exists (shell conventions).
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Failed | Status::Error => 70,
            Status::Denied => 126,
            Status::Unknown => 127,
            Status::Invalid => 2,
            Status::Busy => 75,
            Status::Timeout => 124,
            Status::Unavailable => 69,
        }
    }
}

/// What every surface answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The executor instance that ran it (none for built-ins and refusals).
    pub executor: Option<String>,
    pub output: String,
    pub exit_code: i32,
    /// Why it failed, for people; empty on success.
    pub error: String,
    pub duration_ms: u64,
    pub status: Status,
}

impl CommandReply {
    fn refused(status: Status, error: String) -> Self {
        Self { executor: None, output: String::new(), exit_code: status.exit_code(), error, duration_ms: 0, status }
    }

    fn builtin(output: String) -> Self {
        Self { executor: None, output, exit_code: 0, error: String::new(), duration_ms: 0, status: Status::Ok }
    }
}

/// The shared command service.
pub struct CommandService {
    pool: Arc<ExecutorPool>,
    /// Replaced whole by a reload; a command decides under one snapshot.
    policy: RwLock<Arc<Policy>>,
    audit: Option<HostEvents>,
    metrics: Option<Arc<CommandMetrics>>,
}

impl CommandService {
    /// `audit`: where audit events go (none for one-shot CLI use).
    pub fn new(pool: Arc<ExecutorPool>, config: &CommandsConfig, audit: Option<HostEvents>) -> Self {
        let policy = Policy::new(config.policies.clone(), &config.groups);
        Self { pool, policy: RwLock::new(Arc::new(policy)), audit, metrics: None }
    }

    /// Records every command in `metrics` (`plugboard run`).
    pub fn with_metrics(mut self, metrics: Arc<CommandMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn pool(&self) -> &Arc<ExecutorPool> {
        &self.pool
    }

    /// The policy commands are decided under now.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the policies and groups in one step (hot plug); commands
    /// already past their permission check are not affected.
    pub fn set_policy(&self, config: &CommandsConfig) {
        let policy = Arc::new(Policy::new(config.policies.clone(), &config.groups));
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// Runs one command, handing masked, capped output chunks to `on_output`
    /// as they come; the reply holds the whole (capped) output too.
    pub async fn run(&self, request: CommandRequest, mut on_output: impl FnMut(&[u8]) + Send) -> CommandReply {
        let started = Instant::now();
        let policy = self.policy();
        let caller = policy.with_groups(request.caller);
        let (mut reply, resolved_to) =
            self.run_inner(&policy, &caller, &request.command, request.event, &mut on_output).await;
        reply.duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        if let Some(metrics) = &self.metrics {
            metrics.command(resolved_to.as_deref().unwrap_or_default(), reply.status.as_str());
        }
        if let Some(audit) = &self.audit {
            // A secret typed into a command is masked in the record too.
            let command = mask_text(&request.command, &self.secrets_of(reply.executor.as_deref()));
            audit.emit(audit::event(&caller, &command, &reply, started.elapsed())).await;
        }
        reply
    }

    /// The secret config values of an executor instance.
    pub fn secrets_of(&self, executor: Option<&str>) -> Vec<String> {
        executor.and_then(|e| self.pool.instance(e)).map(|i| i.plan().secrets.clone()).unwrap_or_default()
    }

    /// The reply, and the executor instance the command resolved to (also
    /// when it was refused), for the metrics.
    async fn run_inner(
        &self,
        policy: &Policy,
        caller: &Caller,
        command: &str,
        event: Option<CloudEvent>,
        on_output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> (CommandReply, Option<String>) {
        let words = match shell_words::split(command) {
            Ok(words) => words,
            Err(e) => return (CommandReply::refused(Status::Invalid, format!("cannot parse command: {e}")), None),
        };
        let reply = match words.first().map(String::as_str) {
            None => Some(self.help_reply(policy, caller, on_output)),
            Some(HELP) if words.len() == 1 => Some(self.help_reply(policy, caller, on_output)),
            Some(HELP) => Some(self.prefix_help(policy, caller, &words[1..].join(" "), on_output)),
            Some(_) => None,
        };
        if let Some(reply) = reply {
            let executor = reply.executor.clone();
            return (reply, executor);
        }
        let resolved = match self.pool.table().resolve(words) {
            Ok(r) => r,
            Err(e) => return (self.unknown(policy, caller, e), None),
        };
        if resolved.args.len() == 1 && resolved.args[0] == HELP {
            let reply = self.prefix_help(policy, caller, &resolved.prefix, on_output);
            return (reply, Some(resolved.executor));
        }
        if let Decision::Deny { reason } = policy.decide(caller, &resolved.command) {
            let reply = CommandReply::refused(
                Status::Denied,
                format!(
                    "permission denied: {} may not run {:?} in {} on {} ({reason})",
                    caller.user, resolved.command, caller.channel, caller.platform
                ),
            );
            return (reply, Some(resolved.executor));
        }
        let executor = resolved.executor.clone();
        (self.execute(caller, resolved, event, on_output).await, Some(executor))
    }

    async fn execute(
        &self,
        caller: &Caller,
        resolved: Resolved,
        event: Option<CloudEvent>,
        on_output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> CommandReply {
        let executor = resolved.executor.clone();
        let (secrets, max_output) = match self.pool.instance(&executor) {
            Some(i) => (i.plan().secrets.clone(), i.plan().max_output),
            None => (Vec::new(), super::plan::DEFAULT_MAX_OUTPUT),
        };
        let context = CommandContext {
            user: caller.user.clone(),
            channel: caller.channel.clone(),
            platform: caller.platform.clone(),
            event,
            groups: caller.groups.clone(),
        };
        let mut collected = OutputCollector::new(max_output, &secrets);
        let started = Instant::now();
        let result = self.pool.run_resolved(resolved, context, |chunk| collected.push(chunk, &mut *on_output)).await;
        if let Some(metrics) = &self.metrics {
            metrics.duration(&executor, started.elapsed());
        }
        let output = collected.finish(&mut *on_output);
        let (status, exit_code, error) = match result {
            Ok((_, outcome)) => {
                let status = if outcome.exit_code == 0 { Status::Ok } else { Status::Failed };
                (status, outcome.exit_code, outcome.error)
            }
            Err(e) => {
                let status = match &e {
                    CommandError::Busy { .. } => Status::Busy,
                    CommandError::Timeout { .. } => Status::Timeout,
                    CommandError::Unavailable { .. } => Status::Unavailable,
                    CommandError::Resolve(_) => Status::Unknown,
                    CommandError::Execute { .. } => Status::Error,
                };
                (status, status.exit_code(), e.to_string())
            }
        };
        CommandReply {
            executor: Some(executor),
            output,
            exit_code,
            error: mask_text(&error, &secrets),
            duration_ms: 0,
            status,
        }
    }

    /// Unknown command: suggest only prefixes the caller may use.
    fn unknown(&self, policy: &Policy, caller: &Caller, error: ResolveError) -> CommandReply {
        match error {
            ResolveError::Empty => self.help_reply(policy, caller, &mut |_| {}),
            ResolveError::Syntax(e) => CommandReply::refused(Status::Invalid, format!("cannot parse command: {e}")),
            ResolveError::Unknown { command, suggestions, known } => {
                let allowed = |p: &String| policy.may_use_prefix(caller, p);
                let e = ResolveError::Unknown {
                    command,
                    suggestions: suggestions.into_iter().filter(allowed).collect(),
                    known: known.into_iter().filter(allowed).collect(),
                };
                CommandReply::refused(Status::Unknown, format!("{e}. Type `help` for the list."))
            }
        }
    }

    /// The prefixes (with descriptions) and aliases the caller may use.
    pub fn help_text(&self, caller: &Caller) -> String {
        self.help_text_under(&self.policy(), caller)
    }

    fn help_text_under(&self, policy: &Policy, caller: &Caller) -> String {
        let table = self.pool.table();
        let entries: Vec<(String, String)> = table
            .entries()
            .filter(|(prefix, _)| policy.may_use_prefix(caller, prefix))
            .map(|(prefix, executor)| {
                let description =
                    self.pool.instance(executor).map(|i| i.plan().plugin.info.description.clone()).unwrap_or_default();
                (prefix, description)
            })
            .collect();
        let mut text = String::new();
        if entries.is_empty() {
            text.push_str("You may not run any command here.\n");
            return text;
        }
        let width = entries.iter().map(|(p, _)| p.len()).max().unwrap_or(0).max(HELP.len());
        text.push_str("Commands you can run:\n");
        for (prefix, description) in &entries {
            text.push_str(&format!("  {prefix:<width$}  {description}\n"));
        }
        text.push_str(&format!("  {HELP:<width$}  this list; `<command> help` shows a command's own help\n"));
        let aliases: Vec<String> = table
            .aliases()
            .filter(|(_, expansion)| entries.iter().any(|(p, _)| policy::command_matches(p, expansion)))
            .map(|(alias, expansion)| format!("{alias} → {expansion}"))
            .collect();
        if !aliases.is_empty() {
            text.push_str(&format!("Aliases: {}\n", aliases.join(", ")));
        }
        text
    }

    fn help_reply(&self, policy: &Policy, caller: &Caller, on_output: &mut (dyn FnMut(&[u8]) + Send)) -> CommandReply {
        let text = self.help_text_under(policy, caller);
        on_output(text.as_bytes());
        CommandReply::builtin(text)
    }

    /// `<prefix> help`: the plugin's own help from Describe.
    fn prefix_help(
        &self,
        policy: &Policy,
        caller: &Caller,
        prefix: &str,
        on_output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> CommandReply {
        let resolved = match self.pool.table().resolve(prefix.split_whitespace().map(str::to_owned).collect()) {
            Ok(r) => r,
            Err(e) => return self.unknown(policy, caller, e),
        };
        if !policy.may_use_prefix(caller, &resolved.prefix) {
            return CommandReply::refused(
                Status::Denied,
                format!("permission denied: {} may not run {:?} commands", caller.user, resolved.prefix),
            );
        }
        let Some(instance) = self.pool.instance(&resolved.executor) else {
            return CommandReply::refused(Status::Unknown, format!("no executor for {:?}", resolved.prefix));
        };
        let info = &instance.plan().plugin.info;
        let mut text = format!("{} — {}\n", resolved.prefix, info.description);
        if info.help.trim().is_empty() {
            text.push_str("(the plugin has no further help)\n");
        } else {
            text.push_str(info.help.trim_end());
            text.push('\n');
        }
        on_output(text.as_bytes());
        let mut reply = CommandReply::builtin(text);
        reply.executor = Some(resolved.executor);
        reply
    }
}

/// Time left before a deadline, for surfaces that must answer in time.
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::Status;

    /// The metrics' `outcome` label is the status replies carry.
    #[test]
    fn status_names_match_the_replies() {
        use Status::*;
        for status in [Ok, Failed, Denied, Unknown, Invalid, Busy, Timeout, Unavailable, Error] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
