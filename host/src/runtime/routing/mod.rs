//! Routes (Senlin's dispatchers, evbus's fan-out): which stored events go to
//! which sinks. A route names source instances (or all), CloudEvents
//! Subscriptions API filters, an optional CEL condition on the event, and
//! the sinks it feeds. With no routes at all, every event goes to every sink.
//!
//! ```yaml
//! routes:
//!   - name: critical-alerts
//!     sources: [alerts]                      # omitted: every source
//!     filters:                               # all must match
//!       - prefix: { type: com.example.alert }
//!     condition: 'data.severity == "critical"'
//!     sinks: [pager, archive]
//! ```

pub mod condition;
pub mod filter;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

pub use condition::Condition;
pub use filter::Filter;

use super::sinks::AUTOMATION_SINK_PREFIX;
use super::store::StoredEvent;

/// `routes:` entries in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Shown in logs; default `routes[N]`.
    #[serde(default)]
    pub name: Option<String>,
    /// Source instance names (also `plugboard` for host events and `http` for
    /// `POST /v1/events`); empty or omitted: every source.
    #[serde(default)]
    pub sources: Vec<String>,
    /// CloudEvents Subscriptions API filter expressions; all must match.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// A CEL expression over `event` and `data` that must yield true.
    #[serde(default)]
    pub condition: Option<String>,
    /// The sinks that receive what matches.
    #[serde(default)]
    pub sinks: Vec<String>,
    /// Automations (by name) that run for what matches, besides or instead of sinks.
    #[serde(default)]
    pub automations: Vec<String>,
}

/// A checked, compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    sources: Option<HashSet<String>>,
    filters: Vec<Filter>,
    condition: Option<Condition>,
    pub sinks: Vec<String>,
    /// Events whose condition did not evaluate (counted as no match).
    pub condition_errors: AtomicU64,
}

impl Route {
    /// Whether `stored` takes this route.
    pub fn matches(&self, stored: &StoredEvent) -> bool {
        match &self.sources {
            Some(sources) if !sources.contains(&*stored.instance) => return false,
            None if is_lifecycle(stored) => return false,
            _ => {}
        }
        if !self.filters.iter().all(|f| f.matches(&stored.event)) {
            return false;
        }
        match &self.condition {
            None => true,
            Some(condition) => match condition.evaluate(&stored.event) {
                Ok(matched) => matched,
                Err(e) => {
                    self.condition_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(route = %self.name, seq = stored.seq, id = %stored.event.id, "condition {:?} does not apply: {e}", condition.source());
                    false
                }
            },
        }
    }
}

/// Routes are the same when they select the same events for the same sinks
/// (their error counts aside): a reload that leaves them so swaps nothing.
impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.sources == other.sources
            && self.filters == other.filters
            && self.condition.as_ref().map(Condition::source) == other.condition.as_ref().map(Condition::source)
            && self.sinks == other.sinks
    }
}

/// Every route, compiled.
#[derive(Debug, Default, PartialEq)]
pub struct Routing {
    routes: Vec<Arc<Route>>,
}

/// The routes that feed one sink.
#[derive(Debug, Clone)]
pub enum SinkRoutes {
    /// No routes are configured: the sink gets every event.
    Everything,
    /// The sink gets what matches any of these (none: nothing).
    Routes(Arc<[Arc<Route>]>),
}

/// Plugin lifecycle events (`dev.plugboard.plugin.*` from the host) are
/// stored like every event but delivered only through routes that name the
/// `plugboard` instance in `sources`: operators opt in, so sinks that take
/// "everything" are not flooded by a crash-looping plugin.
fn is_lifecycle(stored: &StoredEvent) -> bool {
    &*stored.instance == crate::runtime::host_events::HOST_INSTANCE
        && stored.event.r#type.starts_with(crate::runtime::supervisor::lifecycle::TYPE_PREFIX)
}

impl SinkRoutes {
    pub fn matches(&self, stored: &StoredEvent) -> bool {
        match self {
            SinkRoutes::Everything => !is_lifecycle(stored),
            SinkRoutes::Routes(routes) => routes.iter().any(|r| r.matches(stored)),
        }
    }
}

