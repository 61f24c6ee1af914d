//! Runs of the plugin that the launcher would refuse to make: without the
//! magic cookie, and with app protocol versions no plugin speaks yet.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use plugboard_proto::goplugin;
use plugboard_proto::handshake::HANDSHAKE;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::{CheckOptions, Report};

/// The handshake environment of a launch, for the raw runs that the
/// launcher cannot do (no cookie, odd versions).
fn raw_env(cookie: bool, versions: &str, socket_dir: &Path) -> Vec<(String, String)> {
    let mut env = vec![
        (goplugin::env::PLUGIN_MIN_PORT.to_owned(), goplugin::env::DEFAULT_MIN_PORT.to_string()),
        (goplugin::env::PLUGIN_MAX_PORT.to_owned(), goplugin::env::DEFAULT_MAX_PORT.to_string()),
        (goplugin::env::PLUGIN_PROTOCOL_VERSIONS.to_owned(), versions.to_owned()),
        (goplugin::env::PLUGIN_UNIX_SOCKET_DIR.to_owned(), socket_dir.display().to_string()),
        ("TMPDIR".to_owned(), socket_dir.display().to_string()),
    ];
    if cookie {
        env.push((HANDSHAKE.magic_cookie_key.to_owned(), HANDSHAKE.magic_cookie_value.to_owned()));
    }
    env
}

/// What a raw run showed.
struct RawRun {
    first_line: Option<String>,
    exit: Option<std::process::ExitStatus>,
    stderr: String,
}

/// Starts the plugin with `env` (without the cookie unless given), reads its
/// first stdout line, waits up to `timeout` for it to exit when
/// `wait_exit`, then kills its process group.
async fn raw_run(
    path: &Path,
    env: Vec<(String, String)>,
    timeout: Duration,
    wait_exit: bool,
) -> std::io::Result<RawRun> {
    let mut cmd = tokio::process::Command::new(path);
    cmd.env_remove(HANDSHAKE.magic_cookie_key)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or_default();
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other("no pipes"));
    };
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_string(&mut text).await;
        text
    });
    let deadline = Instant::now() + timeout;
    let mut lines = BufReader::new(stdout).lines();
    let first_line =
        tokio::time::timeout_at(deadline.into(), lines.next_line()).await.ok().and_then(|l| l.ok().flatten());
    let exit = if wait_exit || first_line.is_none() {
        tokio::time::timeout_at(deadline.into(), child.wait()).await.ok().and_then(Result::ok)
    } else {
        None
    };
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait().await;
    let stderr = tokio::time::timeout(Duration::from_secs(1), stderr_task).await.ok().and_then(Result::ok);
    Ok(RawRun { first_line, exit, stderr: stderr.unwrap_or_default() })
}

pub(super) async fn check_cookie(options: &CheckOptions, report: &mut Report) {
    const ITEM: &str = "cookie";
    let Ok(dir) = tempfile::Builder::new().prefix("pbchk-").tempdir() else {
        report.fail(ITEM, "cannot create a temporary directory", "check TMPDIR");
        return;
    };
    let run = match raw_run(&options.path, raw_env(false, "1", dir.path()), options.timeout, true).await {
        Ok(run) => run,
        Err(e) => {
            report.fail(ITEM, format!("cannot run {}: {e}", options.path.display()), "make the file executable");
            return;
        }
    };
    let hint = format!(
        "when {} is not {:?}, print go-plugin's \"This binary is a plugin...\" message on stderr and exit 1",
        HANDSHAKE.magic_cookie_key, HANDSHAKE.magic_cookie_value
    );
    let says_plugin = run.stderr.contains("This binary is a plugin");
    match (&run.first_line, run.exit) {
        (Some(line), _) => report.fail(ITEM, format!("started without the magic cookie and printed {line:?}"), hint),
        (None, None) => report.fail(
            ITEM,
            format!("still running {:?} after being started without the cookie", options.timeout),
            hint,
        ),
        (None, Some(status)) if status.success() => {
            report.fail(ITEM, "exited 0 without the cookie: a shell would think it worked", hint)
        }
        (None, Some(status)) if status.code() == Some(1) && says_plugin => {
            report.pass(ITEM, "refuses to run without the magic cookie: exit status 1, go-plugin's message")
        }
        (None, Some(status)) => report.warn(
            ITEM,
            format!(
                "refuses to run without the cookie ({}), {}",
                crate::launcher::ExitReason::from(status),
                if says_plugin { "with go-plugin's message" } else { "but without go-plugin's message" }
            ),
            hint,
        ),
    }
}

pub(super) async fn check_version_negotiation(options: &CheckOptions, report: &mut Report) {
    const ITEM: &str = "version negotiation";
    let Ok(dir) = tempfile::Builder::new().prefix("pbchk-").tempdir() else { return };
    // A future host offering a version no plugin speaks yet, first.
    let offered = "99,1";
    let hint = "parse PLUGIN_PROTOCOL_VERSIONS and answer the highest version you speak (plugboard: 1) in field 2";
    match raw_run(&options.path, raw_env(true, offered, dir.path()), options.timeout, false).await {
        Ok(RawRun { first_line: Some(line), .. }) => match line.trim().split('|').nth(1) {
            Some("1") => report.pass(ITEM, format!("offered {offered}: answered 1")),
            Some(other) => report.fail(ITEM, format!("offered {offered}: answered {other:?}"), hint),
            None => report.fail(ITEM, format!("offered {offered}: unrecognised line {line:?}"), hint),
        },
        Ok(run) => report.fail(
            ITEM,
            format!("offered {offered}: no handshake line{}", excerpt(&run.stderr)),
            "print the handshake line as soon as the server listens",
        ),
        Err(e) => report.fail(ITEM, format!("cannot run it: {e}"), "make the file executable"),
    }
}

fn excerpt(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().rev().take(5).collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut text = String::from("; stderr:");
    for line in lines.into_iter().rev() {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text
}
