//! The instance config, as written and as checked.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::verify::{Algorithm, Encoding, HmacCheck};

/// The config as the operator writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Required `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<String>,
    /// Required HMAC signature of the body.
    #[serde(default)]
    pub hmac: Option<HmacConfig>,
    /// CloudEvents `type` of the events.
    #[serde(default = "default_type", rename = "type")]
    pub event_type: String,
    /// Refuse bodies that are not JSON (400). When false, other bodies become
    /// text or binary data with their content type.
    #[serde(default = "default_true")]
    pub require_json: bool,
    /// Header whose value becomes the event id (a sender's delivery id), so
    /// a redelivered request is stored once.
    #[serde(default)]
    pub id_header: Option<String>,
    /// Request headers copied into the event: header name -> extension attribute name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    pub secret: String,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default = "default_signature_header")]
    pub header: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// Stripped from the header value when present; default `<algorithm>=`
    /// (GitHub's `sha256=<hex>`).
    #[serde(default)]
    pub prefix: Option<String>,
}

pub const DEFAULT_TYPE: &str = "dev.plugboard.webhook";

fn default_type() -> String {
    DEFAULT_TYPE.to_owned()
}

fn default_true() -> bool {
    true
}

fn default_signature_header() -> String {
    "x-hub-signature-256".to_owned()
}

/// The config checked and ready for requests.
#[derive(Debug)]
pub struct Settings {
    pub token: Option<String>,
    pub hmac: Option<HmacCheck>,
    pub event_type: String,
    pub require_json: bool,
    pub id_header: Option<String>,
    /// (lower-case header name, extension name)
    pub headers: Vec<(String, String)>,
}

/// Headers that carry credentials: never copied into an event, whatever the config says.
pub fn is_sensitive_header(name: &str) -> bool {
    const EXACT: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];
    const PARTS: &[&str] = &["signature", "token", "secret", "api-key", "apikey", "password"];
    let name = name.to_ascii_lowercase();
    EXACT.contains(&name.as_str()) || PARTS.iter().any(|p| name.contains(p))
}

/// Attributes an extension may not shadow.
const RESERVED_ATTRIBUTES: &[&str] =
    &["id", "source", "specversion", "type", "data", "data_base64", "time", "subject", "datacontenttype", "dataschema"];

fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Config {
    pub fn check(self) -> Result<Settings, String> {
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err("token must not be empty (leave it out to accept requests without one)".into());
        }
        if self.event_type.is_empty() || self.event_type.chars().any(char::is_whitespace) {
            return Err(format!("type {:?} must be a non-empty string without spaces", self.event_type));
        }
        let hmac = match self.hmac {
            None => None,
            Some(h) => {
                if h.secret.is_empty() {
                    return Err("hmac.secret must not be empty".into());
                }
                if !valid_header_name(&h.header) {
                    return Err(format!("hmac.header {:?} is not an HTTP header name", h.header));
                }
                let prefix = h.prefix.unwrap_or_else(|| format!("{}=", h.algorithm.name()));
                Some(HmacCheck::new(
                    h.secret.into_bytes(),
                    h.algorithm,
                    h.header.to_ascii_lowercase(),
                    h.encoding,
                    prefix,
                ))
            }
        };
        let id_header = match self.id_header {
            None => None,
            Some(h) => {
                if !valid_header_name(&h) {
                    return Err(format!("id_header {h:?} is not an HTTP header name"));
                }
                if is_sensitive_header(&h) {
                    return Err(format!("id_header {h:?} carries credentials and cannot become the event id"));
                }
                Some(h.to_ascii_lowercase())
            }
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (header, extension) in self.headers {
            if !valid_header_name(&header) {
                return Err(format!("headers: {header:?} is not an HTTP header name"));
            }
            let header = header.to_ascii_lowercase();
            if is_sensitive_header(&header) || hmac.as_ref().is_some_and(|h| h.header() == header) {
                return Err(format!("headers: {header:?} carries credentials and is never copied into events"));
            }
            if extension.is_empty() || !extension.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
                return Err(format!(
                    "headers: extension name {extension:?} for {header:?} must be lower-case letters and digits"
                ));
            }
            if RESERVED_ATTRIBUTES.contains(&extension.as_str()) {
                return Err(format!("headers: {extension:?} is a CloudEvents attribute, not an extension name"));
            }
            if let Some((other, _)) = headers.iter().find(|(_, e)| *e == extension) {
                return Err(format!("headers: {other:?} and {header:?} both map to extension {extension:?}"));
            }
            headers.push((header, extension));
        }
        Ok(Settings {
            token: self.token,
            hmac,
            event_type: self.event_type,
            require_json: self.require_json,
            id_header,
            headers,
        })
    }
}

