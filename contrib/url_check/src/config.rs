//! The instance config, as written and as checked.

use std::time::Duration;

use plugboard_sdk::config;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub urls: Vec<String>,
    /// Seconds (number, as in ansible.eda) or a duration ("30s", "2m").
    #[serde(default)]
    pub delay: Option<serde_json::Value>,
    #[serde(default)]
    pub timeout: Option<serde_json::Value>,
    #[serde(default = "default_true")]
    pub verify_ssl: bool,
    #[serde(default)]
    pub method: Method,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Method {
    #[default]
    #[serde(rename = "GET", alias = "get")]
    Get,
    #[serde(rename = "HEAD", alias = "head")]
    Head,
}

fn default_true() -> bool {
    true
}

pub const DEFAULT_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The config checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub urls: Vec<reqwest::Url>,
    pub delay: Duration,
    pub timeout: Duration,
    pub verify_ssl: bool,
    pub method: Method,
}

impl Config {
    pub fn check(self) -> Result<Settings, String> {
        if self.urls.is_empty() {
            return Err("urls must list at least one URL".into());
        }
        let mut urls = Vec::with_capacity(self.urls.len());
        for (i, text) in self.urls.iter().enumerate() {
            let url = reqwest::Url::parse(text).map_err(|e| format!("urls[{i}] {text:?} is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("urls[{i}] {text:?}: the scheme must be http or https"));
            }
            if urls.contains(&url) {
                return Err(format!("urls[{i}] {text:?} is listed twice"));
            }
            urls.push(url);
        }
        let delay = config::seconds_or_duration("delay", self.delay.as_ref(), DEFAULT_DELAY)?;
        let timeout = config::seconds_or_duration("timeout", self.timeout.as_ref(), DEFAULT_TIMEOUT)?;
        Ok(Settings { urls, delay, timeout, verify_ssl: self.verify_ssl, method: self.method })
    }
}

pub fn schema() -> serde_json::Value {
    let duration = |description: &str, default: &str| {
        serde_json::json!({
            "description": description,
            "default": default,
            "oneOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?\\s*[a-z]+(\\s*[0-9]+(\\.[0-9]+)?\\s*[a-z]+)*$"}
            ]
        })
    };
    serde_json::json!({
        "type": "object",
        "properties": {
            "urls": {
                "type": "array", "minItems": 1, "uniqueItems": true,
                "items": {"type": "string", "pattern": "^[hH][tT][tT][pP][sS]?://"},
                "description": "the http(s) URLs to check"
            },
            "delay": duration("time between checks: seconds or a duration like \"30s\"", "1s"),
            "timeout": duration("per-request timeout: seconds or a duration", "10s"),
            "verify_ssl": {"type": "boolean", "default": true, "description": "verify TLS certificates"},
            "method": {"enum": ["GET", "HEAD", "get", "head"], "default": "GET"}
        },
        "required": ["urls"],
        "additionalProperties": false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: serde_json::Value) -> Result<Settings, String> {
        plugboard_sdk::config::from_json::<Config>(config)?.check()
    }

    #[test]
    fn delays_are_seconds_or_durations() {
        let s = check(serde_json::json!({"urls": ["http://a/"], "delay": 2.5, "timeout": "250ms"})).unwrap();
        assert_eq!(s.delay, Duration::from_millis(2500));
        assert_eq!(s.timeout, Duration::from_millis(250));
        let s = check(serde_json::json!({"urls": ["http://a/"]})).unwrap();
        assert_eq!((s.delay, s.timeout, s.verify_ssl, s.method), (DEFAULT_DELAY, DEFAULT_TIMEOUT, true, Method::Get));
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (serde_json::json!({"urls": []}), "urls must list at least one URL"),
            (
                serde_json::json!({"urls": ["example.com"]}),
                "urls[0] \"example.com\" is not a URL: relative URL without a base",
            ),
            (
                serde_json::json!({"urls": ["http://a/", "ftp://b/"]}),
                "urls[1] \"ftp://b/\": the scheme must be http or https",
            ),
            (serde_json::json!({"urls": ["http://a/", "http://a"]}), "urls[1] \"http://a\" is listed twice"),
            (serde_json::json!({"urls": ["http://a/"], "delay": 0}), "delay must be greater than zero"),
            (serde_json::json!({"urls": ["http://a/"], "delay": -1}), "delay -1 is not a number of seconds"),
            (
                serde_json::json!({"urls": ["http://a/"], "timeout": "soon"}),
                "timeout \"soon\" is not a duration: expected number at 0",
            ),
            (
                serde_json::json!({"urls": ["http://a/"], "delay": true}),
                "delay true must be seconds or a duration like \"30s\"",
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(check(config.clone()).unwrap_err(), expected, "{config}");
        }
        let err = check(serde_json::json!({"url": "http://a/"})).unwrap_err();
        assert!(err.contains("unknown field `url`"), "{err}");
        let err = check(serde_json::json!({"urls": ["http://a/"], "method": "POST"})).unwrap_err();
        assert!(err.contains("unknown variant `POST`"), "{err}");
    }
}
