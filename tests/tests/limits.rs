//! Isolation and limits with the real `plugboard` and the `faulty` plugin:
//! resource limits on the plugin process (cgroup v2, cgroup v1 or rlimits,
//! whichever this machine offers per controller: each test works out which
//! from the filesystem and asserts that outcome strictly), a scrubbed
//! environment, `run_as`, and message size limits that fail one call or
//! stream only.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;

use std::path::PathBuf;
use std::sync::RwLock;

use plugboard_tests::cgroups::{dir_of, expected_enforcer, plugboard_dirs, plugboard_dirs_by_hierarchy};
use plugboard_tests::chatops::{Host, start_host};
use plugboard_tests::*;
use serde_json::json;

/// Hosts remove the plugin cgroups of dead hosts when they start: the test
/// that leaves such a pile on purpose runs alone (write), the other tests
/// that make cgroups share (read).
static CGROUP_PILE: RwLock<()> = RwLock::new(());

fn shared_cgroups() -> std::sync::RwLockReadGuard<'static, ()> {
    CGROUP_PILE.read().unwrap_or_else(|e| e.into_inner())
}

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

/// `plugboard plugins status --json` of a running host: the entry of `name`.
fn status_of(host: &Host, name: &str) -> serde_json::Value {
    let url = format!("http://{}", host.addr);
    let (code, out, err) = run_plugboard(&["plugins", "status", "--json", "--remote", &url]);
    assert_eq!(code, Some(0), "{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let plugins = reply["plugins"].as_array().cloned().unwrap_or_default();
    plugins.into_iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no instance {name} in {out}"))
}

/// What the host reports enforces limit `field` of `name`.
fn enforcer_of(host: &Host, name: &str, field: &str) -> String {
    status_of(host, name)["limits"][field].as_str().unwrap_or_default().to_owned()
}

/// The file enforcing the memory limit of `pid`, for `enforcer`.
fn memory_limit_file(pid: u32, enforcer: &str) -> PathBuf {
    match enforcer {
        "cgroup-v2" => dir_of(pid, None).unwrap().join("memory.max"),
        _ => dir_of(pid, Some("memory")).unwrap().join("memory.limit_in_bytes"),
    }
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
    let _cgroups = shared_cgroups();
    let dir = TestDir::new();
    dir.add_plugin("faulty").add_plugin("echo");
    let mut host = start_host(
        &dir,
        "restart: { initial_backoff: 20ms }\nexecutors:\n  - { name: hog, plugin: faulty, limits: { memory: 64MiB } }\n  - { name: echo, plugin: echo }\n",
    );
    let first = host.executor_pids("hog", 1)[0];
    // What this machine offers decides the outcome; the host must agree with the filesystem.
    let expected = expected_enforcer(host.run.pid(), "memory");
    assert_eq!(enforcer_of(&host, "hog", "memory"), expected);
    let mechanism = match expected {
        "cgroup-v2" => "cgroup memory.max",
        "cgroup-v1" => "cgroup v1 memory.limit_in_bytes",
        _ => "rlimit RLIMIT_AS",
    };
    assert!(isolation_line(&host, "hog").contains(&format!("memory 64 MiB ({mechanism})")));
    let started = host.run.stderr.wait_for("limits: memory 64 MiB by");
    assert!(started.contains(&format!("limits: memory 64 MiB by {expected} ({mechanism})")), "{started}");

    let (status, reply) = host.command(json!({ "command": "faulty alloc" }));
    assert_eq!(status, 503, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains(&format!("plugin process {first} exited")), "{error}");
    if expected == "rlimit" {
        // The address-space limit makes an allocation fail; Rust's runtime aborts.
        assert!(error.contains("killed by signal 6 (SIGABRT): memory limit exceeded: an allocation failed against the 64 MiB address-space limit (RLIMIT_AS)"), "{error}");
    } else {
        // The kernel's OOM killer, not a failed malloc: SIGKILL, and the cgroup counted it.
        let file = if expected == "cgroup-v2" { "memory.max" } else { "memory.limit_in_bytes" };
        assert!(
            error.contains(&format!("killed by signal 9 (SIGKILL): memory limit exceeded: 64 MiB reached ({expected} {file}; the kernel's OOM killer ended it)")),
            "{error}"
        );
        assert!(!host.run.stderr.text().contains("memory allocation of"), "no allocation failed");
    }
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
    let status = status_of(&host, "hog");
    assert!(status["last_exit"].as_str().unwrap_or_default().contains("memory limit exceeded"), "{status}");
    assert_eq!(status["restarts"], 1, "{status}");
    if expected == "rlimit" {
        assert_eq!(proc_limit(second, "Max address space"), ((64u64 << 20).to_string(), (64u64 << 20).to_string()));
    } else {
        let max = std::fs::read_to_string(memory_limit_file(second, expected)).unwrap();
        assert_eq!(max.trim(), (64u64 << 20).to_string());
    }
}

#[test]
fn with_cgroups_off_memory_falls_back_to_the_address_space_rlimit() {
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    let mut host = start_host(
        &dir,
        "restart: { initial_backoff: 20ms }\nexecutors:\n  - { name: hog, plugin: faulty, limits: { memory: 64MiB, cgroup: \"off\" } }\n",
    );
    let first = host.executor_pids("hog", 1)[0];
    assert_eq!(enforcer_of(&host, "hog", "memory"), "rlimit");
    assert!(plugboard_dirs(first).is_empty(), "no cgroup: {:?}", plugboard_dirs(first));
    assert_eq!(proc_limit(first, "Max address space"), ((64u64 << 20).to_string(), (64u64 << 20).to_string()));
    let (status, reply) = host.command(json!({ "command": "faulty alloc" }));
    assert_eq!(status, 503, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("plugin process {first} exited (killed by signal 6 (SIGABRT): memory limit exceeded: an allocation failed against the 64 MiB address-space limit (RLIMIT_AS))")),
        "{error}"
    );
    let second = host.executor_pids("hog", 2)[1];
    assert_ne!(first, second);
    assert!(host.run.is_running());
}

