//! Isolation and limits with the real `plugboard` and the `faulty` plugin:
//! resource limits on the plugin process (cgroup v2 or rlimits, whichever
//! this machine offers), a scrubbed environment, `run_as`, and message size
//! limits that fail one call or stream only.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;

use plugboard_tests::chatops::{Host, start_host};
use plugboard_tests::*;
use serde_json::json;

/// `nobody` and `nogroup` on Debian.
const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The `isolation: ...` message the host logged for `instance`.
fn isolation_line(host: &Host, instance: &str) -> String {
    let find = |lines: &[String]| {
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["fields"].clone())
            .find(|f| f["instance"] == instance && f["message"].as_str().is_some_and(|m| m.starts_with("isolation: ")))
            .map(|f| f["message"].as_str().unwrap_or_default().to_owned())
    };
    let lines = host.run.stderr.wait_until(&format!("the isolation of {instance}"), DEADLINE, |l| find(l).is_some());
    find(&lines).unwrap_or_default()
}

/// One field (`Uid:`, `Gid:`) of /proc/<pid>/status: the real id.
fn status_id(pid: u32, field: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// (soft, hard) of one limit in /proc/<pid>/limits, e.g. "Max open files".
fn proc_limit(pid: u32, name: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {limits}"));
    let mut values = line[name.len()..].split_whitespace();
    (values.next().unwrap().to_owned(), values.next().unwrap().to_owned())
}

/// The cgroup v2 directory of a process.
fn cgroup_dir(pid: u32) -> std::path::PathBuf {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let relative = own.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let point = mountinfo
        .lines()
        .filter(|l| l.split(" - ").nth(1).is_some_and(|r| r.starts_with("cgroup2 ")))
        .map(|l| l.split_whitespace().nth(4).unwrap().to_owned())
        .min_by_key(|p| p != "/sys/fs/cgroup")
        .expect("a cgroup2 mount");
    std::path::Path::new(&point).join(relative.trim_start_matches('/'))
}

/// The environment `faulty env` printed, as NAME -> value.
fn env_of(host: &Host, command: &str) -> std::collections::BTreeMap<String, String> {
    let (status, reply) = host.command(json!({ "command": command }));
    assert_eq!(status, 200, "{reply}");
    let output = reply["output"].as_str().unwrap();
    output.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

#[test]
fn a_plugin_over_its_memory_limit_dies_alone_and_the_next_command_works() {
    let dir = TestDir::new();
    dir.add_plugin("faulty").add_plugin("echo");
    let mut host = start_host(
        &dir,
        "restart: { initial_backoff: 20ms }\nexecutors:\n  - { name: hog, plugin: faulty, limits: { memory: 256MiB } }\n  - { name: echo, plugin: echo }\n",
    );
    let isolation = isolation_line(&host, "hog");
    assert!(
        isolation.contains("memory 256 MiB (cgroup memory.max)")
            || isolation.contains("memory 256 MiB (rlimit RLIMIT_AS)"),
        "{isolation}"
    );
    let first = host.executor_pids("hog", 1)[0];
    let (status, reply) = host.command(json!({ "command": "faulty alloc" }));
    assert_eq!(status, 503, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains(&format!("plugin process {first} exited")), "{error}");
    assert!(error.contains("memory limit exceeded") && error.contains("256 MiB"), "{error}");
    assert!(wait_gone(&[first], DEADLINE).is_empty(), "the killed plugin is gone");
    // The host and the other executor never noticed.
    assert!(host.run.is_running());
    let (status, reply) = host.command(json!({ "command": "echo still here" }));
    assert_eq!((status, reply["output"].as_str()), (200, Some("still here\n")), "{reply}");
    // The restart policy brought it back, limits and all.
    let second = host.executor_pids("hog", 2)[1];
    assert_ne!(first, second);
    let (status, reply) = host.command(json!({ "command": "faulty ok" }));
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");
    let failed = host.run.stderr.wait_for("executor failed");
    assert!(failed.contains("memory limit exceeded"), "the restart log names the limit: {failed}");
    if isolation.contains("RLIMIT_AS") {
        assert_eq!(proc_limit(second, "Max address space"), ((256u64 << 20).to_string(), (256u64 << 20).to_string()));
    } else {
        let max = std::fs::read_to_string(cgroup_dir(second).join("memory.max")).unwrap();
        assert_eq!(max.trim(), (256u64 << 20).to_string());
    }
}

#[test]
fn a_plugin_out_of_cpu_time_is_killed_and_the_error_names_the_limit() {
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    let mut host = start_host(
        &dir,
        "restart: { initial_backoff: 20ms }\nexecutors:\n  - { name: f, plugin: faulty, timeout: 1m, limits: { cpu_time: 1s } }\n",
    );
    let first = host.executor_pids("f", 1)[0];
    let (status, reply) = host.command(json!({ "command": "faulty spin" }));
    assert_eq!(status, 503, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains(&format!("plugin process {first} exited (killed by signal")), "{error}");
    assert!(error.contains("CPU time limit exceeded: 1s (RLIMIT_CPU)"), "{error}");
    let second = host.executor_pids("f", 2)[1];
    let (status, reply) = host.command(json!({ "command": "faulty ok" }));
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");
    assert_ne!(first, second);
    assert!(host.run.is_running());
}

#[test]
fn the_environment_is_scrubbed_to_handshake_allow_list_and_env() {
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    let config = dir.write_config(
        "executors:\n  - name: clean\n    plugin: faulty\n    prefixes: [clean]\n    config: { interval: 7777ms }\n    env: { GREETING: hello }\n    env_allow: [LIMITS_TEST_ALLOWED, LIMITS_TEST_UNSET]\n  - { name: open, plugin: faulty, prefixes: [open], inherit_env: true }\n",
    );
    let mut cmd = plugboard();
    cmd.env("LIMITS_TEST_SECRET", "hunter2-in-the-host-env")
        .env("LIMITS_TEST_ALLOWED", "yes")
        .env_remove("LIMITS_TEST_UNSET");
    cmd.args(["--log-format", "json", "run", "--config"]).arg(&config);
    let run = Running::spawn(cmd);
    let host = Host { addr: http_addr(&run.stderr), run };
    let env = env_of(&host, "clean env");
    let names: BTreeSet<&str> = env.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        // go-plugin's handshake (AutoMTLS is on by default: the host's certificate).
        "PLUGBOARD_PLUGIN",
        "PLUGIN_MIN_PORT",
        "PLUGIN_MAX_PORT",
        "PLUGIN_PROTOCOL_VERSIONS",
        "PLUGIN_UNIX_SOCKET_DIR",
        "PLUGIN_CLIENT_CERT",
        "TMPDIR",
        // System directories only.
        "PATH",
        // The allow-list (an unset name is simply absent) and `env`.
        "LIMITS_TEST_ALLOWED",
        "GREETING",
    ]
    .into();
    assert_eq!(names, expected, "{env:?}");
    assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin:/bin");
    assert_eq!(env["LIMITS_TEST_ALLOWED"], "yes");
    assert_eq!(env["GREETING"], "hello");
    assert_eq!(env["TMPDIR"], env["PLUGIN_UNIX_SOCKET_DIR"]);
    // The instance config travels over gRPC only: neither argv nor the environment has it.
    let pid = host.executor_pids("clean", 1)[0];
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert_eq!(cmdline.split('\0').filter(|a| !a.is_empty()).count(), 1, "no arguments: {cmdline:?}");
    for (what, text) in [("argv", cmdline.as_ref()), ("environment", String::from_utf8_lossy(&environ).as_ref())] {
        assert!(!text.contains("7777ms"), "the config leaked into the {what}");
        assert!(!text.contains("hunter2"), "the host's secret leaked into the {what}");
    }
    // The documented escape hatch hands over everything.
    let open = env_of(&host, "open env");
    assert_eq!(open.get("LIMITS_TEST_SECRET").map(String::as_str), Some("hunter2-in-the-host-env"));
    let isolation = isolation_line(&host, "clean");
    assert!(
        isolation.contains("scrubbed environment (allowed: LIMITS_TEST_ALLOWED,LIMITS_TEST_UNSET; set: GREETING)"),
        "{isolation}"
    );
    assert!(isolation_line(&host, "open").contains("inherits the host's environment"));
}

#[test]
fn open_files_and_processes_limits_are_applied_to_the_plugin_process() {
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    // Others (nobody) must reach the plugin through the test directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // RLIMIT_NPROC does not bind root, so as root the plugin runs as nobody
    // (who owns few processes). It counts every process of the user: a
    // non-root test run cannot know how many its user already has.
    let (processes, run_as) = if is_root() { (", processes: 50", ", run_as: \"nobody:nogroup\"") } else { ("", "") };
    let host = start_host(
        &dir,
        &format!(
            "executors:\n  - {{ name: f, plugin: faulty, limits: {{ open_files: 200, cpu_time: 1h{processes} }}{run_as} }}\n"
        ),
    );
    let isolation = isolation_line(&host, "f");
    assert!(isolation.contains("open_files 200 (rlimit RLIMIT_NOFILE)"), "{isolation}");
    assert!(isolation.contains("cpu_time 1h (rlimit RLIMIT_CPU)"), "{isolation}");
    let pid = host.executor_pids("f", 1)[0];
    assert_eq!(proc_limit(pid, "Max open files"), ("200".into(), "200".into()));
    assert_eq!(proc_limit(pid, "Max cpu time"), ("3600".into(), "3602".into()));
    if !is_root() {
        assert!(!isolation.contains("processes"), "{isolation}");
    } else if isolation.contains("processes 50 (rlimit RLIMIT_NPROC)") {
        assert_eq!(proc_limit(pid, "Max processes"), ("50".into(), "50".into()));
    } else {
        assert!(isolation.contains("processes 50 (cgroup pids.max)"), "{isolation}");
        let max = std::fs::read_to_string(cgroup_dir(pid).join("pids.max")).unwrap();
        assert_eq!(max.trim(), "50");
    }
    let (status, reply) = host.command(json!({ "command": "faulty ok" }));
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");
}

#[test]
fn a_limited_plugin_gets_a_cgroup_of_its_own_where_cgroup_v2_is_writable() {
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    let host = start_host(
        &dir,
        "restart: { initial_backoff: 20ms }\nexecutors:\n  - { name: f, plugin: faulty, limits: { open_files: 300 } }\n",
    );
    let pid = host.executor_pids("f", 1)[0];
    let lines = host.run.stderr.snapshot();
    let messages: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["message"].as_str().map(str::to_owned))
        .filter(|m| m.starts_with("plugin limits: "))
        .collect();
    // The host says what it found on this machine, one way or the other.
    let in_use = messages.iter().any(|m| m.starts_with("plugin limits: cgroup v2 in use"));
    let none = messages.iter().any(|m| m.starts_with("plugin limits: no cgroups ("));
    assert!(in_use != none, "{messages:?}");
    let own = cgroup_dir(pid);
    if none {
        assert!(!own.to_string_lossy().contains("/plugboard-"), "{}", own.display());
        return;
    }
    let name = own.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("plugboard-{}-", host.run.pid())) && name.ends_with("-f"), "{name}");
    let procs = std::fs::read_to_string(own.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|p| p == pid.to_string()), "{procs}");
    // Gone with its plugin; the restarted one gets a new one.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let second = host.executor_pids("f", 2)[1];
    wait_for("the dead plugin's cgroup to be removed", DEADLINE, || !own.exists());
    assert_ne!(cgroup_dir(second), own);
}