/// The config schema the host validates instance configs against.
pub fn schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "token": {
                "type": "string", "minLength": 1, "writeOnly": true,
                "description": "require `Authorization: Bearer <token>` (compared in constant time)"
            },
            "hmac": {
                "type": "object",
                "description": "require an HMAC signature of the raw body",
                "properties": {
                    "secret": {"type": "string", "minLength": 1, "writeOnly": true},
                    "algorithm": {"enum": ["sha256", "sha1", "sha512"], "default": "sha256"},
                    "header": {"type": "string", "minLength": 1, "default": "x-hub-signature-256"},
                    "encoding": {"enum": ["hex", "base64"], "default": "hex"},
                    "prefix": {
                        "type": "string",
                        "description": "stripped from the header value when present; default \"<algorithm>=\""
                    }
                },
                "required": ["secret"],
                "additionalProperties": false
            },
            "type": {
                "type": "string", "minLength": 1, "pattern": "^\\S+$", "default": DEFAULT_TYPE,
                "description": "CloudEvents type of the events"
            },
            "require_json": {
                "type": "boolean", "default": true,
                "description": "answer 400 to a body that is not JSON; when false, other bodies become text or binary data"
            },
            "id_header": {
                "type": "string", "minLength": 1,
                "description": "header whose value becomes the event id, e.g. x-github-delivery"
            },
            "headers": {
                "type": "object",
                "description": "request headers copied into the event: header name -> extension attribute name",
                "additionalProperties": {"type": "string", "pattern": "^[a-z0-9]+$"}
            }
        },
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
    fn defaults_accept_any_json_request() {
        let s = check(serde_json::json!({})).unwrap();
        assert!(s.token.is_none() && s.hmac.is_none() && s.require_json);
        assert_eq!(s.event_type, DEFAULT_TYPE);
    }

    #[test]
    fn credential_headers_are_refused_as_event_content() {
        for header in ["Authorization", "x-hub-signature-256", "X-Gitlab-Token", "cookie"] {
            let err = check(serde_json::json!({"headers": {header: "h"}})).unwrap_err();
            assert!(err.contains("carries credentials"), "{header}: {err}");
        }
        let err = check(serde_json::json!({"hmac": {"secret": "s", "header": "x-sig"}, "headers": {"X-Sig": "sig"}}))
            .unwrap_err();
        assert!(err.contains("\"x-sig\" carries credentials"), "{err}");
        let err = check(serde_json::json!({"id_header": "authorization"})).unwrap_err();
        assert!(err.contains("cannot become the event id"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = check(serde_json::json!({"headers": {"x-github-event": "GitHub-Event"}})).unwrap_err();
        assert!(err.contains("\"GitHub-Event\""), "{err}");
        let err = check(serde_json::json!({"headers": {"x-a": "time"}})).unwrap_err();
        assert!(err.contains("\"time\" is a CloudEvents attribute"), "{err}");
        let err = check(serde_json::json!({"headers": {"x-a": "same", "x-b": "same"}})).unwrap_err();
        assert!(err.contains("both map to extension \"same\""), "{err}");
        let err = check(serde_json::json!({"hmac": {"secret": ""}})).unwrap_err();
        assert!(err.contains("hmac.secret must not be empty"), "{err}");
        let err = check(serde_json::json!({"hmac": {"secret": "s", "algorithm": "md5"}})).unwrap_err();
        assert!(err.contains("unknown variant `md5`"), "{err}");
        let err = check(serde_json::json!({"token": ""})).unwrap_err();
        assert!(err.contains("token must not be empty"), "{err}");
        let err = check(serde_json::json!({"tokn": "x"})).unwrap_err();
        assert!(err.contains("unknown field `tokn`"), "{err}");
    }
}
