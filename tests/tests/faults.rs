//! Fault injection with the `faulty` plugin, one test per fault. For each:
//! the host stays up and keeps serving the witnesses (a `tick` source's
//! events and an `echo` executor's commands); the faulty instance is
//! restarted (a new pid; the old one gone, not a zombie) or handled per
//! policy; no event of it is lost; no zombie and no orphan remains, during
//! the run and after the host stops. The supervisor announces each
//! transition as a lifecycle CloudEvent (routed to the stdout sink here) and
//! `/metrics` shows the instance up, restarted, with its last exit code.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use plugboard_tests::chatops::{Host, start_host};
use plugboard_tests::lifecycle::{self, contiguous, failures, json_events, restart_announced, started_pids};
use plugboard_tests::metrics;
use plugboard_tests::procs::{self, assert_no_zombie_or_orphan};
use plugboard_tests::*;
use serde_json::{Value, json};

const FAULTY_EVENT: &str = "dev.plugboard.faulty.event";

/// A plugins dir with the witnesses (`tick`, `echo`) and `faulty`.
fn plugins() -> TestDir {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo").add_plugin("faulty");
    dir
}

/// Adds `plugboard-<name>`: `faulty` with `FAULTY_STARTUP=<fault>` on the
/// launches numbered `faulty_launches` (launch 1 is discovery's Describe),
/// itself otherwise. A script rather than the host's environment, so only
/// this executable misbehaves. Returns the file where each launch appends
/// its pid (the script `exec`s, so it is the plugin's pid).
fn startup_fault(dir: &TestDir, name: &str, fault: &str, faulty_launches: RangeInclusive<u32>) -> PathBuf {
    let launches = dir.path().join(format!("{name}.launches"));
    let body = format!(
        "echo $$ >> '{log}'\nn=$(wc -l < '{log}')\n\
         if [ \"$n\" -ge {from} ] && [ \"$n\" -le {to} ]; then export FAULTY_STARTUP={fault}; fi\n\
         exec '{faulty}' \"$@\"",
        log = launches.display(),
        from = faulty_launches.start(),
        to = faulty_launches.end(),
        faulty = bin("plugboard-faulty").display(),
    );
    dir.add_script(&format!("plugboard-{name}"), &body);
    launches
}