#[test]
fn run_as_starts_the_plugin_as_that_user_with_its_own_socket_dir() {
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.write_config(
        "executors:\n  - { name: f, plugin: faulty, run_as: \"nobody:nogroup\" }\n  - { name: g, plugin: faulty, prefixes: [g] }\n",
    );
    if !is_root() {
        // Only root can switch users: the config is refused up front.
        let out = plugboard().args(["run", "--config"]).arg(&config).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("executors[0] \"f\": run_as needs the host to run as root"), "{stderr}");
        return;
    }
    let mut cmd = plugboard();
    cmd.args(["--log-format", "json", "run", "--config"]).arg(&config);
    let run = Running::spawn(cmd);
    let host = Host { addr: http_addr(&run.stderr), run };
    let pid = host.executor_pids("f", 1)[0];
    assert_eq!((status_id(pid, "Uid:"), status_id(pid, "Gid:")), (NOBODY, NOGROUP));
    let groups = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let groups = groups.lines().find_map(|l| l.strip_prefix("Groups:")).unwrap_or_default().trim().to_owned();
    assert!(!groups.split_whitespace().any(|g| g == "0"), "root's groups were dropped: {groups:?}");
    let env = env_of(&host, "faulty env");
    let socket_dir = std::fs::metadata(&env["PLUGIN_UNIX_SOCKET_DIR"]).unwrap();
    assert_eq!((socket_dir.uid(), socket_dir.gid()), (NOBODY, NOGROUP));
    assert_eq!(socket_dir.mode() & 0o7777, 0o700);
    assert!(isolation_line(&host, "f").contains("runs as nobody:nogroup (uid 65534, gid 65534)"));
    // The other instance stays the host's user.
    let other = host.executor_pids("g", 1)[0];
    assert_eq!(status_id(other, "Uid:"), 0);
    let (status, reply) = host.command(json!({ "command": "faulty ok" }));
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");

    // A host that is not root refuses run_as with a clear error.
    let out = plugboard()
        .args(["run", "--config"])
        .arg(&config)
        .uid(NOBODY)
        .gid(NOGROUP)
        .env("PLUGBOARD_STATE_DIR", dir.path().join("nobody-state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("executors[0] \"f\": run_as needs the host to run as root (it runs as uid 65534)"),
        "{stderr}"
    );
}