impl Routing {
    /// Checks and compiles `configs`; problems name the route and what is wrong.
    pub fn compile(
        configs: &[RouteConfig],
        sources: &[&str],
        sinks: &[&str],
        automations: &[&str],
        problems: &mut Vec<String>,
    ) -> Self {
        let mut routes = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let name = c.name.clone().unwrap_or_else(|| format!("routes[{i}]"));
            let at = match &c.name {
                Some(n) => format!("routes[{i}] {n:?}"),
                None => format!("routes[{i}]"),
            };
            for s in &c.sources {
                if !sources.contains(&s.as_str()) {
                    problems.push(format!("{at}: unknown source {s:?}; sources: {}", sources.join(", ")));
                }
            }
            if c.sinks.is_empty() && c.automations.is_empty() {
                problems.push(format!("{at}: names no sinks and no automations"));
            }
            for s in &c.sinks {
                if !sinks.contains(&s.as_str()) {
                    problems.push(format!("{at}: unknown sink {s:?}; sinks: {}", sinks.join(", ")));
                }
            }
            for a in &c.automations {
                if !automations.contains(&a.as_str()) {
                    problems.push(format!(
                        "{at}: unknown automation {a:?}; automations: {}",
                        if automations.is_empty() { "none".to_owned() } else { automations.join(", ") }
                    ));
                }
            }
            for (j, f) in c.filters.iter().enumerate() {
                f.problems(&format!("{at}.filters[{j}]"), problems);
            }
            let condition = match c.condition.as_deref().map(Condition::compile) {
                None => None,
                Some(Ok(condition)) => Some(condition),
                Some(Err(e)) => {
                    problems.push(format!("{at}: condition does not compile: {e}"));
                    None
                }
            };
            routes.push(Arc::new(Route {
                name,
                sources: (!c.sources.is_empty()).then(|| c.sources.iter().cloned().collect()),
                filters: c.filters.clone(),
                condition,
                // Automations are fed like sinks, under a reserved name.
                sinks: c
                    .sinks
                    .iter()
                    .cloned()
                    .chain(c.automations.iter().map(|a| format!("{AUTOMATION_SINK_PREFIX}{a}")))
                    .collect(),
                condition_errors: AtomicU64::new(0),
            }));
        }
        Self { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// What `sink` receives. An automation no route names sees every event
    /// (its own `when` selects); one that routes name sees what they match.
    pub fn for_sink(&self, sink: &str) -> SinkRoutes {
        let routes: Arc<[Arc<Route>]> =
            self.routes.iter().filter(|r| r.sinks.iter().any(|s| s == sink)).cloned().collect();
        if self.routes.is_empty() || (routes.is_empty() && sink.starts_with(AUTOMATION_SINK_PREFIX)) {
            return SinkRoutes::Everything;
        }
        SinkRoutes::Routes(routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_proto::CloudEvent;

    fn stored(instance: &str, ty: &str, data: &str) -> StoredEvent {
        StoredEvent {
            seq: 1,
            instance: Arc::from(instance),
            event: CloudEvent {
                id: "1".into(),
                source: "/s".into(),
                spec_version: "1.0".into(),
                r#type: ty.into(),
                data: Some(plugboard_proto::io::cloudevents::v1::cloud_event::Data::TextData(data.into())),
                ..Default::default()
            },
        }
    }

    fn routing(yaml: &str) -> Result<Routing, Vec<String>> {
        let configs: Vec<RouteConfig> = serde_yaml::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        let r = Routing::compile(&configs, &["alerts", "ticks", "http"], &["pager", "archive"], &[], &mut problems);
        if problems.is_empty() { Ok(r) } else { Err(problems) }
    }

    #[test]
    fn sinks_get_what_their_routes_match() {
        let r = routing(
            r#"
- sources: [alerts]
  filters: [{ prefix: { type: com.example. } }]
  condition: 'data.severity == "critical"'
  sinks: [pager]
- sinks: [archive]
"#,
        )
        .unwrap();
        let pager = r.for_sink("pager");
        let archive = r.for_sink("archive");
        let critical = stored("alerts", "com.example.alert", r#"{"severity":"critical"}"#);
        let warning = stored("alerts", "com.example.alert", r#"{"severity":"warning"}"#);
        let from_ticks = stored("ticks", "com.example.alert", r#"{"severity":"critical"}"#);
        assert!(pager.matches(&critical));
        assert!(!pager.matches(&warning));
        assert!(!pager.matches(&from_ticks), "only the named source");
        assert!(archive.matches(&critical) && archive.matches(&warning) && archive.matches(&from_ticks));
        // A condition that errors (no `severity`) is no match, and counted.
        assert!(!pager.matches(&stored("alerts", "com.example.alert", "{}")));
        assert_eq!(r.routes()[0].condition_errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn lifecycle_events_go_only_where_a_route_names_the_plugboard_instance() {
        let started = stored("plugboard", "dev.plugboard.plugin.started", "{}");
        let audit = stored("plugboard", "dev.plugboard.command.executed", "{}");
        let everything = Routing::default().for_sink("out");
        assert!(!everything.matches(&started));
        assert!(everything.matches(&audit));
        let configs: Vec<RouteConfig> = serde_yaml::from_str(
            "- { sinks: [all] }\n- { sources: [plugboard], sinks: [ops] }\n- { sources: [a], filters: [{ prefix: { type: dev. } }], sinks: [a] }\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        let r = Routing::compile(&configs, &["plugboard", "a"], &["all", "ops", "a"], &[], &mut problems);
        assert_eq!(problems, Vec::<String>::new());
        assert!(!r.for_sink("all").matches(&started));
        assert!(r.for_sink("all").matches(&audit));
        assert!(r.for_sink("ops").matches(&started));
        assert!(!r.for_sink("a").matches(&started));
    }

    #[test]
    fn without_routes_every_sink_gets_everything() {
        let r = routing("[]").unwrap();
        assert!(r.for_sink("pager").matches(&stored("ticks", "x", "")));
    }

    #[test]
    fn a_sink_no_route_names_gets_nothing_when_routes_exist() {
        let r = routing("- sinks: [pager]").unwrap();
        assert!(!r.for_sink("archive").matches(&stored("ticks", "x", "")));
    }

    #[test]
    fn unknown_names_and_bad_conditions_are_reported() {
        let problems = routing(
            r#"
- name: bad
  sources: [nosuch]
  condition: 'data.x =='
  sinks: [nowhere]
- sinks: []
- sinks: [pager]
  automations: [nobody]
"#,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].starts_with("routes[0] \"bad\": unknown source \"nosuch\"; sources: alerts, ticks, http"));
        assert!(problems[1].contains("unknown sink \"nowhere\"; sinks: pager, archive"), "{problems:?}");
        assert!(problems[2].contains("condition does not compile"), "{problems:?}");
        assert_eq!(problems[3], "routes[1]: names no sinks and no automations");
        assert_eq!(problems[4], "routes[2]: unknown automation \"nobody\"; automations: none");
    }
}

#[cfg(test)]
mod automation_routes {
    use super::*;
    use plugboard_proto::CloudEvent;

    fn stored(ty: &str) -> StoredEvent {
        StoredEvent {
            seq: 1,
            instance: Arc::from("ticks"),
            event: CloudEvent {
                id: "1".into(),
                source: "/s".into(),
                spec_version: "1.0".into(),
                r#type: ty.into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn automations_are_fed_like_sinks_and_see_everything_until_a_route_names_them() {
        let configs: Vec<RouteConfig> = serde_yaml::from_str(
            "- filters: [{ exact: { type: deploy } }]\n  automations: [notify]\n- sinks: [archive]\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        let r = Routing::compile(&configs, &["ticks"], &["archive"], &["notify", "other"], &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let named = r.for_sink("automation:notify");
        assert!(named.matches(&stored("deploy")));
        assert!(!named.matches(&stored("tick")), "a route that names it narrows what it sees");
        assert!(r.for_sink("automation:other").matches(&stored("tick")), "unnamed: everything (its `when` selects)");
        assert!(!r.for_sink("unnamed-sink").matches(&stored("tick")), "plain sinks still need a route");
    }
}