/// Pids a [`startup_fault`] script recorded.
fn launched_pids(launches: &Path) -> Vec<u32> {
    std::fs::read_to_string(launches).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The config of a fault test: fast restarts, a short kill grace, the
/// witnesses and the test's own instances.
fn config(top: &str, sources: &str, executors: &str) -> String {
    format!(
        "restart: {{ initial_backoff: 20ms, max_backoff: 500ms }}\nkill_grace: 500ms\n\
         sinks: [{{ name: out, stdout: {{}} }}]\n\
         routes: [{{ sinks: [out] }}, {{ sources: [plugboard], sinks: [out] }}]\n{top}\
         sources:\n  - {{ name: steady, plugin: tick, config: {{ interval: 20ms }} }}\n{sources}\
         executors:\n  - {{ name: echo, plugin: echo }}\n{executors}"
    )
}

/// Health checks fast enough for a test, for the instances that stop answering.
const FAST_HEALTH: &str = "health: { interval: 200ms, timeout: 500ms, failures: 2 }";

/// A host running a fault test's config.
struct Faults {
    // Kept for the life of the host: its plugins and state live there.
    dir: TestDir,
    host: Host,
}

impl Faults {
    fn start(dir: TestDir, top: &str, sources: &str, executors: &str) -> Self {
        let host = start_host(&dir, &config(top, sources, executors));
        Self { dir, host }
    }

    fn pid(&self) -> u32 {
        self.host.run.pid()
    }

    fn logs(&self) -> Vec<String> {
        self.host.run.stderr.snapshot()
    }

    fn events(&self) -> Vec<Value> {
        json_events(&self.host.run.stdout.snapshot())
    }

    /// Waits until instance `name` of `kind` was started `n` times; its pids.
    fn started(&self, kind: &str, name: &str, n: usize) -> Vec<u32> {
        let lines =
            self.host.run.stderr.wait_until(&format!("{n} starts of {kind} {name}"), DEADLINE, |l| {
                started_pids(l, kind, name).len() >= n
            });
        started_pids(&lines, kind, name)
    }

    /// Waits for at least `n` events of the faulty source `name`; their indexes.
    fn faulty_indexes(&self, name: &str, n: usize, deadline: Duration) -> Vec<u64> {
        let lines = self.host.run.stdout.wait_until(&format!("{n} events from {name}"), deadline, |l| {
            lifecycle::indexes(&json_events(l), FAULTY_EVENT, name).len() >= n
        });
        lifecycle::indexes(&json_events(&lines), FAULTY_EVENT, name)
    }

    /// Waits for a host log line about `kind` `name` failing that contains `needle`.
    fn failure(&self, kind: &str, name: &str, needle: &str) -> String {
        let lines = self.host.run.stderr.wait_until(&format!("{kind} {name} failing with {needle:?}"), DEADLINE, |l| {
            failures(l, kind, name).iter().any(|m| m.contains(needle))
        });
        failures(&lines, kind, name).into_iter().find(|m| m.contains(needle)).unwrap_or_default()
    }

    /// The lifecycle transitions of instance `name` so far.
    fn transitions(&self, name: &str) -> Vec<(String, Value)> {
        lifecycle::transitions(&self.events(), name)
    }

    /// Waits until the transitions of `name` satisfy `done`; returns them.
    fn wait_transitions(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&[(String, Value)]) -> bool,
    ) -> Vec<(String, Value)> {
        let lines =
            self.host.run.stdout.wait_until(&format!("{name}: {what}"), DEADLINE, |l| {
                done(&lifecycle::transitions(&json_events(l), name))
            });
        lifecycle::transitions(&json_events(&lines), name)
    }

    /// The supervisor announced the restart of `kind` `name` from `old` to
    /// `new`; returns the data of the `exited` event of `old`.
    fn assert_restart_announced(&self, kind: &str, name: &str, old: u32, new: u32) -> Value {
        let events = self.wait_transitions(name, &format!("exited {old}, restarting, started {new}"), |e| {
            restart_announced(e, old, new)
        });
        let (_, exited) = events.iter().find(|(t, d)| t == "exited" && d["pid"] == old).unwrap();
        assert_eq!((exited["instance"].as_str(), exited["kind"].as_str()), (Some(name), Some(kind)), "{exited}");
        assert_eq!(exited["during"], "run", "{exited}");
        let (_, restarting) =
            events.iter().skip_while(|(t, _)| t != "exited").find(|(t, _)| t == "restarting").unwrap();
        assert!(restarting["delay_ms"].as_u64().is_some(), "{restarting}");
        assert_eq!(restarting["reason"], exited["reason"], "the restart says why");
        exited.clone()
    }

    /// `/metrics` has `name` up, restarted at least once, with `last_exit_code`.
    fn assert_restart_metrics(&self, kind: &str, name: &str, last_exit_code: i32) {
        let mut last = Vec::new();
        let settled = (0..100).any(|_| {
            last = metrics::scrape(&self.host.addr);
            let get = |metric: &str| metrics::value(&last, metric, &[("instance", name), ("kind", kind)]);
            let done = get("plugboard_plugin_up") == Some(1.0)
                && get("plugboard_plugin_restarts_total").is_some_and(|r| r >= 1.0)
                && get("plugboard_plugin_last_exit_code") == Some(f64::from(last_exit_code))
                && get("plugboard_plugin_deactivated") == Some(0.0);
            if !done {
                std::thread::sleep(Duration::from_millis(100));
            }
            done
        });
        let mine: Vec<_> = last.iter().filter(|s| s.labels.get("instance").map(String::as_str) == Some(name)).collect();
        assert!(settled, "{kind} {name}: expected up, restarted, last exit {last_exit_code}: {mine:#?}");
    }

    /// `/metrics` has `name` up and never restarted.
    fn assert_never_restarted(&self, kind: &str, name: &str) {
        let samples = metrics::scrape(&self.host.addr);
        let get = |metric: &str| metrics::value(&samples, metric, &[("instance", name), ("kind", kind)]);
        assert_eq!(get("plugboard_plugin_up"), Some(1.0));
        assert_eq!(get("plugboard_plugin_restarts_total"), Some(0.0));
        let transitions = self.transitions(name);
        assert!(transitions.iter().all(|(t, _)| t == "started"), "{name}: {transitions:?}");
    }

    /// `plugboard_commands_total` of `executor` with `outcome`.
    fn commands_total(&self, executor: &str, outcome: &str) -> Option<f64> {
        let samples = metrics::scrape(&self.host.addr);
        metrics::value(&samples, "plugboard_commands_total", &[("executor", executor), ("outcome", outcome)])
    }

    fn command(&self, command: &str) -> (u16, Value) {
        self.host.command(json!({ "command": command }))
    }

    /// The faulty source `name` logged that it injected its fault (so a test
    /// that sees nothing go wrong saw the fault and survived it).
    fn assert_injected(&self, name: &str) {
        self.host.run.stderr.wait_until(&format!("{name} to log its fault"), DEADLINE, |l| {
            lifecycle::logs_starting_with(l, "injecting fault")
                .iter()
                .any(|f| f["instance"] == name || f["plugin"] == name)
        });
    }

    /// The witnesses are served: new `tick` events arrive and `echo` answers.
    fn assert_serving(&mut self, tag: &str) {
        assert!(self.host.run.is_running(), "the host died; stderr:\n{}", self.host.run.stderr.text());
        let ticks = |l: &[String]| json_events(l).iter().filter(|e| e["type"] == "dev.plugboard.tick").count();
        let before = ticks(&self.host.run.stdout.snapshot());
        self.host.run.stdout.wait_until("3 more events from the steady source", DEADLINE, |l| ticks(l) >= before + 3);
        let (status, reply) = self.command(&format!("echo {tag}"));
        assert_eq!((status, reply["output"].as_str()), (200, Some(format!("{tag}\n").as_str())), "{reply}");
    }

    /// `new` replaced `old`: it runs, and nothing of `old` is left.
    fn assert_replaced(&self, old: u32, new: u32) {
        assert_ne!(old, new, "the instance was not restarted");
        assert!(process_alive(new), "the restarted process {new} is not running");
        assert_no_zombie_or_orphan(self.pid(), &[old]);
    }

    /// The host's live children are exactly the last started process of
    /// each of `instances` (`(kind, name)`): nothing leaked beside them.
    fn assert_children_are(&self, instances: &[(&str, &str)]) {
        let expected = |lines: &[String]| -> BTreeSet<u32> {
            instances.iter().filter_map(|(kind, name)| started_pids(lines, kind, name).last().copied()).collect()
        };
        let mut last = (BTreeSet::new(), BTreeSet::new());
        let settled = (0..100).any(|_| {
            let want = expected(&self.logs());
            let have: BTreeSet<u32> = procs::live_children(self.pid()).into_iter().collect();
            let same = want == have;
            last = (want, have);
            if !same {
                std::thread::sleep(Duration::from_millis(100));
            }
            same
        });
        assert!(settled, "host children {:?}, expected the instances' processes {:?}", last.1, last.0);
    }

    /// Stops the host with SIGTERM: a clean exit, and no process of `pids`
    /// nor of any instance it started is left.
    fn stop(mut self, pids: &[u32]) -> String {
        let host = self.pid();
        let mut all: Vec<u32> = pids.to_vec();
        for f in
            log_events(&self.logs(), "source started").into_iter().chain(log_events(&self.logs(), "executor started"))
        {
            all.extend(f["pid"].as_u64().map(|p| p as u32));
        }
        self.host.run.signal(Signal::SIGTERM);
        let status = self.host.run.wait_exit(DEADLINE);
        let stderr = self.host.run.stderr.text();
        assert_eq!(status.code(), Some(0), "host exit {status:?}; stderr:\n{stderr}");
        assert_no_zombie_or_orphan(host, &all);
        stderr
    }
}

