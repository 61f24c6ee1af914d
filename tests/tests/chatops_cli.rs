//! `plugboard exec --remote` and `plugboard shell` (driven through piped
//! stdin), against a running host and embedded.

use std::io::Write;
use std::process::Stdio;

use plugboard_tests::chatops::*;
use plugboard_tests::*;

fn shell(dir: &TestDir, args: &[&str], input: &str) -> (String, String, Option<i32>) {
    let mut child = plugboard()
        .env("PLUGBOARD_HISTORY", dir.path().join("history"))
        .env("PLUGBOARD_PLUGINS_DIR", dir.plugins())
        .arg("shell")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugboard shell");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn exec_remote_runs_the_command_on_a_running_host() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(&dir, "http: { token: t0k }\nexecutors:\n  - name: echo\n    plugin: echo\n");
    let url = host.url("");
    let out = plugboard()
        .args([
            "exec", "--remote", &url, "--token", "t0k", "--user", "dana", "--", "echo", "--every", "1ms", "a", "b c",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb c\n", "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(0));
    let audit = host.events_of_type("dev.plugboard.command.executed", 1);
    assert_eq!(audit[0]["data"]["user"], "dana");
    assert_eq!(audit[0]["data"]["command"], "echo --every 1ms a 'b c'");

    let out = plugboard().args(["exec", "--remote", &url, "--token", "t0k", "--", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command \"nosuch\""));

    let out = plugboard().args(["exec", "--remote", &url, "--", "echo", "hi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("answered 401: missing or wrong bearer token"), "{stderr}");
}

#[test]
fn the_shell_runs_commands_on_a_running_host() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(&dir, "executors:\n  - name: echo\n    plugin: echo\n");
    let (stdout, stderr, code) = shell(
        &dir,
        &["--remote", &host.url(""), "--user", "erin"],
        "help\necho hi there\n\nnosuch\necho help\nexit\necho never\n",
    );
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(stdout.contains("Commands you can run:\n  echo  prints its arguments back"), "{stdout}");
    assert!(stdout.contains("hi there\n"), "{stdout}");
    assert!(stdout.contains("error: unknown command \"nosuch\""), "{stdout}");
    assert!(stdout.contains("(exit code 127)"), "{stdout}");
    assert!(stdout.contains("usage: echo WORDS..."), "{stdout}");
    assert!(!stdout.contains("never"), "`exit` ends the shell: {stdout}");
    let audit = host.events_of_type("dev.plugboard.command.executed", 4);
    assert!(audit.iter().all(|e| e["data"]["user"] == "erin" && e["data"]["platform"] == "shell"));
    // History is kept between sessions.
    let history = std::fs::read_to_string(dir.path().join("history")).unwrap();
    assert!(history.contains("echo hi there") && history.contains("nosuch"), "{history}");
}

#[test]
fn the_shell_runs_embedded_when_no_host_runs() {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo");
    let (stdout, stderr, code) = shell(&dir, &["--embedded"], "echo --every 1ms streamed words\nhelp\n");
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(stdout.contains("streamed\nwords\n"), "{stdout}");
    assert!(stdout.contains("echo  prints its arguments back"), "{stdout}");
}