#[test]
fn an_oversized_output_fails_only_that_command_and_a_smaller_limit_fails_what_passed_before() {
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    let host = start_host(
        &dir,
        "executors:\n  - { name: roomy, plugin: faulty, prefixes: [roomy], max_output: 4194304 }\n  - { name: tight, plugin: faulty, prefixes: [tight], max_message_size: 1MiB }\n",
    );
    assert!(isolation_line(&host, "tight").contains("max_message_size 1 MiB"));
    assert!(isolation_line(&host, "roomy").contains("max_message_size 64 MiB"));
    // 2 MiB in one message passes the default limit...
    let (status, reply) = host.command(json!({ "command": "roomy big-output 2M" }));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["output"].as_str().map(str::len), Some(2 << 20));
    // ...and fails the 1 MiB one, saying both sizes.
    let tight = host.executor_pids("tight", 1)[0];
    let (status, reply) = host.command(json!({ "command": "tight big-output 2M" }));
    assert_ne!(status, 200, "{reply}");
    let error = reply["error"].as_str().unwrap();
    // 2 MiB of output plus its protobuf framing.
    assert!(error.contains("decoded message length too large: found 20971"), "{error}");
    assert!(error.contains("bytes, the limit is: 1048576 bytes"), "{error}");
    assert!(error.contains("max_message_size"), "{error}");
    // Only that call: the same process answers the next one.
    let (status, reply) = host.command(json!({ "command": "tight big-output 1000" }));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["output"].as_str().map(str::len), Some(1000));
    assert!(process_alive(tight));
    assert_eq!(host.executor_pids("tight", 1), [tight], "no restart");
}