#[test]
fn a_panic_on_the_nth_event_restarts_the_source_and_fails_only_that_command() {
    let mut f = Faults::start(
        plugins(),
        "",
        "  - { name: panics, plugin: faulty, config: { interval: 5ms, fault_at: 5, fault: panic, once: true } }\n",
        "  - { name: crashy, plugin: faulty }\n",
    );
    let pids = f.started("source", "panics", 2);
    let failure = f.failure("source", "panics", "source panicked: faulty: injected panic");
    assert!(failure.contains("restarting in"), "{failure}");
    f.assert_replaced(pids[0], pids[1]);
    let exited = f.assert_restart_announced("source", "panics", pids[0], pids[1]);
    assert_eq!(exited["reason"], "event stream failed: source panicked: faulty: injected panic", "{exited}");
    // The SDK turned the panic into a stream error; the host stopped the process.
    assert_eq!(exited["exit"]["code"], 0, "{exited}");
    f.assert_restart_metrics("source", "panics", 0);
    let got = f.faulty_indexes("panics", 20, DEADLINE);
    assert!(contiguous(&got), "events lost or repeated across the restart: {got:?}");

    // A panic inside Execute fails that command; the process serves on.
    let executor = f.started("executor", "crashy", 1)[0];
    let (status, reply) = f.command("faulty panic");
    assert_eq!(
        (status, reply["status"].as_str(), reply["exit_code"].as_i64()),
        (200, Some("failed"), Some(1)),
        "{reply}"
    );
    assert_eq!(reply["error"], "executor panicked: faulty: injected panic", "{reply}");
    let (status, reply) = f.command("faulty ok");
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");
    assert_eq!(f.started("executor", "crashy", 1), [executor], "a panic in a command is no reason to restart");
    f.assert_never_restarted("executor", "crashy");

    f.assert_serving("after-panics");
    f.assert_children_are(&[("source", "steady"), ("source", "panics"), ("executor", "echo"), ("executor", "crashy")]);
    f.stop(&[]);
}

