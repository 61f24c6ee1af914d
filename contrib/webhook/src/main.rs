//! `webhook` source: every request the host forwards to this instance
//! (`POST /v1/sources/{instance}`) becomes one event, after an optional
//! bearer token and HMAC signature check (like ansible.eda's `webhook`).
//! The event stream carries nothing: events travel with the request's reply.

mod config;
mod request;
mod verify;

use plugboard_sdk::prelude::*;

use crate::config::{Config, Settings};

const HELP: &str = "\
webhook: one event per HTTP request the host forwards to POST /v1/sources/<instance>.

Config (all optional):
  token         require `Authorization: Bearer <token>` (401 otherwise)
  hmac          require an HMAC of the raw body: {secret, algorithm: sha256|sha1|sha512,
                header (x-hub-signature-256), encoding: hex|base64, prefix (\"<algorithm>=\")}
                (401 when the header is missing, 403 when it does not match)
  type          event type (dev.plugboard.webhook)
  require_json  400 unless the body is JSON (true); when false, other bodies become
                text or binary data with the request's content type
  id_header     header whose value becomes the event id (e.g. x-github-delivery), so a
                redelivered request is stored once
  headers       headers copied into the event, header -> extension name
                (e.g. {x-github-event: githubevent})

Events: data = the JSON body. Authorization, cookies and signature or token headers are
never copied into events. Replies 202 {\"accepted\":1,\"id\":...}; errors are
{\"error\":{\"code\",\"message\"}}.
Cursors: none (events come with requests; a sender that retries is the redelivery).";

struct Webhook;

fn settings(ctx: &SourceContext) -> Result<Settings, PluginError> {
    let config: Config = ctx.config()?;
    config.check().map_err(PluginError::invalid_config)
}

#[plugboard_sdk::async_trait]
impl Source for Webhook {
    /// Checks the config, then waits: the host keeps the stream open while
    /// the instance runs and closes it to stop the plugin.
    async fn stream(&self, ctx: SourceContext, _events: EventSender) -> Result<(), PluginError> {
        let settings = settings(&ctx)?;
        tracing::info!(
            instance = %ctx.instance,
            token = settings.token.is_some(),
            hmac = settings.hmac.is_some(),
            "webhook ready for requests on POST /v1/sources/{}",
            ctx.instance
        );
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn handle_request(&self, ctx: SourceContext, req: HttpRequest) -> Result<HttpResponse, PluginError> {
        let settings = settings(&ctx)?;
        Ok(request::handle(&settings, &ctx.instance, &req))
    }
}

fn main() {
    Plugin::new("webhook", env!("CARGO_PKG_VERSION"))
        .description("turns HTTP requests forwarded by the host into events (bearer token, HMAC signatures)")
        .help(HELP)
        .config_schema(config::schema())
        .source(Webhook)
        .serve()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing;

    #[tokio::test]
    async fn a_bad_config_fails_the_stream_with_a_clear_error() {
        let err =
            testing::collect_events(Webhook, serde_json::json!({"hmac": {"secret": ""}}), None, 1).await.unwrap_err();
        assert_eq!(err.to_string(), "invalid config: hmac.secret must not be empty");
        let err = testing::collect_events(Webhook, serde_json::json!({"port": 5000}), None, 1).await.unwrap_err();
        assert!(err.to_string().contains("unknown field `port`"), "{err}");
    }

    #[tokio::test]
    async fn the_stream_stays_open_until_the_host_closes_it() {
        let mut run = testing::start_source(Webhook, serde_json::json!({}), None);
        // Let the source task run to its wait (the test runtime is single-threaded).
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        // A zero timeout polls once: nothing sent, not ended.
        let polled = tokio::time::timeout(std::time::Duration::ZERO, run.next()).await;
        assert!(polled.is_err(), "the stream produced or ended: {polled:?}");
    }

    #[tokio::test]
    async fn handle_request_refuses_a_bad_config() {
        let ctx =
            SourceContext { instance: "hook".into(), config: serde_json::json!({"token": 5}), resume_cursor: None };
        let err = Webhook.handle_request(ctx, HttpRequest::default()).await.unwrap_err();
        assert!(err.to_string().starts_with("invalid config: invalid type: integer `5`"), "{err}");
    }

    #[test]
    fn the_schema_is_strict() {
        let schema = config::schema();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["hmac"]["additionalProperties"], false);
    }
}