#[test]
fn a_plugin_out_of_cpu_time_is_killed_and_the_error_names_the_limit() {
    let _cgroups = shared_cgroups();
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
    let _cgroups = shared_cgroups();
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
        let (mechanism, dir) = match expected_enforcer(host.run.pid(), "pids") {
            "cgroup-v2" => ("cgroup pids.max", dir_of(pid, None)),
            _ => ("cgroup v1 pids.max", dir_of(pid, Some("pids"))),
        };
        assert!(isolation.contains(&format!("processes 50 ({mechanism})")), "{isolation}");
        let max = std::fs::read_to_string(dir.unwrap().join("pids.max")).unwrap();
        assert_eq!(max.trim(), "50");
    }
    let (status, reply) = host.command(json!({ "command": "faulty ok" }));
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");
}

/// The `plugin limits: ...` lines the host logged about this machine.
fn support_lines(host: &Host) -> Vec<String> {
    host.run
        .stderr
        .snapshot()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["message"].as_str().map(str::to_owned))
        .filter(|m| m.starts_with("plugin limits: "))
        .collect()
}

#[test]
fn a_fork_bomb_is_stopped_by_the_processes_limit() {
    let _cgroups = shared_cgroups();
    let dir = TestDir::new();
    dir.add_plugin("faulty").add_plugin("echo");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // RLIMIT_NPROC (the fallback) does not bind root: then the plugin runs as nobody.
    let probe = start_host(&dir, "executors:\n  - { name: probe, plugin: echo, limits: { open_files: 100 } }\n");
    let expected = expected_enforcer(probe.run.pid(), "pids");
    drop(probe);
    let run_as = if expected == "rlimit" && is_root() { ", run_as: \"nobody:nogroup\"" } else { "" };
    let host = start_host(
        &dir,
        &format!("executors:\n  - {{ name: bomb, plugin: faulty, limits: {{ processes: 24 }}{run_as} }}\n"),
    );
    let pid = host.executor_pids("bomb", 1)[0];
    assert_eq!(enforcer_of(&host, "bomb", "processes"), expected);
    // At most 200 forks whatever happens: the limit must stop it well before.
    let (status, reply) = host.command(json!({ "command": "faulty fork 200" }));
    assert_eq!(status, 200, "{reply}");
    let output = reply["output"].as_str().unwrap();
    let forked: u32 = output.strip_prefix("forked ").and_then(|o| o.split(' ').next()?.parse().ok()).unwrap();
    assert!(
        output.ends_with(" of 200, then fork failed: Resource temporarily unavailable (os error 11)\n"),
        "{output}"
    );
    assert!(forked < 24, "{output}");
    if expected == "rlimit" {
        assert_eq!(proc_limit(pid, "Max processes"), ("24".into(), "24".into()));
    } else {
        let dir = if expected == "cgroup-v2" { dir_of(pid, None) } else { dir_of(pid, Some("pids")) }.unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("pids.max")).unwrap().trim(), "24");
        // Its threads and the children it could make filled the group up to the limit.
        let events = std::fs::read_to_string(dir.join("pids.events")).unwrap_or_default();
        assert!(events.lines().any(|l| l.starts_with("max ") && l != "max 0"), "{events}");
    }
    // The plugin itself survived and serves the next command, with no child left.
    assert!(process_alive(pid));
    let (status, reply) = host.command(json!({ "command": "faulty ok" }));
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");
    assert_eq!(host.executor_pids("bomb", 1), [pid], "no restart");
}