/// A command that kills its executor is answered with the exit, and the
/// executor is back (a new process) for the next one.
fn assert_command_crash_restarts(f: &Faults, command: &str, exit_text: &str, exit_code: i32) {
    let old = f.started("executor", "crashy", 1)[0];
    let (status, reply) = f.command(command);
    assert_eq!((status, reply["status"].as_str()), (503, Some("unavailable")), "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains(&format!("plugin process {old} exited ({exit_text}) during the command")), "{error}");
    let new = f.started("executor", "crashy", 2)[1];
    f.assert_replaced(old, new);
    let exited = f.assert_restart_announced("executor", "crashy", old, new);
    assert_eq!(exited["exit"]["text"], exit_text, "{exited}");
    f.assert_restart_metrics("executor", "crashy", exit_code);
    assert_eq!(f.commands_total("crashy", "unavailable"), Some(1.0));
    let (status, reply) = f.command("faulty ok");
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");
}

#[test]
fn a_segfault_restarts_the_source_from_its_cursor_and_answers_the_command() {
    let mut f = Faults::start(
        plugins(),
        "",
        "  - { name: segfaults, plugin: faulty, config: { interval: 5ms, fault_at: 5, fault: segv, once: true } }\n",
        "  - { name: crashy, plugin: faulty }\n",
    );
    let pids = f.started("source", "segfaults", 2);
    f.failure("source", "segfaults", &format!("plugin process {} exited (killed by signal 11 (SIGSEGV))", pids[0]));
    f.assert_replaced(pids[0], pids[1]);
    let exited = f.assert_restart_announced("source", "segfaults", pids[0], pids[1]);
    assert_eq!(exited["exit"], json!({"code": null, "signal": 11, "text": "killed by signal 11 (SIGSEGV)"}));
    f.assert_restart_metrics("source", "segfaults", 128 + 11);
    let got = f.faulty_indexes("segfaults", 20, DEADLINE);
    assert!(contiguous(&got), "events lost or repeated across the restart: {got:?}");
    assert_command_crash_restarts(&f, "faulty segv", "killed by signal 11 (SIGSEGV)", 128 + 11);
    f.assert_serving("after-segv");
    f.assert_children_are(&[
        ("source", "steady"),
        ("source", "segfaults"),
        ("executor", "echo"),
        ("executor", "crashy"),
    ]);
    f.stop(&[]);
}

#[test]
fn exit_code_3_restarts_the_instance_and_a_crash_loop_keeps_backing_off() {
    let dir = plugins();
    // Describes itself, then exits with 3 before every handshake.
    let launches = startup_fault(&dir, "faulty-exitloop", "exit", 2..=u32::MAX);
    let mut f = Faults::start(
        dir,
        "",
        "  - { name: exits, plugin: faulty, config: { interval: 5ms, fault_at: 5, fault: exit, arg: \"3\", once: true } }\n  \
         - { name: loop, plugin: plugboard-faulty-exitloop, restart: { max_restarts: 3 } }\n",
        "  - { name: crashy, plugin: faulty }\n",
    );
    let pids = f.started("source", "exits", 2);
    f.failure("source", "exits", &format!("plugin process {} exited (exit status 3)", pids[0]));
    f.assert_replaced(pids[0], pids[1]);
    let exited = f.assert_restart_announced("source", "exits", pids[0], pids[1]);
    assert_eq!(exited["exit"], json!({"code": 3, "signal": null, "text": "exit status 3"}));
    f.assert_restart_metrics("source", "exits", 3);
    let got = f.faulty_indexes("exits", 20, DEADLINE);
    assert!(contiguous(&got), "events lost or repeated across the restart: {got:?}");
    assert_command_crash_restarts(&f, "faulty exit 3", "exit status 3", 3);

    // The crash loop: every start fails with the exit status, and is retried.
    f.host.run.stderr.wait_until("3 failed starts of the crash loop", DEADLINE, |l| {
        failures(l, "source", "loop")
            .iter()
            .filter(|m| m.contains("plugin exited before we could connect (exit status 3)"))
            .count()
            >= 3
    });
    assert!(started_pids(&f.logs(), "source", "loop").is_empty());
    // max_restarts 3: the fourth failure opens the circuit.
    let events = f.wait_transitions("loop", "deactivated", |e| e.iter().any(|(t, _)| t == "deactivated"));
    let whats: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        whats,
        ["exited", "restarting", "exited", "restarting", "exited", "restarting", "exited", "deactivated"]
    );
    let (_, deactivated) = events.last().unwrap();
    assert!(deactivated["reason"].as_str().unwrap().contains("exit status 3"), "{deactivated}");
    let samples = metrics::scrape(&f.host.addr);
    let get = |m: &str| metrics::value(&samples, m, &[("instance", "loop"), ("kind", "source")]);
    assert_eq!((get("plugboard_plugin_deactivated"), get("plugboard_plugin_up")), (Some(1.0), Some(0.0)));
    assert_eq!(get("plugboard_plugin_last_exit_code"), Some(3.0));
    let attempts = launched_pids(&launches);
    assert_eq!(attempts.len(), 5, "discovery and 4 starts: {attempts:?}");
    assert_no_zombie_or_orphan(f.pid(), &attempts);
    f.assert_serving("after-exits");
    assert_eq!(launched_pids(&launches), attempts, "a deactivated instance is not started again");
    let host = f.pid();
    let stderr = f.stop(&[]);
    assert_no_zombie_or_orphan(host, &launched_pids(&launches));
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_command_hanging_in_execute_times_out_and_the_executor_serves_on() {
    let mut f = Faults::start(plugins(), "", "", "  - { name: hangs, plugin: faulty, timeout: 500ms }\n");
    let pid = f.started("executor", "hangs", 1)[0];
    // `hang` awaits forever (cancellable); `hang-hard` blocks a runtime thread.
    for mode in ["hang", "hang-hard"] {
        let (status, reply) = f.command(&format!("faulty {mode}"));
        if status == 504 {
            assert_eq!((reply["status"].as_str(), reply["exit_code"].as_i64()), (Some("timeout"), Some(124)));
            let error = reply["error"].as_str().unwrap();
            assert!(error.contains("command timed out after 500ms and was cancelled"), "{mode}: {error}");
        }
        assert_timed_out((status, reply));
        let (status, reply) = f.command("faulty ok");
        assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "after {mode}: {reply}");
    }
    assert_eq!(f.started("executor", "hangs", 1), [pid]);
    assert!(process_alive(pid));
    let ended = |outcome| f.commands_total("hangs", outcome).unwrap_or(0.0);
    assert_eq!(ended("timeout"), 2.0, "both hung commands counted as timeouts");
    assert_eq!(f.commands_total("hangs", "ok"), Some(2.0));
    f.assert_never_restarted("executor", "hangs");
    f.assert_serving("after-hangs");

    // `plugboard exec` (no supervisor) answers the same way and exits.
    let config = f.dir.path().join("plugboard.yaml");
    let out =
        plugboard().arg("exec").arg("--config").arg(&config).args(["--", "faulty", "hang-hard"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert!(stderr.contains("command timed out after 500ms and was cancelled"), "{stderr}");
    f.stop(&[]);
}

#[test]
fn a_plugin_hanging_before_its_handshake_is_killed_at_the_start_timeout_and_retried() {
    let dir = plugins();
    let launches = startup_fault(&dir, "faulty-slowstart", "hang", 2..=2);
    let mut f = Faults::start(
        dir,
        "start_timeout: 5s\n",
        "  - { name: late, plugin: plugboard-faulty-slowstart, config: { interval: 5ms } }\n",
        "",
    );
    let failure = f.failure("source", "late", "no handshake line within 5s");
    assert!(failure.contains("timeout while waiting for plugin to start"), "{failure}");
    let pid = f.started("source", "late", 1)[0];
    let attempts = launched_pids(&launches);
    assert_eq!(attempts.len(), 3, "discovery, the hung start, the good one: {attempts:?}");
    assert_eq!(attempts[2], pid);
    assert_no_zombie_or_orphan(f.pid(), &attempts[..2]);
    let events = f.wait_transitions("late", "started", |e| e.iter().any(|(t, _)| t == "started"));
    let (_, restarting) = events.iter().find(|(t, _)| t == "restarting").expect("a restarting event");
    assert!(restarting["reason"].as_str().unwrap().contains("no handshake line within 5s"), "{restarting}");
    assert_eq!(events.last().unwrap().1["pid"], pid);
    let got = f.faulty_indexes("late", 10, DEADLINE);
    assert!(contiguous(&got), "{got:?}");
    f.assert_serving("after-slowstart");
    f.assert_children_are(&[("source", "steady"), ("source", "late"), ("executor", "echo")]);
    f.stop(&attempts);
}

#[test]
fn a_garbage_handshake_is_refused_the_process_killed_and_the_start_retried() {
    let dir = plugins();
    let launches = startup_fault(&dir, "faulty-garbage", "garbage", 2..=3);
    let mut f =
        Faults::start(dir, "", "  - { name: liar, plugin: plugboard-faulty-garbage, config: { interval: 5ms } }\n", "");
    let pid = f.started("source", "liar", 1)[0];
    let lines = f.logs();
    let refused = failures(&lines, "source", "liar");
    assert_eq!(refused.len(), 2, "two garbage handshakes: {refused:?}");
    for r in &refused {
        assert!(r.contains("Unrecognized remote plugin message: \"this is not a handshake\""), "{r}");
    }
    let attempts = launched_pids(&launches);
    assert_eq!(attempts.len(), 4, "discovery, two liars, the good one: {attempts:?}");
    assert_eq!(attempts[3], pid);
    // The liars waited for an hour after their line: the host killed them.
    assert_no_zombie_or_orphan(f.pid(), &attempts[..3]);
    let events = f.wait_transitions("liar", "started", |e| e.iter().any(|(t, _)| t == "started"));
    let restarting: Vec<&Value> = events.iter().filter(|(t, _)| t == "restarting").map(|(_, d)| d).collect();
    assert_eq!(restarting.len(), 2, "{events:?}");
    for r in restarting {
        assert!(r["reason"].as_str().unwrap().contains("Unrecognized remote plugin message"), "{r}");
    }
    assert_eq!(events.last().unwrap().1["pid"], pid);
    let got = f.faulty_indexes("liar", 10, DEADLINE);
    assert!(contiguous(&got), "{got:?}");
    f.assert_serving("after-garbage");
    f.stop(&attempts);
}

/// A command on a plugin that answers nothing ended at its timeout.
///
/// The request carries the same deadline as grpc-timeout, and tonic's own
/// timer may fire a moment before the host's: either way the caller gets the
/// timeout reply (a regression test for the race that once gave a 502).
fn assert_timed_out((status, reply): (u16, Value)) {
    assert_eq!((status, reply["status"].as_str()), (504, Some("timeout")), "{reply}");
}

/// A health check kill: `unhealthy` of `old`, then the restart to `new`.
fn assert_killed_as_unhealthy(f: &Faults, kind: &str, name: &str, old: u32, new: u32) {
    f.assert_replaced(old, new);
    let exited = f.assert_restart_announced(kind, name, old, new);
    assert_eq!(exited["exit"]["signal"], 9, "killed: {exited}");
    let events = f.transitions(name);
    let (_, unhealthy) = events.iter().find(|(t, d)| t == "unhealthy" && d["pid"] == old).expect("an unhealthy event");
    assert!(unhealthy["reason"].as_str().unwrap().contains("health check failed 2 times in a row"), "{unhealthy}");
    f.assert_restart_metrics(kind, name, 128 + 9);
}

#[test]
fn a_plugin_that_stops_answering_health_checks_is_killed_and_restarted() {
    let mut f = Faults::start(
        plugins(),
        "",
        &format!(
            "  - {{ name: stalls, plugin: faulty, {FAST_HEALTH}, \
             config: {{ interval: 5ms, fault_at: 5, fault: stall, once: true }} }}\n"
        ),
        &format!("  - {{ name: mute, plugin: faulty, timeout: 500ms, {FAST_HEALTH} }}\n"),
    );
    // The source stalls after its event 4: every thread blocked, health included.
    let pids = f.started("source", "stalls", 2);
    assert_killed_as_unhealthy(&f, "source", "stalls", pids[0], pids[1]);
    let got = f.faulty_indexes("stalls", 20, DEADLINE);
    assert!(contiguous(&got), "events lost or repeated across the restart: {got:?}");

    let old = f.started("executor", "mute", 1)[0];
    assert_timed_out(f.command("faulty stall"));
    let new = f.started("executor", "mute", 2)[1];
    assert_killed_as_unhealthy(&f, "executor", "mute", old, new);
    let (status, reply) = f.command("faulty ok");
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");
    f.assert_serving("after-stall");
    f.stop(&[]);
}

#[test]
fn a_plugin_stopped_with_sigstop_is_killed_by_its_health_check_and_restarted() {
    let mut f = Faults::start(
        plugins(),
        "",
        &format!(
            "  - {{ name: stopped, plugin: faulty, {FAST_HEALTH}, \
             config: {{ interval: 5ms, fault_at: 5, fault: stop-self, once: true }} }}\n"
        ),
        &format!("  - {{ name: frozen, plugin: faulty, timeout: 500ms, {FAST_HEALTH} }}\n"),
    );
    let pids = f.started("source", "stopped", 2);
    assert_killed_as_unhealthy(&f, "source", "stopped", pids[0], pids[1]);
    let got = f.faulty_indexes("stopped", 20, DEADLINE);
    assert!(contiguous(&got), "events lost or repeated across the restart: {got:?}");

    let old = f.started("executor", "frozen", 1)[0];
    assert_timed_out(f.command("faulty stop-self"));
    let new = f.started("executor", "frozen", 2)[1];
    assert_killed_as_unhealthy(&f, "executor", "frozen", old, new);
    f.assert_serving("after-sigstop");
    f.stop(&[]);
}

#[test]
fn a_100mb_stderr_flood_neither_blocks_nor_bloats_the_host() {
    let mut f = Faults::start(
        plugins(),
        "",
        "  - { name: loud, plugin: faulty, config: { interval: 1ms, fault_at: 2, fault: flood-stderr, arg: 100M } }\n",
        "",
    );
    // Events after the flood prove the plugin's stderr pipe was drained.
    let got = f.faulty_indexes("loud", 20, Duration::from_secs(120));
    assert!(contiguous(&got), "{got:?}");
    f.assert_injected("loud");
    let rss = rss_kib(f.pid()).expect("host rss");
    assert!(rss < 200 * 1024, "host resident memory grew to {rss} KiB during a 100 MB flood");
    assert_eq!(
        f.started("source", "loud", 1).len(),
        1,
        "a flood is no crash: {:?}",
        failures(&f.logs(), "source", "loud")
    );
    f.assert_never_restarted("source", "loud");
    f.assert_serving("after-stderr-flood");
    f.stop(&[]);
}

#[test]
fn a_stdout_flood_after_the_handshake_neither_blocks_nor_bloats_the_host() {
    let mut f = Faults::start(
        plugins(),
        "",
        "  - { name: chatty, plugin: faulty, config: { interval: 1ms, fault_at: 2, fault: flood-stdout, arg: 100M } }\n",
        "  - { name: blabber, plugin: faulty }\n",
    );
    let got = f.faulty_indexes("chatty", 20, Duration::from_secs(120));
    assert!(contiguous(&got), "{got:?}");
    f.assert_injected("chatty");
    let (status, reply) = f.command("faulty flood-stdout 10M");
    assert_eq!((status, reply["output"].as_str()), (200, Some("flood-stdout: done\n")), "{reply}");
    let rss = rss_kib(f.pid()).expect("host rss");
    assert!(rss < 200 * 1024, "host resident memory grew to {rss} KiB during the floods");
    assert_eq!(f.started("source", "chatty", 1).len(), 1);
    f.assert_never_restarted("source", "chatty");
    f.assert_never_restarted("executor", "blabber");
    f.assert_serving("after-stdout-flood");
    f.stop(&[]);
}

#[test]
fn a_message_over_the_size_limit_fails_only_that_stream_or_call() {
    let mut f = Faults::start(
        plugins(),
        "",
        "  - { name: big, plugin: faulty, max_message_size: 1MiB, \
         config: { interval: 5ms, fault_at: 3, fault: oversize, arg: 2M, once: true } }\n",
        "  - { name: bigout, plugin: faulty, max_message_size: 1MiB }\n",
    );
    let failure = f.failure("source", "big", "decoded message length too large: found 2097");
    assert!(failure.contains("the limit is: 1048576 bytes"), "{failure}");
    assert!(failure.contains("restarting in"), "{failure}");
    let pids = f.started("source", "big", 2);
    f.assert_replaced(pids[0], pids[1]);
    let exited = f.assert_restart_announced("source", "big", pids[0], pids[1]);
    assert!(exited["reason"].as_str().unwrap().contains("decoded message length too large"), "{exited}");
    f.assert_restart_metrics("source", "big", 0);
    let got = f.faulty_indexes("big", 10, DEADLINE);
    assert!(contiguous(&got), "{got:?}");
    assert!(!f.events().iter().any(|e| e["type"] == "dev.plugboard.faulty.big"), "the oversized event was stored");

    let executor = f.started("executor", "bigout", 1)[0];
    let (status, reply) = f.command("faulty big-output 2M");
    assert_ne!(reply["status"], "ok", "{status}");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(error.contains("max_message_size"), "{reply}");
    let (status, reply) = f.command("faulty ok");
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");
    assert!(process_alive(executor));
    f.assert_never_restarted("executor", "bigout");
    f.assert_serving("after-oversize");
    f.stop(&[]);
}

#[test]
fn a_grandchild_holding_the_pipes_does_not_hide_the_exit_and_dies_with_the_plugin() {
    let dir = plugins();
    // Exits with 3 before its handshake, leaving a `sleep` holding its stdout.
    let launches = startup_fault(&dir, "faulty-forker", "grandchild", 2..=2);
    let mut f = Faults::start(
        dir,
        "",
        "  - { name: parent, plugin: faulty, config: { interval: 5ms, fault_at: 5, fault: grandchild, once: true } }\n  \
         - { name: early, plugin: plugboard-faulty-forker, config: { interval: 5ms } }\n",
        "  - { name: crashy, plugin: faulty }\n",
    );
    let pids = f.started("source", "parent", 2);
    f.failure("source", "parent", &format!("plugin process {} exited (exit status 3)", pids[0]));
    // assert_replaced also proves the `sleep` in the old process group is gone.
    f.assert_replaced(pids[0], pids[1]);
    let exited = f.assert_restart_announced("source", "parent", pids[0], pids[1]);
    assert_eq!(exited["exit"]["code"], 3, "{exited}");
    f.assert_restart_metrics("source", "parent", 3);
    assert!(contiguous(&f.faulty_indexes("parent", 10, DEADLINE)));

    f.failure("source", "early", "plugin exited before we could connect (exit status 3)");
    let early = f.started("source", "early", 1)[0];
    let attempts = launched_pids(&launches);
    assert_eq!(attempts.last(), Some(&early), "{attempts:?}");
    assert_no_zombie_or_orphan(f.pid(), &attempts[..attempts.len() - 1]);
    let events = f.wait_transitions("early", "started", |e| e.iter().any(|(t, _)| t == "started"));
    let (_, restarting) = events.iter().find(|(t, _)| t == "restarting").expect("a restarting event");
    assert!(restarting["reason"].as_str().unwrap().contains("exit status 3"), "{restarting}");

    assert_command_crash_restarts(&f, "faulty grandchild", "exit status 3", 3);
    f.assert_serving("after-grandchildren");
    f.assert_children_are(&[
        ("source", "steady"),
        ("source", "parent"),
        ("source", "early"),
        ("executor", "echo"),
        ("executor", "crashy"),
    ]);
    f.stop(&attempts);
}

#[test]
fn plugins_ignoring_sigterm_are_killed_after_the_grace_period_at_shutdown() {
    let mut f = Faults::start(
        plugins(),
        "",
        "  - { name: stubborn, plugin: faulty, config: { interval: 5ms, ignore_shutdown: true } }\n",
        "  - { name: deaf, plugin: faulty }\n",
    );
    let source = f.started("source", "stubborn", 1)[0];
    let executor = f.started("executor", "deaf", 1)[0];
    f.faulty_indexes("stubborn", 5, DEADLINE);
    let (status, reply) = f.command("faulty ignore-shutdown");
    assert_eq!((status, reply["output"].as_str()), (200, Some("ignoring SIGTERM and Shutdown\n")), "{reply}");
    // SIGTERM itself does nothing to them.
    for pid in [source, executor] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    }
    f.assert_serving("after-sigterm");
    assert!(process_alive(source) && process_alive(executor));
    let stdout = f.host.run.stdout.clone();
    let stderr = f.stop(&[source, executor]);
    let out = stdout.wait_until("the deaf executor's exited event", DEADLINE, |l| {
        lifecycle::transitions(&json_events(l), "deaf").iter().any(|(t, _)| t == "exited")
    });
    let killed: Vec<u64> = log_events(
        &stderr.lines().map(str::to_owned).collect::<Vec<_>>(),
        "plugin failed to exit gracefully; killing it",
    )
    .iter()
    .filter_map(|f| f["pid"].as_u64())
    .collect();
    for pid in [source, executor] {
        assert!(killed.contains(&u64::from(pid)), "{pid} was not killed after the grace period: {killed:?}");
    }
    // Their last lifecycle events, stored and delivered on the way out.
    let events = json_events(&out);
    for (name, pid) in [("stubborn", source), ("deaf", executor)] {
        let exited = lifecycle::transitions(&events, name).into_iter().find(|(t, d)| t == "exited" && d["pid"] == pid);
        let (_, exited) = exited.unwrap_or_else(|| panic!("no exited event for {name}"));
        assert_eq!((exited["during"].as_str(), exited["exit"]["signal"].as_i64()), (Some("stop"), Some(9)), "{exited}");
    }
}

/// What `/metrics` shows as the last exit of an `exited` event: its exit
/// code, or 128 + the signal that killed it.
fn exit_code_of(exited: &Value) -> i32 {
    let exit = &exited["exit"];
    match (exit["code"].as_i64(), exit["signal"].as_i64()) {
        (Some(code), _) => code as i32,
        (None, Some(signal)) => 128 + signal as i32,
        _ => panic!("no exit code or signal: {exited}"),
    }
}

#[test]
fn a_plugin_allocating_past_its_memory_limit_dies_alone_and_is_restarted() {
    let mut f = Faults::start(
        plugins(),
        "",
        "  - { name: hog, plugin: faulty, limits: { memory: 128MiB }, \
         config: { interval: 5ms, fault_at: 5, fault: alloc, once: true } }\n",
        "  - { name: greedy, plugin: faulty, limits: { memory: 128MiB } }\n",
    );
    let pids = f.started("source", "hog", 2);
    f.failure("source", "hog", "memory limit exceeded");
    f.assert_replaced(pids[0], pids[1]);
    let exited = f.assert_restart_announced("source", "hog", pids[0], pids[1]);
    let reason = exited["reason"].as_str().unwrap();
    assert!(reason.contains("memory limit exceeded") && reason.contains("128 MiB"), "{exited}");
    f.assert_restart_metrics("source", "hog", exit_code_of(&exited));
    let got = f.faulty_indexes("hog", 20, DEADLINE);
    assert!(contiguous(&got), "events lost or repeated across the restart: {got:?}");

    let old = f.started("executor", "greedy", 1)[0];
    let (status, reply) = f.command("faulty alloc");
    assert_eq!((status, reply["status"].as_str()), (503, Some("unavailable")), "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("plugin process {old} exited")) && error.contains("memory limit exceeded"),
        "{error}"
    );
    let new = f.started("executor", "greedy", 2)[1];
    f.assert_replaced(old, new);
    let exited = f.assert_restart_announced("executor", "greedy", old, new);
    f.assert_restart_metrics("executor", "greedy", exit_code_of(&exited));
    let (status, reply) = f.command("faulty ok");
    assert_eq!((status, reply["output"].as_str()), (200, Some("ok\n")), "{reply}");
    // The host's own memory never held the hoard.
    let rss = rss_kib(f.pid()).expect("host rss");
    assert!(rss < 200 * 1024, "host resident memory is {rss} KiB");
    f.assert_serving("after-alloc");
    f.stop(&[]);
}
