//! `http` executor: `http get URL` prints the status, the headers and the
//! start of the body (capped at `max_body` bytes) — checks from chat.
//! `http head URL` prints status and headers only. `allow_hosts` (globs)
//! limits which hosts may be asked, so a chat user cannot probe everything
//! the host can reach.

use std::time::Duration;

use plugboard_sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_max_body")]
    max_body: usize,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    allow_hosts: Vec<String>,
}

fn default_max_body() -> usize {
    4096
}

struct Http {
    client: reqwest::Client,
}

#[plugboard_sdk::async_trait]
impl Executor for Http {
    async fn execute(&self, cmd: Command, out: Output) -> Result<Reply, PluginError> {
        let config: Config = cmd.config()?;
        let usage = || Reply::failed(2, "usage: http get URL | http head URL");
        let (Some(method), Some(url), None) = (cmd.args.first(), cmd.args.get(1), cmd.args.get(2)) else {
            return Ok(usage());
        };
        let method = match method.to_ascii_lowercase().as_str() {
            "get" => reqwest::Method::GET,
            "head" => reqwest::Method::HEAD,
            _ => return Ok(usage()),
        };
        let url = match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            Ok(u) => return Ok(Reply::failed(2, format!("only http and https URLs, not {}:", u.scheme()))),
            Err(e) => return Ok(Reply::failed(2, format!("bad URL {url:?}: {e}"))),
        };
        let host = url.host_str().unwrap_or_default();
        if !config.allow_hosts.is_empty() && !config.allow_hosts.iter().any(|p| glob(p, host)) {
            return Ok(Reply::failed(
                126,
                format!("host {host:?} is not in allow_hosts ({})", config.allow_hosts.join(", ")),
            ));
        }
        let timeout = match &config.timeout {
            Some(t) => {
                humantime::parse_duration(t).map_err(|e| PluginError::invalid_config(format!("timeout: {e}")))?
            }
            None => Duration::from_secs(10),
        };
        let mut response = match self.client.request(method, url.clone()).timeout(timeout).send().await {
            Ok(r) => r,
            Err(e) => return Ok(Reply::failed(1, format!("GET {url}: {e}"))),
        };
        let mut head = format!("{:?} {}\n", response.version(), response.status());
        for (name, value) in response.headers() {
            head.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
        }
        head.push('\n');
        out.write(head).await?;
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) =
            response.chunk().await.map_err(|e| PluginError::unavailable(format!("reading the body: {e}")))?
        {
            let room = config.max_body.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..room.min(chunk.len())]);
            if chunk.len() > room {
                truncated = true;
                break;
            }
        }
        if !body.is_empty() {
            out.write(body).await?;
        }
        let mut tail = String::new();
        if truncated {
            tail.push_str(&format!("\n[body truncated at {} bytes]\n", config.max_body));
        }
        let code = if response.status().is_success() || response.status().is_redirection() { 0 } else { 1 };
        Ok(Reply::text(tail).with_exit_code(code))
    }
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(text),
        Some((head, rest)) => {
            let lower = text.to_ascii_lowercase();
            let head = head.to_ascii_lowercase();
            lower.starts_with(&head) && (0..=lower.len() - head.len()).any(|i| glob(rest, &text[head.len() + i..]))
        }
    }
}

fn main() {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("plugboard-http/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    Plugin::new("http", env!("CARGO_PKG_VERSION"))
        .description("HTTP checks: prints status, headers and the start of the body")
        .help("usage: http get URL\n       http head URL\nPrints the status line, the headers and up to max_body bytes of the body.")
        .config_schema(serde_json::json!({
            "type": "object",
            "properties": {
                "max_body": {"type": "integer", "minimum": 0},
                "timeout": {"type": "string", "description": "e.g. 10s"},
                "allow_hosts": {"type": "array", "items": {"type": "string"}, "description": "host globs that may be asked (default: any)"}
            },
            "additionalProperties": false
        }))
        .executor(Http { client }, ["http"])
        .serve()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_globs() {
        assert!(glob("*.example.com", "api.example.com"));
        assert!(glob("localhost", "LOCALHOST"));
        assert!(!glob("*.example.com", "example.org"));
        assert!(glob("*", "anything"));
    }
}
