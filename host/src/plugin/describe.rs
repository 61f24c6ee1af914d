//! What a plugin says about itself, checked.

use plugboard_proto::plugboard::v1::{PluginInfo, PluginKind};

/// Why a `PluginInfo` is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescribeError {
    #[error("empty name")]
    EmptyName,
    #[error("name {0:?} must be lower-case letters, digits, '-' or '_'")]
    BadName(String),
    #[error("version {version:?} is not semver: {reason}")]
    Version { version: String, reason: String },
    #[error("declares no kinds (SOURCE, EXECUTOR or SINK)")]
    NoKinds,
    #[error("unknown kind number {0}")]
    UnknownKind(i32),
    #[error("executor declares no command prefixes")]
    NoPrefixes,
    #[error(
        "command prefix {0:?} is empty or has characters other than letters, digits, '-', '_', '.', ':' and single spaces"
    )]
    BadPrefix(String),
    #[error("config_schema is not a valid JSON Schema: {0}")]
    Schema(String),
}

/// A compiled config schema (empty schema = any config).
pub struct ConfigSchema {
    validator: Option<jsonschema::Validator>,
}

impl std::fmt::Debug for ConfigSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.validator.is_some() { "ConfigSchema(..)" } else { "ConfigSchema(any)" })
    }
}

impl ConfigSchema {
    pub fn compile(text: &str) -> Result<Self, DescribeError> {
        if text.trim().is_empty() {
            return Ok(Self { validator: None });
        }
        let schema: serde_json::Value =
            serde_json::from_str(text).map_err(|e| DescribeError::Schema(format!("not JSON: {e}")))?;
        let validator = jsonschema::validator_for(&schema).map_err(|e| DescribeError::Schema(e.to_string()))?;
        Ok(Self { validator: Some(validator) })
    }

    /// Every way `config` breaks the schema, each naming where (a JSON pointer).
    pub fn validate(&self, config: &serde_json::Value) -> Result<(), Vec<String>> {
        let Some(validator) = &self.validator else { return Ok(()) };
        let errors: Vec<String> = validator
            .iter_errors(config)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() { e.to_string() } else { format!("at {path}: {e}") }
            })
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// A checked `PluginInfo` with its compiled schema.
#[derive(Debug)]
pub struct Described {
    pub info: PluginInfo,
    pub kinds: Vec<PluginKind>,
    pub schema: ConfigSchema,
}

impl Described {
    pub fn has_kind(&self, kind: PluginKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// "source,executor"
    pub fn kinds_text(&self) -> String {
        self.kinds.iter().map(|k| kind_name(*k)).collect::<Vec<_>>().join(",")
    }
}

pub fn kind_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Source => "source",
        PluginKind::Executor => "executor",
        PluginKind::Sink => "sink",
        PluginKind::Unspecified => "unspecified",
    }
}

/// A prefix is one or more words separated by single spaces.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split(' ').all(|w| {
            !w.is_empty() && w.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
        })
}

/// Checks a plugin's self-description.
pub fn validate_info(info: PluginInfo) -> Result<Described, DescribeError> {
    if info.name.is_empty() {
        return Err(DescribeError::EmptyName);
    }
    if !info.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        return Err(DescribeError::BadName(info.name.clone()));
    }
    semver::Version::parse(&info.version)
        .map_err(|e| DescribeError::Version { version: info.version.clone(), reason: e.to_string() })?;
    let mut kinds = Vec::new();
    for k in &info.kinds {
        match PluginKind::try_from(*k) {
            Ok(PluginKind::Unspecified) | Err(_) => return Err(DescribeError::UnknownKind(*k)),
            Ok(kind) if !kinds.contains(&kind) => kinds.push(kind),
            Ok(_) => {}
        }
    }
    if kinds.is_empty() {
        return Err(DescribeError::NoKinds);
    }
    if kinds.contains(&PluginKind::Executor) && info.command_prefixes.is_empty() {
        return Err(DescribeError::NoPrefixes);
    }
    if let Some(bad) = info.command_prefixes.iter().find(|p| !valid_prefix(p)) {
        return Err(DescribeError::BadPrefix(bad.clone()));
    }
    let schema = ConfigSchema::compile(&info.config_schema)?;
    Ok(Described { info, kinds, schema })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "echo".into(),
            version: "1.2.3".into(),
            kinds: vec![PluginKind::Executor as i32],
            command_prefixes: vec!["echo".into()],
            config_schema: r#"{"type":"object","properties":{"n":{"type":"integer"}},"additionalProperties":false}"#
                .into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_description_passes_and_its_schema_validates_configs() {
        let d = validate_info(info()).unwrap();
        assert!(d.has_kind(PluginKind::Executor));
        assert_eq!(d.schema.validate(&serde_json::json!({"n": 3})), Ok(()));
        let errors = d.schema.validate(&serde_json::json!({"n": "x", "extra": 1})).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("at /n:")), "{errors:?}");
    }

    #[test]
    fn bad_descriptions_say_what_is_wrong() {
        let mut i = info();
        i.version = "one".into();
        assert!(matches!(validate_info(i), Err(DescribeError::Version { .. })));
        let mut i = info();
        i.kinds.clear();
        assert_eq!(validate_info(i).unwrap_err(), DescribeError::NoKinds);
        let mut i = info();
        i.command_prefixes = vec!["two  spaces".into()];
        assert!(matches!(validate_info(i), Err(DescribeError::BadPrefix(_))));
        let mut i = info();
        i.config_schema = r#"{"type": 12}"#.into();
        assert!(matches!(validate_info(i), Err(DescribeError::Schema(_))));
        let mut i = info();
        i.kinds = vec![9];
        assert_eq!(validate_info(i).unwrap_err(), DescribeError::UnknownKind(9));
    }
}
