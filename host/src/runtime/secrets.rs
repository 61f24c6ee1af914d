//! Secrets in plugin configs: the fields a plugin's JSON Schema marks secret
//! (`writeOnly: true` or `format: password`) are masked wherever the host
//! could show them — debug output, config errors, command output and errors.

use serde_json::Value;

/// What a masked value is shown as.
pub const MASK: &str = "********";

/// The secret string values of `config` according to `schema` (longest first,
/// so overlapping secrets are masked whole).
pub fn secret_values(schema: &Value, config: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect(schema, config, false, &mut found);
    found.retain(|s: &String| !s.is_empty());
    found.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    found.dedup();
    found
}

/// Parses a plugin's `config_schema` text (empty or invalid: no secrets).
pub fn schema_secrets(schema_text: &str, config: &Value) -> Vec<String> {
    match serde_json::from_str::<Value>(schema_text) {
        Ok(schema) => secret_values(&schema, config),
        Err(_) => Vec::new(),
    }
}

fn is_secret(schema: &Value) -> bool {
    schema.get("writeOnly").and_then(Value::as_bool) == Some(true)
        || schema.get("format").and_then(Value::as_str) == Some("password")
}

fn collect(schema: &Value, value: &Value, inherited: bool, found: &mut Vec<String>) {
    let secret = inherited || is_secret(schema);
    match value {
        Value::String(s) if secret => found.push(s.clone()),
        Value::Number(n) if secret => found.push(n.to_string()),
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|v| v.is_object());
            for (key, v) in map {
                match props.and_then(|p| p.get(key)).or(additional) {
                    Some(sub) => collect(sub, v, secret, found),
                    None if secret => collect(&Value::Null, v, true, found),
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            let sub = schema.get("items").unwrap_or(&Value::Null);
            for v in items {
                collect(sub, v, secret, found);
            }
        }
        _ => {}
    }
    // Combinators: a field marked secret in any branch is secret.
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            for b in branches {
                collect(b, value, secret, found);
            }
        }
    }
}

/// `text` with every secret replaced by [`MASK`].
pub fn mask_text(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

/// Masks secrets in a stream of chunks, including secrets split across
/// chunks: the tail that could start a secret is held back until the next
/// chunk (or [`Masker::finish`]).
#[derive(Debug, Default)]
pub struct Masker {
    secrets: Vec<Vec<u8>>,
    held: Vec<u8>,
    longest: usize,
}

impl Masker {
    pub fn new(secrets: &[String]) -> Self {
        let secrets: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        let longest = secrets.iter().map(Vec::len).max().unwrap_or(0);
        Self { secrets, held: Vec::new(), longest }
    }

    pub fn is_noop(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The masked bytes that are safe to pass on now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.is_noop() {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let held = std::mem::take(&mut self.held);
        let masked = self.replace_all(held);
        // Keep back the longest tail that is a proper prefix of some secret.
        let keep = (1..self.longest.min(masked.len() + 1))
            .rev()
            .find(|&n| self.secrets.iter().any(|s| s.len() > n && masked.ends_with(&s[..n])))
            .unwrap_or(0);
        let split = masked.len() - keep;
        self.held = masked[split..].to_vec();
        masked[..split].to_vec()
    }

    /// Whatever was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    fn replace_all(&self, mut data: Vec<u8>) -> Vec<u8> {
        for s in &self.secrets {
            if s.is_empty() || data.len() < s.len() {
                continue;
            }
            let mut out = Vec::with_capacity(data.len());
            let mut i = 0;
            while i < data.len() {
                if data[i..].starts_with(s) {
                    out.extend_from_slice(MASK.as_bytes());
                    i += s.len();
                } else {
                    out.push(data[i]);
                    i += 1;
                }
            }
            data = out;
        }
        data
    }
}

/// A secret taken from the config: written inline or read from an
/// environment variable (`{env: NAME}`), never shown by `Debug`.
#[derive(Clone, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum SecretString {
    #[default]
    Unset,
    Inline(String),
    Env {
        env: String,
    },
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretString::Unset => f.write_str("unset"),
            SecretString::Inline(_) => f.write_str(MASK),
            SecretString::Env { env } => write!(f, "env {env}"),
        }
    }
}

impl SecretString {
    /// The value, or why there is none.
    pub fn resolve(&self) -> Result<Option<String>, String> {
        match self {
            SecretString::Unset => Ok(None),
            SecretString::Inline(s) if s.is_empty() => Ok(None),
            SecretString::Inline(s) => Ok(Some(s.clone())),
            SecretString::Env { env } => match std::env::var(env) {
                Ok(v) if !v.is_empty() => Ok(Some(v)),
                _ => Err(format!("environment variable {env} is not set")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_write_only_and_password_fields_nested() {
        let schema = json!({
            "type": "object",
            "properties": {
                "token": {"type": "string", "writeOnly": true},
                "db": {"type": "object", "properties": {"password": {"type": "string", "format": "password"}, "host": {"type": "string"}}},
                "keys": {"type": "array", "items": {"type": "string", "writeOnly": true}},
                "name": {"type": "string"}
            }
        });
        let config =
            json!({"token": "t0k", "db": {"password": "hunter2", "host": "db1"}, "keys": ["k1", "k2"], "name": "n"});
        assert_eq!(secret_values(&schema, &config), ["hunter2", "t0k", "k1", "k2"]);
    }

    #[test]
    fn masks_text_and_streams_split_across_chunks() {
        let secrets = vec!["hunter2".to_string()];
        assert_eq!(mask_text("pw=hunter2!", &secrets), format!("pw={MASK}!"));
        let mut m = Masker::new(&secrets);
        let mut out = m.feed(b"pw=hun");
        out.extend(m.feed(b"ter2 and hunt"));
        out.extend(m.feed(b"ing"));
        out.extend(m.finish());
        assert_eq!(String::from_utf8(out).unwrap(), format!("pw={MASK} and hunting"));
    }

    #[test]
    fn secret_strings_resolve_and_never_debug_print() {
        let s: SecretString = serde_json::from_value(json!("abc")).unwrap();
        assert_eq!(format!("{s:?}"), MASK);
        assert_eq!(s.resolve().unwrap().as_deref(), Some("abc"));
        let s: SecretString = serde_json::from_value(json!({"env": "PLUGBOARD_TEST_SURELY_UNSET"})).unwrap();
        assert!(s.resolve().unwrap_err().contains("PLUGBOARD_TEST_SURELY_UNSET"));
    }
}