#[test]
fn plugin_cgroups_are_made_per_launch_and_removed_when_the_plugin_exits_and_when_the_host_stops() {
    let _cgroups = shared_cgroups();
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    // A CPU rate has no rlimit: only where a cgroup cpu controller is there (v1 needs no enabling).
    let cpu = expected_enforcer(std::process::id(), "cpu") != "rlimit";
    let mut host = start_host(
        &dir,
        &format!(
            "restart: {{ initial_backoff: 20ms }}\nexecutors:\n  - {{ name: f, plugin: faulty, limits: {{ memory: 256MiB, processes: 100{} }} }}\n",
            if cpu { ", cpu_rate: 1.5" } else { "" }
        ),
    );
    let pid = host.executor_pids("f", 1)[0];
    let lines = support_lines(&host);
    let memory = expected_enforcer(host.run.pid(), "memory");
    let status = status_of(&host, "f");
    assert_eq!(status["limits"]["memory"], memory, "{status}");
    assert_eq!(status["limits"]["processes"], expected_enforcer(host.run.pid(), "pids"), "{status}");
    if cpu {
        assert_eq!(status["limits"]["cpu_rate"], expected_enforcer(host.run.pid(), "cpu"), "{status}");
    }
    let first = plugboard_dirs(pid);
    if first.is_empty() {
        assert_eq!(memory, "rlimit", "{status}");
        assert!(lines.iter().any(|l| l.starts_with("plugin limits: no cgroups (")), "{lines:?}");
        return;
    }
    assert!(lines.iter().any(|l| l.starts_with("plugin limits: cgroups in use: memory ")), "{lines:?}");
    // One directory per hierarchy in use, named after the host and the instance.
    let prefix = format!("plugboard-{}-", host.run.pid());
    for d in &first {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&prefix) && name.ends_with("-f"), "{name}");
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|p| p == pid.to_string()), "{}: {procs}", d.display());
    }
    if cpu && expected_enforcer(host.run.pid(), "cpu") == "cgroup-v1" {
        let quota = dir_of(pid, Some("cpu")).unwrap().join("cpu.cfs_quota_us");
        assert_eq!(std::fs::read_to_string(quota).unwrap().trim(), "150000");
    }
    // Gone with their plugin; the restarted one gets new ones.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let second = host.executor_pids("f", 2)[1];
    wait_for("the dead plugin's cgroups to be removed", DEADLINE, || first.iter().all(|d| !d.exists()));
    let again = plugboard_dirs(second);
    assert_eq!(again.len(), first.len(), "{again:?}");
    assert!(again.iter().all(|d| !first.contains(d)), "{again:?}");
    // A host that stops takes its plugins' cgroups with it.
    host.run.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(host.run.wait_exit(DEADLINE).success());
    let left: Vec<&PathBuf> = again.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn cgroups_left_by_a_sigkilled_host_are_removed_at_the_next_start() {
    let _alone = CGROUP_PILE.write().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    let yaml = "executors:\n  - { name: f, plugin: faulty, limits: { memory: 128MiB, processes: 100 } }\n";
    let mut host = start_host(&dir, yaml);
    let pid = host.executor_pids("f", 1)[0];
    let pile = plugboard_dirs_by_hierarchy(pid);
    if pile.is_empty() {
        // No writable cgroup here: nothing can pile up.
        assert_eq!(enforcer_of(&host, "f", "memory"), "rlimit");
        return;
    }
    let old_host = host.run.pid();
    // Killed hard: no chance to clean up. Its plugin dies with it (parent-death signal).
    host.run.signal(nix::sys::signal::Signal::SIGKILL);
    host.run.wait_exit(DEADLINE);
    assert!(wait_gone(&[pid], DEADLINE).is_empty());
    // The v1 directories stay until a host of this version starts (older
    // hosts elsewhere on the machine may tidy the shared v2 root already).
    let v1: Vec<&PathBuf> = pile.iter().filter(|(c, _)| c.is_some()).map(|(_, d)| d).collect();
    for d in &v1 {
        assert!(d.exists(), "{} vanished before any host started", d.display());
    }
    let next = start_host(&dir, yaml);
    next.executor_pids("f", 1);
    for (_, d) in &pile {
        assert!(!d.exists(), "{} is still there", d.display());
    }
    if !v1.is_empty() {
        let removed = next.run.stderr.wait_for("removed a plugin cgroup left by a host that is gone");
        assert!(removed.contains(&format!("plugboard-{old_host}-")), "{removed}");
    }
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
