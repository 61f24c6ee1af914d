//! Checking instance configs: durations written as text (`"250ms"`, `"2m"`)
//! or as seconds, with the key named in every error, and JSON into a config
//! type with serde's message as the error (for unit tests of `check`).

use std::time::Duration;

use serde::de::DeserializeOwned;

/// `value` as a duration of at least `min`, or `default` when it is not given.
///
/// Errors: `debounce "soon" is not a duration: ...`, `debounce must be at least 1ms`.
pub fn duration_at_least(key: &str, value: Option<&str>, default: Duration, min: Duration) -> Result<Duration, String> {
    let Some(text) = value else { return Ok(default) };
    let parsed = humantime::parse_duration(text).map_err(|e| format!("{key} {text:?} is not a duration: {e}"))?;
    if parsed < min {
        return Err(format!("{key} must be at least {}", humantime::format_duration(min)));
    }
    Ok(parsed)
}

/// A positive duration given as a number of seconds (`2.5`) or as text
/// (`"30s"`), or `default` when it is not given.
pub fn seconds_or_duration(
    key: &str,
    value: Option<&serde_json::Value>,
    default: Duration,
) -> Result<Duration, String> {
    let duration = match value {
        None => return Ok(default),
        Some(serde_json::Value::Number(n)) => {
            let secs = n.as_f64().unwrap_or(-1.0);
            Duration::try_from_secs_f64(secs).map_err(|_| format!("{key} {n} is not a number of seconds"))?
        }
        Some(serde_json::Value::String(s)) => {
            humantime::parse_duration(s).map_err(|e| format!("{key} {s:?} is not a duration: {e}"))?
        }
        Some(other) => return Err(format!("{key} {other} must be seconds or a duration like \"30s\"")),
    };
    if duration.is_zero() {
        return Err(format!("{key} must be greater than zero"));
    }
    Ok(duration)
}

/// `value` as a `T`, serde's message as the error.
pub fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn durations_at_least_a_minimum() {
        let default = Duration::from_millis(100);
        assert_eq!(duration_at_least("debounce", None, default, MS), Ok(default));
        assert_eq!(duration_at_least("debounce", Some("2.5s"), default, MS), Ok(Duration::from_millis(2500)));
        assert_eq!(duration_at_least("debounce", Some("1ms"), default, MS), Ok(MS));
        assert_eq!(
            duration_at_least("debounce", Some("0s"), default, MS),
            Err("debounce must be at least 1ms".to_owned())
        );
        assert_eq!(
            duration_at_least("debounce", Some("soon"), default, MS),
            Err("debounce \"soon\" is not a duration: expected number at 0".to_owned())
        );
    }

    #[test]
    fn seconds_or_durations_are_positive() {
        let default = Duration::from_secs(1);
        assert_eq!(seconds_or_duration("delay", None, default), Ok(default));
        assert_eq!(seconds_or_duration("delay", Some(&json!(2.5)), default), Ok(Duration::from_millis(2500)));
        assert_eq!(seconds_or_duration("delay", Some(&json!("250ms")), default), Ok(Duration::from_millis(250)));
        let cases = [
            (json!(0), "delay must be greater than zero"),
            (json!("0s"), "delay must be greater than zero"),
            (json!(-1), "delay -1 is not a number of seconds"),
            (json!("later"), "delay \"later\" is not a duration: expected number at 0"),
            (json!(true), "delay true must be seconds or a duration like \"30s\""),
        ];
        for (value, expected) in cases {
            assert_eq!(seconds_or_duration("delay", Some(&value), default), Err(expected.to_owned()), "{value}");
        }
    }

    #[test]
    fn json_errors_are_serdes_text() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct C {
            a: u32,
        }
        assert_eq!(from_json::<C>(json!({"a": 1})).map(|c| c.a), Ok(1));
        let err = from_json::<C>(json!({"b": 1})).unwrap_err();
        assert!(err.starts_with("unknown field `b`"), "{err}");
    }
}
