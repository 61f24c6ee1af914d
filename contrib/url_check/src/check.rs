//! One check of one URL: status code and latency, or why it is down.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Method, Settings};

/// What one check found (the event's data).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outcome {
    pub url: String,
    /// "up" (a 2xx answer, after redirects) or "down".
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Until the response headers arrived (or the request failed).
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_msg: Option<String>,
    /// The check round this belongs to.
    pub check: u64,
}

impl Outcome {
    pub fn is_up(&self) -> bool {
        self.status == "up"
    }
}

/// The HTTP client every check of an instance shares (connection reuse).
pub fn client(settings: &Settings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(settings.timeout)
        .tls_danger_accept_invalid_certs(!settings.verify_ssl)
        .user_agent(concat!("plugboard-url_check/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", root_cause(&e)))
}

pub async fn check(client: &reqwest::Client, settings: &Settings, url: &reqwest::Url, round: u64) -> Outcome {
    let method = match settings.method {
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
    };
    let started = Instant::now();
    let result = client.request(method, url.clone()).send().await;
    let latency_ms = millis(started.elapsed());
    match result {
        Ok(resp) => {
            let code = resp.status();
            Outcome {
                url: url.to_string(),
                status: if code.is_success() { "up" } else { "down" },
                status_code: Some(code.as_u16()),
                latency_ms,
                error_msg: None,
                check: round,
            }
        }
        Err(e) => Outcome {
            url: url.to_string(),
            status: "down",
            status_code: None,
            latency_ms,
            error_msg: Some(describe(&e, settings.timeout)),
            check: round,
        },
    }
}

fn millis(d: Duration) -> f64 {
    // Microsecond resolution is plenty and keeps the JSON short.
    (d.as_micros() as f64) / 1000.0
}

/// reqwest's own message ("error sending request for url ...") hides the
/// cause; say what happened, then the innermost cause.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", humantime::format_duration(timeout));
    }
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect failed"
    } else {
        "request failed"
    };
    format!("{what}: {}", root_cause(e))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
