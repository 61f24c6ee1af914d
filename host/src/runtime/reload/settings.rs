//! What a reload changes in place, without touching any instance: the
//! command policy, the automations, the HTTP bearer tokens and the map of
//! `/v1/sources/{name}` endpoints. Each is swapped in one step; commands,
//! automation runs and requests already under way finish under the old.

use std::collections::HashMap;
use std::sync::Arc;

use crate::runtime::commands::CommandService;
use crate::runtime::commands::automation::AutomationRunner;
use crate::runtime::config::Config;
use crate::runtime::http::LiveToken;
use crate::runtime::http::sources::{SourceEndpoint, SourceMap};
use crate::runtime::plan::Plan;
use crate::runtime::sources::ClientSlot;

/// The live settings of `run`'s host. Cheap to clone (clones share them).
#[derive(Clone)]
pub struct LiveSettings {
    pub commands: Arc<CommandService>,
    pub automations: Arc<AutomationRunner>,
    /// `http.token`: every API endpoint but `/v1/events` and the sources.
    pub api_token: LiveToken,
    /// `http.events_token`, else `http.token`.
    pub events_token: LiveToken,
    pub sources: SourceMap,
}

impl LiveSettings {
    /// Applies `config`'s policy, automations and tokens. The source
    /// endpoints follow separately, once the sources started: see [`endpoints`].
    pub fn apply(&self, config: &Config) {
        self.commands.set_policy(&config.commands);
        self.automations.set_automations(config.automations.clone());
        self.api_token.set(config.http.token.clone());
        self.events_token.set(config.http.events_token.clone().or_else(|| config.http.token.clone()));
    }
}

/// The `/v1/sources/{name}` endpoints of `plan`'s sources; `slots` are
/// their forwarding slots by name (a source without one is left out).
pub fn endpoints(plan: &Plan, config: &Config, slots: &HashMap<String, ClientSlot>) -> HashMap<String, SourceEndpoint> {
    plan.sources
        .iter()
        .filter_map(|source| {
            let client = Arc::clone(slots.get(&source.name)?);
            let endpoint = SourceEndpoint {
                name: Arc::from(source.name.as_str()),
                plugin: source.plugin.info.name.clone(),
                config: source.config.clone(),
                token: source.http_token.clone().or_else(|| config.http.token.clone()),
                client,
            };
            Some((source.name.clone(), endpoint))
        })
        .collect()
}
