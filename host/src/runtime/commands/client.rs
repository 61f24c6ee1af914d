//! A client of a running host's command API, for `plugboard exec --remote`
//! and `plugboard shell`: streams output over server-sent events.

use std::time::Duration;

use super::CommandReply;
use super::http::CommandBody;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {message}")]
    Api { url: String, status: u16, message: String },
    #[error("{url}: the stream ended without a result")]
    NoResult { url: String },
    #[error("{url}: unreadable reply: {message}")]
    Protocol { url: String, message: String },
}

#[derive(Debug, Clone)]
pub struct RemoteClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl RemoteClient {
    /// `url`: the host's base URL (`http://127.0.0.1:8787`; the scheme may be left out).
    pub fn new(url: &str, token: Option<String>) -> Self {
        let url = url.trim_end_matches('/');
        let base = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { base, token: token.filter(|t| !t.is_empty()), http }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Whether a host answers `/healthz` there.
    pub async fn healthy(&self) -> bool {
        let request = self.http.get(format!("{}/healthz", self.base)).timeout(Duration::from_millis(500));
        matches!(request.send().await, Ok(r) if r.status().is_success())
    }

    /// Runs a command, handing output text to `on_chunk` as it streams.
    pub async fn run(&self, body: &CommandBody, mut on_chunk: impl FnMut(&str)) -> Result<CommandReply, ClientError> {
        let url = format!("{}/v1/commands", self.base);
        let mut request = self.http.post(&url).header("accept", "text/event-stream").json(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.map_err(|source| ClientError::Connect { url: url.clone(), source })?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(ClientError::Api { url, status, message });
        }
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|source| ClientError::Connect { url: url.clone(), source })?;
            let Some(chunk) = chunk else { return Err(ClientError::NoResult { url }) };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = find_event_end(&buffer) {
                let raw: Vec<u8> = buffer.drain(..end).collect();
                let (name, data) = parse_event(&String::from_utf8_lossy(&raw));
                match name.as_str() {
                    "output" => {
                        let v: serde_json::Value = serde_json::from_str(&data)
                            .map_err(|e| ClientError::Protocol { url: url.clone(), message: e.to_string() })?;
                        on_chunk(v["chunk"].as_str().unwrap_or_default());
                    }
                    "result" => {
                        return serde_json::from_str(&data)
                            .map_err(|e| ClientError::Protocol { url: url.clone(), message: e.to_string() });
                    }
                    _ => {} // keep-alive comments and unknown events
                }
            }
        }
    }
}

/// The end (after the blank line) of the first complete event in `buffer`.
fn find_event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// (event name, data) of one SSE event block.
fn parse_event(block: &str) -> (String, String) {
    let mut name = String::from("message");
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (name, data.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_parse() {
        let buf = b"event: output\ndata: {\"chunk\":\"a\"}\n\n: keep-alive\n\n";
        let end = find_event_end(buf).unwrap();
        assert_eq!(
            parse_event(std::str::from_utf8(&buf[..end]).unwrap()),
            ("output".into(), "{\"chunk\":\"a\"}".into())
        );
    }
}
