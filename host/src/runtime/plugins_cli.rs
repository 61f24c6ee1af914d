//! `plugboard plugins status` and `plugboard plugins enable NAME`: the
//! operator's view of a running host's plugin instances, through its API
//! (`GET /v1/plugins`, `POST /v1/plugins/{name}/enable`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

/// How to reach a running host.
pub struct Remote<'a> {
    /// Base URL, e.g. `http://127.0.0.1:8787`.
    pub url: &'a str,
    pub token: Option<&'a str>,
}

impl Remote<'_> {
    fn client() -> anyhow::Result<reqwest::Client> {
        reqwest::Client::builder().timeout(Duration::from_secs(30)).build().context("cannot build an HTTP client")
    }

    async fn call(&self, request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<serde_json::Value> {
        let request = match self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response =
            request.send().await.with_context(|| format!("cannot reach {url} (is `plugboard run` running?)"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let reply: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        if status.is_success() {
            return Ok(reply);
        }
        let message = reply["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| reply.to_string());
        anyhow::bail!("{url} answered {status}: {message}")
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }
}

/// Prints every instance as a table (or the JSON reply with `json`).
pub async fn status(remote: &Remote<'_>, json: bool) -> anyhow::Result<ExitCode> {
    let url = remote.endpoint("/v1/plugins");
    let reply = remote.call(Remote::client()?.get(&url), &url).await?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&reply)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    write!(out, "{}", table(&reply))?;
    Ok(ExitCode::SUCCESS)
}

/// The `GET /v1/plugins` reply as a text table.
pub fn table(reply: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rows = vec![[
        "NAME".to_owned(),
        "KIND".to_owned(),
        "PLUGIN".to_owned(),
        "STATE".to_owned(),
        "PID".to_owned(),
        "UPTIME".to_owned(),
        "RESTARTS".to_owned(),
        "HEALTH".to_owned(),
        "LAST EXIT".to_owned(),
    ]];
    for p in reply["plugins"].as_array().into_iter().flatten() {
        let uptime = match p["uptime_seconds"].as_f64() {
            Some(secs) => humantime::format_duration(Duration::from_secs(secs as u64)).to_string(),
            None => "-".to_owned(),
        };
        rows.push([
            text(&p["name"]),
            text(&p["kind"]),
            text(&p["plugin"]),
            text(&p["state"]),
            text(&p["pid"]),
            uptime,
            text(&p["restarts"]),
            text(&p["health"]),
            text(&p["last_exit"]),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if rows.len() == 1 {
        out.push_str("(no plugin instances)\n");
    }
    out
}

/// Re-enables a deactivated instance.
pub async fn enable(remote: &Remote<'_>, name: &str, kind: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut url = remote.endpoint(&format!("/v1/plugins/{name}/enable"));
    if let Some(kind) = kind {
        url.push_str(&format!("?kind={kind}"));
    }
    let reply = remote.call(Remote::client()?.post(&url), &url).await?;
    let state = reply["status"]["state"].as_str().unwrap_or("starting");
    println!("enabled {name} ({state})");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_instance_with_state_and_pid() {
        let reply = serde_json::json!({"plugins": [
            {"name": "numbers", "kind": "source", "plugin": "range", "state": "running", "pid": 4242,
             "uptime_seconds": 75.2, "restarts": 1, "health": "serving", "last_exit": "exit status 3"},
            {"name": "crashy", "kind": "executor", "plugin": "faulty", "state": "deactivated", "pid": null,
             "uptime_seconds": null, "restarts": 3, "health": "unknown", "last_exit": "killed by signal 11 (SIGSEGV)"}
        ]});
        let text = table(&reply);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(lines[1].contains("numbers") && lines[1].contains("running") && lines[1].contains("4242"), "{text}");
        assert!(lines[1].contains("1m 15s"), "{text}");
        assert!(lines[2].contains("deactivated") && lines[2].contains("killed by signal 11 (SIGSEGV)"), "{text}");
    }
}