#[test]
fn an_event_over_the_configured_limit_fails_only_its_stream() {
    let dir = TestDir::new();
    dir.add_plugin("faulty").add_plugin("tick");
    let config = dir.write_config(
        r#"restart: { initial_backoff: 20ms }
sources:
  - { name: big, plugin: faulty, max_message_size: 1MiB, config: { interval: 5ms, fault_at: 3, fault: oversize, arg: 2M, once: true } }
  - { name: steady, plugin: tick, config: { interval: 20ms } }
"#,
    );
    let mut cmd = plugboard();
    cmd.args(["run", "--config"]).arg(&config);
    let mut run = Running::spawn(cmd);
    let big = |lines: &[String]| {
        parse_events(lines)
            .iter()
            .filter(|e| e.source.ends_with("/faulty/big") && e.r#type == "dev.plugboard.faulty.event")
            .map(event_index)
            .collect::<Vec<_>>()
    };
    run.stdout.wait_until("events after the oversized one", DEADLINE, |l| big(l).len() >= 10);
    let failure = run.stderr.wait_for("source failed");
    assert!(failure.contains("source=big"), "{failure}");
    assert!(failure.contains("decoded message length too large: found 2097"), "{failure}");
    assert!(failure.contains("bytes, the limit is: 1048576 bytes"), "{failure}");
    let got = big(&run.stdout.snapshot());
    assert!(got.iter().enumerate().all(|(i, x)| *x == i as u64), "events lost or repeated: {got:?}");
    assert!(parse_events(&run.stdout.snapshot()).iter().any(|e| e.r#type == "dev.plugboard.tick"));
    assert!(run.is_running());
}

#[test]
fn bad_limit_values_are_config_errors_naming_the_field_and_line() {
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    let cases = [
        (
            "executors:\n  - name: f\n    plugin: faulty\n    limits: { memory: lots }\n",
            "line 6 column 23: executors[0].limits.memory: invalid size \"lots\"",
        ),
        ("executors:\n  - { name: f, plugin: faulty, max_message_size: huge }\n", "line 4 column "),
        ("sources:\n  - { name: s, plugin: faulty, limits: { cpu_time: soon } }\n", "sources[0].limits.cpu_time"),
        (
            "executors:\n  - { name: f, plugin: faulty, limits: { open_files: 3 } }\n",
            "executors[0] \"f\": limits: open_files 3 is too few",
        ),
        (
            "executors:\n  - { name: f, plugin: faulty, run_as: no-such-user-here }\n",
            "run_as: no user \"no-such-user-here\"",
        ),
        (
            "executors:\n  - { name: f, plugin: faulty, env: { PLUGIN_UNIX_SOCKET_DIR: /tmp } }\n",
            "environment variable PLUGIN_UNIX_SOCKET_DIR is set by the host",
        ),
    ];
    for (yaml, expected) in cases {
        let config = dir.write_config(yaml);
        let out = plugboard().args(["run", "--config"]).arg(&config).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{yaml}: {stderr}");
        assert!(stderr.contains(expected), "{yaml}: expected {expected:?} in {stderr}");
    }
}
