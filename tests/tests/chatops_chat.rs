//! Slack- and Mattermost-compatible slash commands against the real host; a
//! local HTTP server plays Slack's `response_url`.

use std::time::{SystemTime, UNIX_EPOCH};

use plugboard_host::runtime::commands::chat::slack_signature;
use plugboard_tests::chatops::*;
use plugboard_tests::*;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn form(text: &str, response_url: &str) -> String {
    let pairs = [
        ("token", "legacy"),
        ("team_id", "T1"),
        ("channel_id", "C1"),
        ("channel_name", "ops"),
        ("user_id", "U2CERLKJA"),
        ("user_name", "roadrunner"),
        ("command", "/pb"),
        ("text", text),
        ("response_url", response_url),
        ("trigger_id", "398738663015.47445629121"),
    ];
    pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// POSTs a Slack slash command signed with `secret` at `timestamp`.
fn slack(host: &Host, body: &str, secret: &str, timestamp: u64) -> (u16, serde_json::Value) {
    let signature = slack_signature(secret.as_bytes(), timestamp, body.as_bytes());
    let mut response = http_client()
        .post(&host.url("/v1/chat/slack"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &timestamp.to_string())
        .header("x-slack-signature", &signature)
        .send(body)
        .expect("POST /v1/chat/slack");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

fn slack_host(dir: &TestDir, extra: &str) -> Host {
    dir.add_plugin("echo");
    start_host(
        dir,
        &format!(
            "executors:\n  - name: echo\n    plugin: echo\ncommands:\n  slack:\n    signing_secret: {SECRET}\n{extra}"
        ),
    )
}

#[test]
fn a_signed_slack_command_is_answered_with_its_result() {
    let dir = TestDir::new();
    let host = slack_host(&dir, "");
    let (status, reply) = slack(&host, &form("echo hi <there>", "http://127.0.0.1:9/unused"), SECRET, now());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["response_type"], "in_channel");
    assert_eq!(reply["text"], "`/pb echo hi &lt;there&gt;`\n```\nhi &lt;there&gt;\n```");
    // Audited as the Slack user, in the Slack channel.
    let audit = host.events_of_type("dev.plugboard.command.executed", 1);
    assert_eq!(audit[0]["data"]["user"], "roadrunner");
    assert_eq!(audit[0]["data"]["channel"], "ops");
    assert_eq!(audit[0]["data"]["platform"], "slack");
}

#[test]
fn bad_signatures_and_stale_timestamps_are_refused() {
    let dir = TestDir::new();
    let host = slack_host(&dir, "");
    let body = form("echo hi", "http://127.0.0.1:9/unused");
    let (status, reply) = slack(&host, &body, "not-the-secret", now());
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["error"]["message"], "bad Slack signature");
    let (status, reply) = slack(&host, &body, SECRET, now() - 6 * 60);
    assert_eq!(status, 401, "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("stale request"), "{reply}");
    // A valid signature over another body does not pass either.
    let signature = slack_signature(SECRET.as_bytes(), now(), b"text=help");
    let mut response = http_client()
        .post(&host.url("/v1/chat/slack"))
        .header("x-slack-request-timestamp", &now().to_string())
        .header("x-slack-signature", &signature)
        .send(body.as_str())
        .unwrap();
    assert_eq!(response.status(), 401);
    let _ = response.body_mut().read_to_string();
    // Nothing ran.
    assert!(plugin_messages(&host.run.stderr.snapshot(), "echo running").is_empty());
}

#[test]
fn a_long_slack_command_is_acknowledged_and_answered_through_response_url() {
    let dir = TestDir::new();
    let host = slack_host(&dir, "    ack_after: 200ms\n");
    let slack_api = Recorder::start("ok");
    let body = form("echo --every 1s first second", &slack_api.url("/commands/T1/123/abc"));
    let (status, ack) = slack(&host, &body, SECRET, now());
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(ack["text"].as_str().unwrap().starts_with("Running `echo --every 1s first second`"), "{ack}");
    let late = slack_api.next();
    assert_eq!((late.method.as_str(), late.path.as_str()), ("POST", "/commands/T1/123/abc"));
    let message: serde_json::Value = serde_json::from_str(&late.body).unwrap();
    assert_eq!(message["response_type"], "in_channel");
    assert_eq!(message["text"], "`/pb echo --every 1s first second`\n```\nfirst\nsecond\n```");
}

#[test]
fn denied_slack_commands_are_answered_only_to_the_caller() {
    let dir = TestDir::new();
    let host = slack_host(&dir, "  policies:\n    - { effect: allow, users: [U0ADMIN], platforms: [slack] }\n");
    let (status, reply) = slack(&host, &form("echo hi", "http://127.0.0.1:9/unused"), SECRET, now());
    assert_eq!(status, 200);
    assert_eq!(reply["response_type"], "ephemeral");
    assert!(reply["text"].as_str().unwrap().contains("permission denied: roadrunner may not run"), "{reply}");
    let denied = host.events_of_type("dev.plugboard.command.denied", 1);
    assert_eq!(denied[0]["data"]["user"], "roadrunner");
}

#[test]
fn mattermost_commands_need_the_slash_command_token() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(
        &dir,
        "executors:\n  - name: echo\n    plugin: echo\ncommands:\n  mattermost:\n    token: mm-token-1\n",
    );
    let post = |token: &str| {
        let body = format!("token={token}&channel_name=town-square&user_name=jo&command=%2Fpb&text=echo+hi");
        let mut response = http_client()
            .post(&host.url("/v1/chat/mattermost"))
            .header("content-type", "application/x-www-form-urlencoded")
            .send(body.as_str())
            .unwrap();
        let status = response.status().as_u16();
        (status, serde_json::from_str::<serde_json::Value>(&response.body_mut().read_to_string().unwrap()).unwrap())
    };
    let (status, reply) = post("mm-token-1");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["text"], "`/pb echo hi`\n```\nhi\n```");
    let (status, _) = post("wrong");
    assert_eq!(status, 401);
    // Slack is not configured on this host.
    let mut response = http_client().post(&host.url("/v1/chat/slack")).send("text=x").unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.body_mut().read_to_string().unwrap().contains("commands.slack.signing_secret"));
}
