//! Helpers for the chat-ops tests: a host with a config, JSON and SSE calls
//! to its command API, and a local HTTP server that records requests (it
//! plays Slack's `response_url` and a site for the `http` executor).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use crate::{DEADLINE, Running, TestDir, http_addr, http_client, plugboard};

/// A running host with JSON logs; `addr` is its HTTP address.
pub struct Host {
    pub run: Running,
    pub addr: String,
}

/// Starts `plugboard run` on `dir`'s config.
pub fn start_host(dir: &TestDir, yaml: &str) -> Host {
    let config = dir.write_config(yaml);
    let mut cmd = plugboard();
    cmd.args(["--log-format", "json", "run", "--config"]).arg(&config);
    let run = Running::spawn(cmd);
    let addr = http_addr(&run.stderr);
    Host { run, addr }
}

impl Host {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /v1/commands` as JSON: (HTTP status, reply body).
    pub fn command(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        post_command(&self.url("/v1/commands"), body, None)
    }

    /// Runs `command` as `user` and returns the reply.
    pub fn run_as(&self, user: &str, command: &str) -> (u16, serde_json::Value) {
        self.command(serde_json::json!({ "command": command, "user": user, "channel": "#ops", "platform": "test" }))
    }

    /// Waits until an executor instance logged "executor started" `n` times; returns the pids.
    pub fn executor_pids(&self, executor: &str, n: usize) -> Vec<u32> {
        let pids = |lines: &[String]| {
            crate::log_events(lines, "executor started")
                .into_iter()
                .filter(|f| f["executor"] == executor)
                .filter_map(|f| f["pid"].as_u64().map(|p| p as u32))
                .collect::<Vec<_>>()
        };
        let lines =
            self.run.stderr.wait_until(&format!("{n} starts of executor {executor}"), DEADLINE, |l| pids(l).len() >= n);
        pids(&lines)
    }

    /// The CloudEvents on stdout of `ty`, as JSON values, waiting for at least `n`.
    pub fn events_of_type(&self, ty: &str, n: usize) -> Vec<serde_json::Value> {
        let of_type = |lines: &[String]| {
            lines
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["type"] == ty)
                .collect::<Vec<_>>()
        };
        let lines =
            self.run.stdout.wait_until(&format!("{n} events of type {ty}"), DEADLINE, |l| of_type(l).len() >= n);
        of_type(&lines)
    }
}

/// `POST` a command as JSON, with an optional bearer token.
pub fn post_command(url: &str, body: serde_json::Value, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = http_client().post(url);
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    let mut response = request.send_json(body).expect("POST /v1/commands");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sse {
    pub event: String,
    pub data: serde_json::Value,
}

/// An open SSE reply, read event by event.
pub struct SseStream {
    reader: BufReader<Box<dyn Read + Send>>,
}

impl SseStream {
    /// `POST /v1/commands` with `Accept: text/event-stream`.
    pub fn open(url: &str, body: serde_json::Value) -> Self {
        let response = http_client()
            .post(url)
            .header("accept", "text/event-stream")
            .send_json(body)
            .expect("POST /v1/commands (SSE)");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(content_type.starts_with("text/event-stream"), "content-type {content_type}");
        let reader: Box<dyn Read + Send> = Box::new(response.into_body().into_reader());
        Self { reader: BufReader::new(reader) }
    }

    /// The next event (skipping keep-alive comments); None at the end of the stream.
    pub fn next_event(&mut self) -> Option<Sse> {
        let mut event = String::new();
        let mut data = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data.join("\n")).expect("SSE data is JSON");
                return Some(Sse { event, data });
            }
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.trim_start().to_owned());
            }
        }
    }

    /// Every remaining event.
    pub fn collect(mut self) -> Vec<Sse> {
        std::iter::from_fn(|| self.next_event()).collect()
    }
}

/// A request the [`Recorder`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A local HTTP/1.1 server that records each request and answers with a
/// fixed body.
pub struct Recorder {
    pub addr: String,
    rx: mpsc::Receiver<Recorded>,
}

impl Recorder {
    pub fn start(answer: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let addr = listener.local_addr().expect("addr").to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else { continue };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-recorder: yes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(reply.as_bytes());
                if tx.send(request).is_err() {
                    break;
                }
            }
        });
        Self { addr, rx }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request, within the deadline.
    pub fn next(&self) -> Recorded {
        self.rx.recv_timeout(DEADLINE).expect("a request to the recorder within the deadline")
    }

    /// A request, if one arrives within `wait` (for "nothing else came" checks after a barrier).
    pub fn try_next(&self, wait: Duration) -> Option<Recorded> {
        self.rx.recv_timeout(wait).ok()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Recorded> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Messages a plugin logged (forwarded by the host as `<message> @module=... key=value...`)
/// that start with `prefix`.
pub fn plugin_messages(lines: &[String], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("fields").cloned())
        .filter(|f| f.get("plugin").is_some())
        .filter_map(|f| f["message"].as_str().map(str::to_owned))
        .filter(|m| m.starts_with(prefix))
        .collect()
}
