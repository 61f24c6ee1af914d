//! Automations: an event triggers a command; its output becomes a
//! `dev.plugboard.command.output` CloudEvent (BotKube's actions,
//! ansible-rulebook's `run_*` actions).
//!
//! The command text is a minijinja template over the event (`{{ event.id }}`,
//! `{{ event.data.field }}`); it runs as the automation's configured identity
//! through the same command service — permissions, limits, audit — as a
//! person's command. `once_within` throttles an automation to one run per
//! window and grouping key (ansible-rulebook's `throttle.once_within` +
//! `group_by_attributes`).
//!
//! Each automation is fed like a sink, through the durable store (see
//! `sinks/automation.rs`): with no route naming it, it sees every event and
//! its `when` selects; routes may name it (`automations: [...]`) to narrow
//! that with filters and conditions. [`AutomationRunner::offer`] takes one
//! event for one automation and never waits for the command.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use minijinja::{Environment, UndefinedBehavior};
use plugboard_proto::CloudEvent;
use plugboard_proto::event::Json;
use serde::Deserialize;

use super::policy::{Caller, glob};
use super::{CommandRequest, CommandService, audit};
use crate::runtime::host_events::{HOST_SOURCE, HostEvents};

/// One entry of `automations:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationConfig {
    pub name: String,
    /// Which events trigger it (every event when empty).
    #[serde(default)]
    pub when: EventMatch,
    /// The command, a minijinja template over `event`.
    pub command: String,
    /// The identity it runs as (policies apply to it).
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "default_channel")]
    pub channel: String,
    /// Run at most once within this window per `group_by` key.
    #[serde(default, with = "humantime_serde")]
    pub once_within: Option<Duration>,
    /// Template for the throttling key (default: one key for the automation).
    #[serde(default)]
    pub group_by: Option<String>,
}

fn default_user() -> String {
    "automation".into()
}

fn default_channel() -> String {
    "automations".into()
}

/// Event selectors: globs over the event's `type` and `source`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMatch {
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub sources: Vec<String>,
}

impl EventMatch {
    fn matches(&self, event: &CloudEvent) -> bool {
        let any = |patterns: &[String], value: &str| patterns.is_empty() || patterns.iter().any(|p| glob(p, value));
        any(&self.types, &event.r#type) && any(&self.sources, &event.source)
    }
}

/// Problems with `automations:` (bad names, templates that do not compile).
pub fn problems(automations: &[AutomationConfig]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, a) in automations.iter().enumerate() {
        let at = format!("automations[{i}] {:?}", a.name);
        if a.name.is_empty() || !seen.insert(a.name.clone()) {
            problems.push(format!("{at}: name must be non-empty and unique"));
        }
        let env = environment();
        if let Err(e) = env.template_from_str(&a.command) {
            problems.push(format!("{at}: command template: {e}"));
        }
        if let Some(g) = &a.group_by
            && let Err(e) = env.template_from_str(g)
        {
            problems.push(format!("{at}: group_by template: {e}"));
        }
        if a.once_within.is_some_and(|w| w.is_zero()) {
            problems.push(format!("{at}: once_within must be greater than zero"));
        }
    }
    problems
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A field the event lacks is an error, not an empty word in a command.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Remembers when each (automation, key) last ran. Keyed by the
/// automation's name, so a reload keeps the windows of the ones it keeps.
#[derive(Debug, Default)]
pub struct Throttle {
    last: HashMap<(String, String), Instant>,
}

impl Throttle {
    /// Whether a run at `now` is allowed; records it if so.
    pub fn admit(&mut self, automation: &str, key: &str, window: Duration, now: Instant) -> bool {
        if self.last.len() > 10_000 {
            self.last.retain(|_, t| now.duration_since(*t) < window);
        }
        match self.last.get(&(automation.to_owned(), key.to_owned())) {
            Some(t) if now.duration_since(*t) < window => false,
            _ => {
                self.last.insert((automation.to_owned(), key.to_owned()), now);
                true
            }
        }
    }
}

/// The automations and their compiled templates: replaced whole by a reload.
struct Rules {
    automations: Vec<AutomationConfig>,
    env: Environment<'static>,
}

impl Rules {
    fn new(automations: Vec<AutomationConfig>) -> Self {
        let mut env = environment();
        for (i, a) in automations.iter().enumerate() {
            // Checked by `problems` at config time; a failure here only disables that template.
            let _ = env.add_template_owned(format!("command-{i}"), a.command.clone());
            if let Some(g) = &a.group_by {
                let _ = env.add_template_owned(format!("group-{i}"), g.clone());
            }
        }
        Self { automations, env }
    }
}

/// Runs automations for the events it is handed.
pub struct AutomationRunner {
    /// A run renders and runs under the rules it started with.
    rules: RwLock<Arc<Rules>>,
    service: Arc<CommandService>,
    events: HostEvents,
    throttle: Mutex<Throttle>,
}

impl AutomationRunner {
    pub fn new(automations: Vec<AutomationConfig>, service: Arc<CommandService>, events: HostEvents) -> Self {
        let rules = RwLock::new(Arc::new(Rules::new(automations)));
        Self { rules, service, events, throttle: Mutex::default() }
    }

