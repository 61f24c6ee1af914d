//! The instance config, as written and as checked.

use std::path::PathBuf;
use std::time::Duration;

use plugboard_sdk::config;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub files: Vec<String>,
    /// How long changes to one file are merged before it is read again.
    #[serde(default)]
    pub debounce: Option<String>,
}

pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);
const MIN_DEBOUNCE: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(Debug, Clone)]
pub struct File {
    /// Absolute, as given (symlinks not resolved).
    pub path: PathBuf,
    pub format: Format,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub files: Vec<File>,
    pub debounce: Duration,
}

impl Config {
    pub fn check(self) -> Result<Settings, String> {
        if self.files.is_empty() {
            return Err("files must list at least one file".into());
        }
        let mut files: Vec<File> = Vec::with_capacity(self.files.len());
        for (i, given) in self.files.iter().enumerate() {
            if given.is_empty() || given.ends_with('/') {
                return Err(format!("files[{i}] {given:?} is not a file path"));
            }
            let path = std::path::absolute(given).map_err(|e| format!("files[{i}] {given:?}: {e}"))?;
            if path.file_name().is_none() {
                return Err(format!("files[{i}] {given:?} is not a file path"));
            }
            if files.iter().any(|f| f.path == path) {
                return Err(format!("files[{i}] {given:?} is listed twice"));
            }
            let format = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                Some("json") => Format::Json,
                Some("yaml" | "yml") => Format::Yaml,
                _ => return Err(format!("files[{i}] {given:?}: the name must end in .yaml, .yml or .json")),
            };
            files.push(File { path, format });
        }
        let debounce = config::duration_at_least("debounce", self.debounce.as_deref(), DEFAULT_DEBOUNCE, MIN_DEBOUNCE)?;
        Ok(Settings { files, debounce })
    }
}

pub fn schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "files": {
                "type": "array", "minItems": 1, "uniqueItems": true,
                "items": {"type": "string", "pattern": "\\.([jJ][sS][oO][nN]|[yY][aA]?[mM][lL])$"},
                "description": "YAML (.yaml, .yml) or JSON (.json) files, loaded at start and whenever they change"
            },
            "debounce": {
                "type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?\\s*[a-z]+$", "default": "100ms",
                "description": "changes to one file within this window are merged before it is read again"
            }
        },
        "required": ["files"],
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
    fn formats_follow_the_extension() {
        let s = check(serde_json::json!({"files": ["/a/x.json", "/a/y.YML", "z.yaml"]})).unwrap();
        let formats: Vec<Format> = s.files.iter().map(|f| f.format).collect();
        assert_eq!(formats, [Format::Json, Format::Yaml, Format::Yaml]);
        assert_eq!(s.files[2].path, std::env::current_dir().unwrap().join("z.yaml"));
        assert_eq!(s.debounce, DEFAULT_DEBOUNCE);
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (serde_json::json!({"files": []}), "files must list at least one file"),
            (
                serde_json::json!({"files": ["/a/x.toml"]}),
                "files[0] \"/a/x.toml\": the name must end in .yaml, .yml or .json",
            ),
            (serde_json::json!({"files": ["/a/x.json", "/a/./x.json"]}), "files[1] \"/a/./x.json\" is listed twice"),
            (serde_json::json!({"files": ["/a/"]}), "files[0] \"/a/\" is not a file path"),
            (serde_json::json!({"files": ["/a/x.json"], "debounce": "0s"}), "debounce must be at least 1ms"),
        ];
        for (config, expected) in cases {
            assert_eq!(check(config.clone()).unwrap_err(), expected, "{config}");
        }
        let err = check(serde_json::json!({"file": "/a/x.json"})).unwrap_err();
        assert!(err.contains("unknown field `file`"), "{err}");
    }
}
