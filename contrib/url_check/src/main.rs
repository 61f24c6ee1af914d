//! `url_check` source: polls a list of URLs every `delay` and emits one
//! event per URL per round with its status code, latency and up/down (like
//! ansible.eda's `url_check`).

mod check;
mod config;

use std::time::Duration;

use plugboard_sdk::prelude::*;

use crate::config::{Config, Settings};

pub const TYPE_UP: &str = "dev.plugboard.url_check.up";
pub const TYPE_DOWN: &str = "dev.plugboard.url_check.down";

const HELP: &str = "\
url_check: checks each URL every `delay` and emits one event per URL per round.

Config:
  urls        required list of http(s) URLs
  delay       time between rounds: seconds (number) or a duration like \"30s\" (1s)
  timeout     per-request timeout, same forms (10s)
  verify_ssl  verify TLS certificates (true)
  method      GET or HEAD (GET)

Events: type dev.plugboard.url_check.up (a 2xx answer, after redirects) or .down (any
other status, a connection error or a timeout); subject = the URL; data = {url, status:
up|down, status_code, latency_ms (until the response headers), error_msg (when no answer),
check (the round number)}; id = <instance>-<round>-<url index>.
Cursors: the round number. After a restart the rounds continue from the last stored one,
so event ids are never reused (a check is a point in time: nothing is replayed).";

struct UrlCheck;

/// The round after a cursor.
fn first_round(resume_cursor: Option<&str>) -> Result<u64, PluginError> {
    match resume_cursor {
        None => Ok(0),
        Some(c) => c
            .parse::<u64>()
            .map(|r| r + 1)
            .map_err(|_| PluginError::invalid_argument(format!("resume cursor {c:?} is not a round number"))),
    }
}

#[plugboard_sdk::async_trait]
impl Source for UrlCheck {
    async fn stream(&self, ctx: SourceContext, events: EventSender) -> Result<(), PluginError> {
        let config: Config = ctx.config()?;
        let settings: Settings = config.check().map_err(PluginError::invalid_config)?;
        let client = check::client(&settings).map_err(PluginError::internal)?;
        let source = format!("/plugboard/url_check/{}", ctx.instance);
        let mut round = first_round(ctx.resume_cursor.as_deref())?;
        tracing::info!(
            urls = settings.urls.len(),
            delay = %humantime::format_duration(settings.delay),
            first_round = round,
            "checking URLs"
        );
        let mut ticker = tokio::time::interval(settings.delay.max(Duration::from_millis(1)));
        // A round slower than `delay` pushes the next one back instead of bunching them up.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let checks = settings.urls.iter().map(|url| check::check(&client, &settings, url, round));
            let outcomes = futures_util::future::join_all(checks).await;
            let cursor = round.to_string();
            for (index, outcome) in outcomes.into_iter().enumerate() {
                if !outcome.is_up() {
                    tracing::debug!(url = %outcome.url, error = outcome.error_msg.as_deref().unwrap_or(""), "down");
                }
                let ty = if outcome.is_up() { TYPE_UP } else { TYPE_DOWN };
                let event = EventBuilder::new(ty, source.as_str())
                    .id(format!("{}-{round}-{index}", ctx.instance))
                    .subject(outcome.url.as_str())
                    .json(&outcome)
                    .build();
                events.send(event, cursor.as_str()).await?;
            }
            round += 1;
        }
    }
}

fn main() {
    Plugin::new("url_check", env!("CARGO_PKG_VERSION"))
        .description("polls URLs every delay and emits their status code, latency and up/down")
        .help(HELP)
        .config_schema(config::schema())
        .source(UrlCheck)
        .serve()
}

#[cfg(test)]
mod tests;