    fn rules(&self) -> Arc<Rules> {
        Arc::clone(&self.rules.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the automations in one step (hot plug): events offered from
    /// now on meet the new rules; runs already started finish under theirs.
    pub fn set_automations(&self, automations: Vec<AutomationConfig>) {
        let rules = Arc::new(Rules::new(automations));
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    pub fn is_empty(&self) -> bool {
        self.rules().automations.is_empty()
    }

    /// Starts every automation whose `when` matches `event`. Never waits.
    pub fn handle(self: &Arc<Self>, event: &CloudEvent) {
        if is_command_event(event) {
            return; // An automation's own output must not trigger automations (no loops).
        }
        let rules = self.rules();
        let mut context = None;
        for i in 0..rules.automations.len() {
            if rules.automations[i].when.matches(event) {
                let ctx = context.get_or_insert_with(|| template_context(event));
                self.start(&rules, i, event, ctx);
            }
        }
    }

    /// Offers `event` to the automation called `name`: it starts if its
    /// `when` matches (and throttling admits it). Never waits. Command events
    /// (audit, output) never trigger automations, so automations cannot loop.
    pub fn offer(self: &Arc<Self>, name: &str, event: &CloudEvent) {
        if is_command_event(event) {
            return;
        }
        let rules = self.rules();
        if let Some(i) = rules.automations.iter().position(|a| a.name == name)
            && rules.automations[i].when.matches(event)
        {
            self.start(&rules, i, event, &template_context(event));
        }
    }

    /// Starts the automation called `name` for `event` (a route naming it),
    /// whatever its `when`. False when there is no such automation.
    pub fn trigger(self: &Arc<Self>, name: &str, event: &CloudEvent) -> bool {
        let rules = self.rules();
        match rules.automations.iter().position(|a| a.name == name) {
            Some(i) => {
                self.start(&rules, i, event, &template_context(event));
                true
            }
            None => false,
        }
    }

    fn start(self: &Arc<Self>, rules: &Arc<Rules>, i: usize, event: &CloudEvent, ctx: &minijinja::Value) {
        let a = &rules.automations[i];
        let render = |name: String| rules.env.get_template(&name).and_then(|t| t.render(ctx.clone()));
        let command = match render(format!("command-{i}")) {
            Ok(c) if !c.trim().is_empty() => c,
            Ok(_) => {
                tracing::warn!(automation = %a.name, event = %event.id, "command template rendered empty; skipped");
                return;
            }
            Err(e) => {
                tracing::warn!(automation = %a.name, event = %event.id, error = %e, "cannot render the command; skipped");
                return;
            }
        };
        if let Some(window) = a.once_within {
            let key =
                if a.group_by.is_some() { render(format!("group-{i}")).unwrap_or_default() } else { String::new() };
            let admitted =
                self.throttle.lock().map(|mut t| t.admit(&a.name, &key, window, Instant::now())).unwrap_or(true);
            if !admitted {
                tracing::debug!(automation = %a.name, key, "throttled (once_within)");
                return;
            }
        }
        let runner = Arc::clone(self);
        let trigger = event.clone();
        let rules = Arc::clone(rules);
        tokio::spawn(async move { runner.run(&rules.automations[i], command, trigger).await });
    }

    async fn run(&self, a: &AutomationConfig, command: String, trigger: CloudEvent) {
        let caller = Caller {
            user: a.user.clone(),
            groups: a.groups.clone(),
            channel: a.channel.clone(),
            platform: "automation".into(),
            ..Caller::default()
        };
        let trigger_ref = serde_json::json!({ "id": trigger.id, "source": trigger.source, "type": trigger.r#type });
        let request = CommandRequest { command: command.clone(), caller: caller.clone(), event: Some(trigger) };
        let reply = self.service.run(request, |_| {}).await;
        let command = crate::runtime::secrets::mask_text(&command, &self.service.secrets_of(reply.executor.as_deref()));
        let data = serde_json::json!({
            "automation": a.name,
            "command": command,
            "user": caller.user,
            "channel": caller.channel,
            "executor": reply.executor,
            "status": reply.status,
            "exit_code": reply.exit_code,
            "error": reply.error,
            "output": reply.output,
            "duration_ms": reply.duration_ms,
            "trigger": trigger_ref,
        });
        let mut event = audit::json_event(audit::OUTPUT, &data);
        event.attributes.insert("subject".into(), plugboard_proto::event::string_attr(a.name.clone()));
        self.events.emit(event).await;
    }
}

/// The host's own command events (audit and output): never automation triggers.
fn is_command_event(event: &CloudEvent) -> bool {
    event.source == HOST_SOURCE && event.r#type.starts_with("dev.plugboard.command.")
}

/// `event` for templates: the structured-mode JSON of the event, with JSON
/// data as an object.
fn template_context(event: &CloudEvent) -> minijinja::Value {
    let json = serde_json::to_value(Json(event)).unwrap_or_default();
    minijinja::context! { event => minijinja::Value::from(minijinja::value::Serde(&json)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_within_admits_one_run_per_window_and_key() {
        let mut t = Throttle::default();
        let now = Instant::now();
        let w = Duration::from_secs(60);
        assert!(t.admit("x", "a", w, now));
        assert!(!t.admit("x", "a", w, now + Duration::from_secs(59)));
        assert!(t.admit("x", "b", w, now), "another key runs");
        assert!(t.admit("y", "a", w, now), "another automation runs");
        assert!(t.admit("x", "a", w, now + Duration::from_secs(60)), "a new window runs");
    }

    #[test]
    fn templates_see_the_event_and_bad_ones_are_reported() {
        let event = plugboard_proto::CloudEvent {
            id: "e1".into(),
            source: "/s".into(),
            spec_version: "1.0".into(),
            r#type: "t".into(),
            attributes: [("datacontenttype".to_string(), plugboard_proto::event::string_attr("application/json"))]
                .into(),
            data: Some(plugboard_proto::io::cloudevents::v1::cloud_event::Data::TextData(r#"{"n": 3}"#.into())),
        };
        let env = environment();
        let ctx = template_context(&event);
        let out = env.render_str("echo {{ event.id }} {{ event.data.n }}", ctx.clone()).unwrap();
        assert_eq!(out, "echo e1 3");
        assert!(env.render_str("echo {{ event.nope }}", ctx.clone()).is_err());
        let bad = AutomationConfig {
            name: "x".into(),
            when: EventMatch::default(),
            command: "echo {{ oops".into(),
            user: default_user(),
            groups: vec![],
            channel: default_channel(),
            once_within: None,
            group_by: None,
        };
        assert!(problems(&[bad])[0].contains("command template"));
    }
}
