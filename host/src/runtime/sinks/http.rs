//! The `http` sink: one POST per event in the CloudEvents HTTP binding,
//! structured (`application/cloudevents+json`) or binary (`ce-` headers),
//! each with its own timeout. A 2xx response is a delivery; 400, 413, 415
//! and 422 say the event itself is unacceptable (dead-lettered at once);
//! anything else, or no answer, is retried.

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::config::{HttpMode, HttpSinkConfig};
use super::{DeliveryError, Sink};
use crate::runtime::http::binding;
use crate::runtime::store::StoredEvent;

pub struct HttpSink {
    config: HttpSinkConfig,
    client: Result<reqwest::Client, String>,
    headers: HeaderMap,
}

impl HttpSink {
    pub fn new(config: HttpSinkConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("plugboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"));
        // Checked when the config was planned; an invalid one is skipped.
        let headers = config
            .headers
            .iter()
            .filter_map(|(k, v)| Some((HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?)))
            .collect();
        Self { config, client, headers }
    }

    async fn post(&self, client: &reqwest::Client, stored: &StoredEvent) -> Result<(), DeliveryError> {
        let mut request = client.post(&self.config.url).headers(self.headers.clone());
        request = match self.config.mode {
            HttpMode::Structured => request
                .header(CONTENT_TYPE, "application/cloudevents+json; charset=utf-8")
                .body(plugboard_proto::event::to_json_vec(&stored.event)),
            HttpMode::Binary => {
                let (headers, body) = binding::encode(&stored.event);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                request.body(body)
            }
        };
        let response = request.send().await.map_err(|e| {
            DeliveryError::retry(format!("POST {} failed: {}", self.config.url, crate::launcher::error_chain(&e)))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(200).collect();
        let message = format!("POST {} answered {status}: {}", self.config.url, body.trim());
        Err(match status.as_u16() {
            400 | 413 | 415 | 422 => DeliveryError::permanent(message),
            _ => DeliveryError::retry(message),
        })
    }
}

#[tonic::async_trait]
impl Sink for HttpSink {
    async fn deliver(&mut self, events: &[Arc<StoredEvent>]) -> Result<(), DeliveryError> {
        let client = self.client.as_ref().map_err(|e| DeliveryError::retry(e.clone()))?.clone();
        for (i, stored) in events.iter().enumerate() {
            self.post(&client, stored).await.map_err(|e| DeliveryError { delivered: i, ..e })?;
        }
        Ok(())
    }
}
