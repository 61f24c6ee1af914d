//! The plugin's stderr, judged the way a Go host parses it.

use crate::launcher::PluginProcess;

use super::Report;

/// Whether a stderr line is an hclog JSON entry a Go host understands:
/// string `@level` and `@message`, `@timestamp` with six fractional digits.
fn is_hclog(line: &str) -> bool {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(line) else { return false };
    let strings = ["@level", "@message"].iter().all(|k| obj.get(*k).is_some_and(serde_json::Value::is_string));
    let timestamp_ok = match obj.get("@timestamp") {
        None => true,
        Some(serde_json::Value::String(ts)) => ts
            .split_once('.')
            .map(|(_, frac)| {
                let digits = frac.chars().take_while(char::is_ascii_digit).count();
                digits == 6 && matches!(frac[digits..].chars().next(), Some('Z' | '+' | '-'))
            })
            .unwrap_or(false),
        Some(_) => false,
    };
    strings && timestamp_ok
}

pub(super) fn check_logging(process: &PluginProcess, report: &mut Report) {
    const ITEM: &str = "logging";
    let tail = process.stderr_tail();
    let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
    let odd: Vec<&str> = lines.iter().copied().filter(|l| !is_hclog(l)).collect();
    match (lines.len(), odd.first()) {
        (0, _) => report.pass(ITEM, "nothing on stderr to check"),
        (n, None) => report.pass(ITEM, format!("{n} stderr lines checked: all hclog JSON")),
        (n, Some(example)) => report.warn(
            ITEM,
            format!("{} of the last {n} stderr lines are not hclog JSON, e.g. {example:?}", odd.len()),
            "log one JSON object per line with @level, @message and @timestamp (six fractional digits) on stderr",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::is_hclog;

    #[test]
    fn hclog_lines_are_recognised_as_go_hosts_do() {
        assert!(is_hclog(r#"{"@level":"info","@message":"hi","@timestamp":"2026-11-22T09:28:19.229401Z"}"#));
        assert!(is_hclog(r#"{"@level":"info","@message":"hi","@timestamp":"2026-11-22T09:28:19.229401+02:00"}"#));
        assert!(!is_hclog(r#"{"@level":"info","@message":"hi","@timestamp":"2026-11-22T09:28:19.229Z"}"#));
        assert!(!is_hclog(r#"{"level":"info","msg":"logrus"}"#));
        assert!(!is_hclog("[INFO] plain"));
    }
}
