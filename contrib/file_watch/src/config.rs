//! The instance config, as written and as checked.

use std::path::PathBuf;
use std::time::Duration;

use plugboard_sdk::config;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// One path (ansible.eda's spelling) ...
    #[serde(default)]
    pub path: Option<String>,
    /// ... or several.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub recursive: bool,
    /// Changes whose every path matches one of these are not reported.
    #[serde(default)]
    pub ignore_regexes: Vec<String>,
    /// How long changes to one path are merged before being reported.
    #[serde(default)]
    pub debounce: Option<String>,
}

pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);
const MIN_DEBOUNCE: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct Settings {
    /// Absolute, as given (symlinks not resolved).
    pub roots: Vec<PathBuf>,
    pub recursive: bool,
    pub ignore: Option<regex::RegexSet>,
    pub debounce: Duration,
}

impl Config {
    pub fn check(self) -> Result<Settings, String> {
        let given: Vec<String> = match (self.path, self.paths.is_empty()) {
            (Some(_), false) => return Err("give either path or paths, not both".into()),
            (Some(p), true) => vec![p],
            (None, false) => self.paths,
            (None, true) => return Err("path (or paths) is required".into()),
        };
        let mut roots = Vec::with_capacity(given.len());
        for p in given {
            if p.is_empty() {
                return Err("an empty path cannot be watched".into());
            }
            let abs = std::path::absolute(&p).map_err(|e| format!("path {p:?}: {e}"))?;
            if !roots.contains(&abs) {
                roots.push(abs);
            }
        }
        let ignore = if self.ignore_regexes.is_empty() {
            None
        } else {
            for (i, r) in self.ignore_regexes.iter().enumerate() {
                regex::Regex::new(r).map_err(|e| format!("ignore_regexes[{i}] {r:?}: {e}"))?;
            }
            Some(regex::RegexSet::new(&self.ignore_regexes).map_err(|e| format!("ignore_regexes: {e}"))?)
        };
        let debounce = config::duration_at_least("debounce", self.debounce.as_deref(), DEFAULT_DEBOUNCE, MIN_DEBOUNCE)?;
        Ok(Settings { roots, recursive: self.recursive, ignore, debounce })
    }
}

pub fn schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1, "description": "a file or directory to watch"},
            "paths": {
                "type": "array", "minItems": 1,
                "items": {"type": "string", "minLength": 1},
                "description": "files or directories to watch"
            },
            "recursive": {"type": "boolean", "default": false, "description": "watch directories' subdirectories too"},
            "ignore_regexes": {
                "type": "array", "items": {"type": "string"},
                "description": "changes whose every path matches one of these regexes are not reported"
            },
            "debounce": {
                "type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?\\s*[a-z]+$", "default": "100ms",
                "description": "changes to one path within this window are merged"
            }
        },
        "oneOf": [{"required": ["path"]}, {"required": ["paths"]}],
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
    fn path_or_paths_made_absolute() {
        let s = check(serde_json::json!({"path": "rel/dir"})).unwrap();
        assert_eq!(s.roots, [std::env::current_dir().unwrap().join("rel/dir")]);
        assert_eq!((s.recursive, s.debounce), (false, DEFAULT_DEBOUNCE));
        let s = check(serde_json::json!({"paths": ["/a", "/b", "/a"], "debounce": "2.5s"})).unwrap();
        assert_eq!(s.roots.len(), 2);
        assert_eq!(s.debounce, Duration::from_millis(2500));
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (serde_json::json!({}), "path (or paths) is required"),
            (serde_json::json!({"path": "/a", "paths": ["/b"]}), "give either path or paths, not both"),
            (serde_json::json!({"path": ""}), "an empty path cannot be watched"),
            (
                serde_json::json!({"path": "/a", "debounce": "soon"}),
                "debounce \"soon\" is not a duration: expected number at 0",
            ),
            (serde_json::json!({"path": "/a", "debounce": "0ms"}), "debounce must be at least 1ms"),
        ];
        for (config, expected) in cases {
            assert_eq!(check(config.clone()).unwrap_err(), expected, "{config}");
        }
        let err = check(serde_json::json!({"path": "/a", "ignore_regexes": ["ok", "(unclosed"]})).unwrap_err();
        assert!(err.starts_with("ignore_regexes[1] \"(unclosed\": regex parse error"), "{err}");
        let err = check(serde_json::json!({"path": "/a", "recursve": true})).unwrap_err();
        assert!(err.contains("unknown field `recursve`"), "{err}");
    }
}
