//! Hot plug: a running `plugboard run` follows its plugins directory and its
//! config file (and SIGHUP), touching only the instances a change concerns.
//!
//! Plugins are real copies of the contrib binaries (not symlinks), so that
//! replacing and removing them is what an operator does.

use std::path::PathBuf;
use std::process::Command;

use plugboard_tests::chatops::post_command;
use plugboard_tests::{
    DEADLINE, Lines, Running, TestDir, bin, http_addr, json_lines, log_events, plugboard, process_alive, wait_for,
    wait_gone,
};
use serde_json::{Value, json};

/// Copies a contrib plugin into the plugins dir under `file_name`.
fn install(dir: &TestDir, plugin: &str, file_name: &str) -> PathBuf {
    let target = dir.plugins().join(file_name);
    std::fs::copy(bin(&format!("plugboard-{plugin}")), &target).expect("copy plugin");
    target
}

/// Replaces a plugin binary the safe way: a staged hidden copy renamed over it.
fn replace(dir: &TestDir, plugin: &str, file_name: &str) {
    let staged = dir.plugins().join(format!(".{file_name}.new"));
    std::fs::copy(bin(&format!("plugboard-{plugin}")), &staged).expect("stage plugin");
    std::fs::rename(&staged, dir.plugins().join(file_name)).expect("rename plugin");
}

/// Rewrites the config the way editors do: a new file renamed over the old one.
fn rewrite_config(dir: &TestDir, yaml: &str) {
    let staged = dir.path().join(".plugboard.yaml.new");
    std::fs::write(&staged, format!("plugins_dir: plugins\nstate_dir: state\n{yaml}")).unwrap();
    std::fs::rename(&staged, dir.path().join("plugboard.yaml")).unwrap();
}

struct Host {
    run: Running,
    addr: String,
}

impl Host {
    fn with_config(dir: &TestDir, yaml: &str) -> Self {
        let config = dir.write_config(yaml);
        let mut cmd = plugboard();
        cmd.args(["--log-format", "json", "run", "--config"]).arg(&config);
        Self::spawn(cmd)
    }

    fn spawn(cmd: Command) -> Self {
        let run = Running::spawn(cmd);
        let addr = http_addr(&run.stderr);
        // Changes made from here on are seen as changes (earlier ones too, but as "changed while starting").
        run.stderr.wait_for("hot plug ready");
        Self { run, addr }
    }

    fn command(&self, command: &str) -> (u16, Value) {
        post_command(&format!("http://{}/v1/commands", self.addr), json!({ "command": command, "user": "ops" }), None)
    }

    /// Waits until `command` answers with exit code 0; returns its output.
    fn wait_answers(&self, command: &str) -> String {
        let mut last = Value::Null;
        wait_for(&format!("{command:?} to answer"), DEADLINE, || {
            let (status, reply) = self.command(command);
            last = reply;
            status == 200 && last["exit_code"] == 0
        });
        last["output"].as_str().unwrap_or_default().to_owned()
    }

    /// The pids an instance logged on start ("executor started" / "source started"), waiting for `n`.
    fn pids(&self, kind: &str, instance: &str, n: usize) -> Vec<u32> {
        let pids = |lines: &[String]| started_pids(lines, kind, instance);
        let lines =
            self.run.stderr.wait_until(&format!("{n} starts of {kind} {instance}"), DEADLINE, |l| pids(l).len() >= n);
        pids(&lines)
    }

    /// The pid of an instance that started exactly once so far.
    fn only_pid(&self, kind: &str, instance: &str) -> u32 {
        let pids = self.pids(kind, instance, 1);
        assert_eq!(pids.len(), 1, "{kind} {instance} started more than once: {pids:?}\n{}", self.run.stderr.text());
        assert!(process_alive(pids[0]), "{kind} {instance} (pid {}) is not running", pids[0]);
        pids[0]
    }

    /// Host events of `ty` printed by the stdout sink, waiting for `n`.
    fn host_events(&self, ty: &str, n: usize) -> Vec<Value> {
        let lines = self.run.stdout.wait_until(&format!("{n} {ty} events"), DEADLINE, |l| events_of(l, ty).len() >= n);
        events_of(&lines, ty)
    }

    /// Waits for a log line whose message contains `needle`; returns it parsed.
    fn wait_log(&self, needle: &str) -> Value {
        let find = |lines: &[String]| {
            lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["fields"]["message"].as_str().is_some_and(|m| m.contains(needle)))
        };
        let lines = self.run.stderr.wait_until(&format!("a log line with {needle:?}"), DEADLINE, |l| find(l).is_some());
        find(&lines).unwrap_or_default()
    }
}

fn started_pids(lines: &[String], kind: &str, instance: &str) -> Vec<u32> {
    log_events(lines, &format!("{kind} started"))
        .into_iter()
        .filter(|f| f[kind] == instance)
        .filter_map(|f| f["pid"].as_u64().map(|p| p as u32))
        .collect()
}

fn events_of(lines: &[String], ty: &str) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == ty)
        .map(|mut v| {
            // JSON data may arrive as an object or as text.
            if let Some(text) = v["data"].as_str().map(str::to_owned) {
                v["data"] = serde_json::from_str(&text).unwrap_or(Value::String(text));
            }
            v
        })
        .collect()
}

fn count_started(lines: &Lines, kind: &str, instance: &str) -> usize {
    started_pids(&lines.snapshot(), kind, instance).len()
}

const BASE: &str = "
sources:
  - { name: ticks, plugin: tick, config: { interval: 200ms } }
executors:
  - { name: echo, plugin: echo }
  - { name: faulty, plugin: faulty }
";

fn base_dir() -> TestDir {
    let dir = TestDir::new();
    install(&dir, "tick", "plugboard-tick");
    install(&dir, "echo", "plugboard-echo");
    install(&dir, "faulty", "plugboard-faulty");
    dir
}

/// Without a config every executor in the plugins directory gets an
/// instance (the embedded default): a binary dropped in answers at once.
#[test]
fn a_new_executor_binary_answers_at_once_and_nothing_else_restarts() {
    let dir = TestDir::new();
    install(&dir, "tick", "plugboard-tick");
    install(&dir, "echo", "plugboard-echo");
    let mut cmd = plugboard();
    cmd.args(["--log-format", "json", "--plugins-dir"])
        .arg(dir.plugins())
        .arg("--state-dir")
        .arg(dir.state())
        .arg("run");
    let host = Host::spawn(cmd);
    let echo = host.only_pid("executor", "echo");
    let tick = host.only_pid("source", "tick");
    let (_, reply) = host.command("faulty ok");
    assert_eq!(reply["status"], "unknown", "{reply}");

    // Copied straight to its final name: the host waits for the copy to finish.
    let dropped = std::time::Instant::now();
    install(&dir, "faulty", "plugboard-hotplugged");
    assert_eq!(host.wait_answers("faulty ok"), "ok\n");
    // A figure, not an assertion: debounce + settle + describe + start.
    eprintln!("hot plug: a dropped executor answered {:?} after the copy began", dropped.elapsed());
    host.only_pid("executor", "faulty");
    assert_eq!(host.only_pid("executor", "echo"), echo, "echo was restarted");
    assert_eq!(host.only_pid("source", "tick"), tick, "tick was restarted");
    assert_eq!(host.wait_answers("echo still here"), "still here\n");
    let reloaded = host.host_events("dev.plugboard.config.reloaded", 1);
    assert_eq!(reloaded[0]["data"]["added"], json!([{ "instance": "faulty", "kind": "executor" }]), "{reloaded:?}");
    assert_eq!(reloaded[0]["data"]["trigger"], "plugins directory changed");
}

#[test]
fn replacing_a_binary_restarts_only_its_instances() {
    let dir = base_dir();
    let host = Host::with_config(&dir, BASE);
    let echo = host.only_pid("executor", "echo");
    let faulty = host.only_pid("executor", "faulty");
    let ticks = host.only_pid("source", "ticks");

    let replaced = std::time::Instant::now();
    replace(&dir, "echo", "plugboard-echo");
    let pids = host.pids("executor", "echo", 2);
    eprintln!("hot plug: the replaced executor ran again {:?} after the rename", replaced.elapsed());
    assert_ne!(pids[1], echo);
    assert!(wait_gone(&[echo], DEADLINE).is_empty(), "the old echo process (pid {echo}) still runs");
    assert!(process_alive(pids[1]));
    assert_eq!(host.wait_answers("echo replaced"), "replaced\n");
    assert_eq!(host.only_pid("executor", "faulty"), faulty, "faulty was restarted");
    assert_eq!(host.only_pid("source", "ticks"), ticks, "ticks was restarted");
    let reloaded = host.host_events("dev.plugboard.config.reloaded", 1);
    let restarted = &reloaded[0]["data"]["restarted"];
    assert_eq!(restarted.as_array().map(Vec::len), Some(1), "{reloaded:?}");
    assert_eq!(restarted[0]["instance"], "echo");
    assert!(restarted[0]["reason"].as_str().unwrap().contains("was replaced"), "{restarted}");
}

#[test]
fn removing_a_binary_stops_its_instances_until_it_is_back() {
    let dir = base_dir();
    let host = Host::with_config(&dir, BASE);
    let echo = host.only_pid("executor", "echo");
    let faulty = host.only_pid("executor", "faulty");
    let ticks = host.only_pid("source", "ticks");
    assert_eq!(host.wait_answers("faulty ok"), "ok\n");

    std::fs::remove_file(dir.plugins().join("plugboard-faulty")).unwrap();
    assert!(wait_gone(&[faulty], DEADLINE).is_empty(), "faulty (pid {faulty}) still runs after its binary was removed");
    wait_for("faulty commands to be refused", DEADLINE, || host.command("faulty ok").1["status"] == "unknown");
    let (_, reply) = host.command("faulty ok");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("unknown command \"faulty ok\""), "{reply}");
    let log = host.wait_log("the plugin executable is gone");
    assert_eq!(log["fields"]["executor"], "faulty", "{log}");
    assert_eq!(host.only_pid("executor", "echo"), echo);
    assert_eq!(host.only_pid("source", "ticks"), ticks);
    assert_eq!(host.wait_answers("echo hi"), "hi\n");

    // The config still names it: the instance comes back with its binary.
    install(&dir, "faulty", "plugboard-faulty");
    assert_eq!(host.wait_answers("faulty ok"), "ok\n");
    assert_eq!(host.pids("executor", "faulty", 2).len(), 2);
    assert_eq!(count_started(&host.run.stderr, "executor", "echo"), 1);
}

#[test]
fn adding_a_source_to_the_config_starts_only_it() {
    let dir = base_dir();
    let host = Host::with_config(&dir, BASE);
    let echo = host.only_pid("executor", "echo");
    let faulty = host.only_pid("executor", "faulty");
    let ticks = host.only_pid("source", "ticks");

    rewrite_config(
        &dir,
        &format!("{BASE}  - {{ name: say, plugin: echo, prefixes: [say] }}\n")
            .replace("sources:\n", "sources:\n  - { name: more, plugin: tick, config: { interval: 100ms } }\n"),
    );
    let more = host.only_pid("source", "more");
    host.run.stdout.wait_until("events of the new source", DEADLINE, |l| {
        l.iter().any(|x| x.contains("\"source\":\"/plugboard/tick/more\""))
    });
    assert_eq!(host.wait_answers("say hello"), "hello\n");
    assert_eq!(host.only_pid("executor", "echo"), echo);
    assert_eq!(host.only_pid("executor", "faulty"), faulty);
    assert_eq!(host.only_pid("source", "ticks"), ticks);
    assert!(process_alive(more));
    let reloaded = host.host_events("dev.plugboard.config.reloaded", 1);
    assert_eq!(
        reloaded[0]["data"]["added"],
        json!([{ "instance": "more", "kind": "source" }, { "instance": "say", "kind": "executor" }]),
        "{reloaded:?}"
    );
    assert_eq!(reloaded[0]["data"]["trigger"], "config file changed");

    // Removing it again stops only it.
    rewrite_config(&dir, BASE);
    assert!(wait_gone(&[more], DEADLINE).is_empty(), "the removed source (pid {more}) still runs");
    wait_for("say to be unknown", DEADLINE, || host.command("say x").1["status"] == "unknown");
    assert_eq!(host.only_pid("source", "ticks"), ticks);
}

#[test]
fn a_broken_config_is_rejected_and_everything_keeps_running() {
    let dir = base_dir();
    let host = Host::with_config(&dir, BASE);
    let echo = host.only_pid("executor", "echo");
    let ticks = host.only_pid("source", "ticks");
    let config = dir.path().join("plugboard.yaml");

    // A YAML error: rejected with file, line and column.
    rewrite_config(&dir, &format!("{BASE}  - {{ name: say, plugin: echo, prefixes: [say]\n"));
    let log = host.wait_log("config rejected");
    assert_eq!(log["level"], "ERROR", "{log}");
    let message = log["fields"]["message"].as_str().unwrap();
    assert!(message.contains(&config.display().to_string()), "{message}");
    assert!(message.contains(": line ") && message.contains(" column "), "{message}");
    let rejected = host.host_events("dev.plugboard.config.rejected", 1);
    let error = rejected[0]["data"]["error"].as_str().unwrap();
    assert!(error.contains(": line ") && error.contains(" column "), "{rejected:?}");

    // A config that parses but does not check against the plugins.
    rewrite_config(&dir, &format!("{BASE}  - {{ name: say, plugin: nosuch, prefixes: [say] }}\n"));
    let rejected = host.host_events("dev.plugboard.config.rejected", 2);
    let error = rejected[1]["data"]["error"].as_str().unwrap();
    assert!(error.contains("executors[2] \"say\": unknown plugin \"nosuch\""), "{error}");
    assert!(error.contains(&config.display().to_string()), "{error}");

    // Everything kept running, untouched.
    assert_eq!(host.wait_answers("echo alive"), "alive\n");
    assert_eq!(host.only_pid("executor", "echo"), echo);
    assert_eq!(host.only_pid("source", "ticks"), ticks);
    assert!(log_events(&host.run.stderr.snapshot(), "config reloaded").is_empty());

    // Fixed, it applies.
    rewrite_config(&dir, &format!("{BASE}  - {{ name: say, plugin: echo, prefixes: [say] }}\n"));
    assert_eq!(host.wait_answers("say fixed"), "fixed\n");
    assert_eq!(host.only_pid("executor", "echo"), echo);
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let dir = base_dir();
    let yaml = format!("reload: {{ watch: false }}\n{BASE}");
    let host = Host::with_config(&dir, &yaml);
    let echo = host.only_pid("executor", "echo");
    let ticks = host.only_pid("source", "ticks");

    rewrite_config(&dir, &format!("{yaml}  - {{ name: say, plugin: echo, prefixes: [say] }}\n"));
    host.run.signal(nix::sys::signal::Signal::SIGHUP);
    assert_eq!(host.wait_answers("say after hup"), "after hup\n");
    let reloaded = host.host_events("dev.plugboard.config.reloaded", 1);
    assert_eq!(reloaded.len(), 1, "watching is off: only SIGHUP reloads: {reloaded:?}");
    assert_eq!(reloaded[0]["data"]["trigger"], "SIGHUP");
    assert_eq!(host.only_pid("executor", "echo"), echo);
    assert_eq!(host.only_pid("source", "ticks"), ticks);
}

/// A source restarted by a reload resumes from its cursor: every event once,
/// none produced twice (the store would hide duplicates from sinks, its
/// counters do not).
#[test]
fn a_restarted_source_resumes_from_its_cursor() {
    let dir = TestDir::new();
    install(&dir, "range", "plugboard-range");
    install(&dir, "echo", "plugboard-echo");
    let host = Host::with_config(
        &dir,
        "sources: [{ name: nums, plugin: range, config: { limit: 200, interval: 50ms } }]\nexecutors: [{ name: echo, plugin: echo }]\n",
    );
    let nums = |lines: &[String]| -> Vec<u64> {
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "dev.plugboard.range")
            .filter_map(|v| v["data"]["index"].as_u64())
            .collect()
    };
    host.run.stdout.wait_until("10 range events", DEADLINE, |l| nums(l).len() >= 10);
    let first = host.only_pid("source", "nums");

    replace(&dir, "range", "plugboard-range");
    let pids = host.pids("source", "nums", 2);
    assert_ne!(pids[1], first);
    let lines = host.run.stdout.wait_until("all 200 range events", DEADLINE, |l| nums(l).len() >= 200);
    let mut seen = nums(&lines);
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<u64>>());
    let stats = plugboard_tests::stats(&host.addr);
    assert_eq!(stats["sources"]["nums"]["duplicates"], 0, "the restarted source started over: {stats}");
    assert_eq!(stats["sources"]["nums"]["received"], 200, "{stats}");
}

// ---- Sinks and routes on reload -------------------------------------------

/// A range source (ids `{instance}-{index}`) steady enough to watch sinks
/// fill while the config changes under it.
fn range_source(name: &str) -> String {
    format!("  - {{ name: {name}, plugin: range, config: {{ limit: 1000000, interval: 20ms }} }}\n")
}

/// A directory with the range source and the recorder (a plugin sink).
fn sink_dir() -> TestDir {
    let dir = TestDir::new();
    install(&dir, "range", "plugboard-range");
    install(&dir, "recorder", "plugboard-recorder");
    dir
}

/// Host events about config reloads go to the `ops` file sink (stdout stays quiet).
const OPS_SINK: &str = "  - { name: ops, file: { path: ops.jsonl } }\n";
const OPS_ROUTE: &str =
    "  - { name: ops, sources: [plugboard], filters: [{ prefix: { type: dev.plugboard.config. } }], sinks: [ops] }\n";

/// The indices of `instance`'s range events in a JSON-lines file, in file order.
fn indices(path: &std::path::Path, instance: &str) -> Vec<u64> {
    let prefix = format!("{instance}-");
    json_lines(path).iter().filter_map(|e| e["id"].as_str()?.strip_prefix(&prefix)?.parse().ok()).collect()
}

/// Waits until `path` holds at least `n` distinct events of `instance`;
/// returns their indices (duplicates included, in file order).
fn wait_indices(path: &std::path::Path, instance: &str, n: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    wait_for(&format!("{n} events of {instance} in {}", path.display()), DEADLINE, || {
        seen = indices(path, instance);
        distinct(seen.clone()).len() >= n
    });
    seen
}

/// Indices, deduplicated (delivery is at-least-once) and sorted.
fn distinct(mut seen: Vec<u64>) -> Vec<u64> {
    seen.sort_unstable();
    seen.dedup();
    seen
}

/// Asserts that `seen` holds every index from `first` to its largest one.
fn assert_no_gap(seen: Vec<u64>, first: u64, what: &str) {
    let seen = distinct(seen);
    let last = *seen.last().unwrap_or_else(|| panic!("{what}: no events"));
    assert_eq!(seen, (first..=last).collect::<Vec<u64>>(), "{what}: events missing");
}

impl Host {
    /// Waits for the `n`-th "config reloaded" log line.
    fn wait_reloads(&self, n: usize) {
        self.run.stderr.wait_until(&format!("{n} applied reloads"), DEADLINE, |l| {
            l.iter().filter(|x| x.contains("\"config reloaded: ")).count() >= n
        });
    }
}

#[test]
fn an_added_sink_and_its_route_receive_from_then_on_and_the_other_sinks_are_untouched() {
    let dir = sink_dir();
    let (keep, rec, added, ops) = (
        dir.path().join("keep.jsonl"),
        dir.path().join("rec.jsonl"),
        dir.path().join("new.jsonl"),
        dir.path().join("ops.jsonl"),
    );
    let sinks = format!(
        "sinks:\n  - {{ name: keep, file: {{ path: keep.jsonl }} }}\n  - {{ name: rec, plugin: recorder, config: {{ path: {} }} }}\n{OPS_SINK}",
        rec.display()
    );
    let routes = format!("routes:\n  - {{ name: all, sources: [nums], sinks: [keep, rec] }}\n{OPS_ROUTE}");
    let base = format!("sources:\n{}{sinks}{routes}", range_source("nums"));
    let host = Host::with_config(&dir, &base);
    wait_indices(&keep, "nums", 10);
    let rec_pid = host.only_pid("sink", "rec");
    let nums_pid = host.only_pid("source", "nums");

    let with_new = format!("{base}  - {{ name: to-new, sources: [nums], sinks: [new] }}\n")
        .replace(OPS_SINK, &format!("{OPS_SINK}  - {{ name: new, file: {{ path: new.jsonl }} }}\n"));
    rewrite_config(&dir, &with_new);
    let arrived = wait_indices(&added, "nums", 20);
    // From where it was added on, every event of the source, none skipped.
    assert_no_gap(arrived.clone(), distinct(arrived.clone())[0], "the added sink");
    assert!(distinct(arrived)[0] > 0, "the added sink started with the events stored from then on");
    // The others are untouched: same process, nothing missing.
    assert_eq!(host.only_pid("sink", "rec"), rec_pid, "the plugin sink was restarted");
    assert_eq!(host.only_pid("source", "nums"), nums_pid, "the source was restarted");
    let newest = *distinct(indices(&added, "nums")).last().unwrap();
    let keep_seen = wait_indices(&keep, "nums", newest as usize + 1);
    assert_no_gap(keep_seen, 0, "the existing file sink");
    let rec_seen = wait_indices(&rec, "nums", newest as usize + 1);
    assert_no_gap(rec_seen, 0, "the existing plugin sink");

    let reloads = json_lines(&ops);
    let reloaded: Vec<&Value> = reloads.iter().filter(|e| e["type"] == "dev.plugboard.config.reloaded").collect();
    assert_eq!(reloaded.len(), 1, "{reloads:?}");
    let data = &reloaded[0]["data"];
    assert_eq!(data["added"], json!([{ "instance": "new", "kind": "sink" }]), "{data}");
    assert_eq!(data["routes_changed"], true, "{data}");
    assert_eq!(data["needs_restart"], json!([]), "sinks and routes apply live: {data}");
}

#[test]
fn a_removed_sink_stops_and_its_plugin_is_gone_while_the_others_keep_receiving() {
    let dir = sink_dir();
    let (keep, rec, gone) =
        (dir.path().join("keep.jsonl"), dir.path().join("rec.jsonl"), dir.path().join("gone.jsonl"));
    let base = format!(
        "sources:\n{}sinks:\n  - {{ name: keep, file: {{ path: keep.jsonl }} }}\n  - {{ name: gone, file: {{ path: gone.jsonl }} }}\n  - {{ name: rec, plugin: recorder, config: {{ path: {} }} }}\nroutes:\n  - {{ sinks: [keep, gone, rec] }}\n",
        range_source("nums"),
        rec.display()
    );
    let host = Host::with_config(&dir, &base);
    wait_indices(&gone, "nums", 5);
    wait_indices(&rec, "nums", 5);
    let rec_pid = host.only_pid("sink", "rec");

    let without = base
        .replace("  - { name: gone, file: { path: gone.jsonl } }\n", "")
        .replace(&format!("  - {{ name: rec, plugin: recorder, config: {{ path: {} }} }}\n", rec.display()), "")
        .replace("[keep, gone, rec]", "[keep]");
    assert_ne!(without, base);
    rewrite_config(&dir, &without);
    host.wait_reloads(1);
    // The reload is applied once the dispatchers stopped: nothing arrives after it.
    let gone_final = indices(&gone, "nums").len();
    let rec_final = indices(&rec, "nums").len();
    assert!(wait_gone(&[rec_pid], DEADLINE).is_empty(), "the removed plugin sink (pid {rec_pid}) still runs");
    plugboard_tests::procs::assert_no_zombie_or_orphan(host.run.pid(), &[rec_pid]);

    let before = distinct(indices(&keep, "nums")).len();
    let keep_seen = wait_indices(&keep, "nums", before + 20);
    assert_no_gap(keep_seen, 0, "the remaining sink");
    assert_eq!(indices(&gone, "nums").len(), gone_final, "the removed file sink still receives");
    assert_eq!(indices(&rec, "nums").len(), rec_final, "the removed plugin sink still receives");
    let stats = plugboard_tests::stats(&host.addr);
    let listed: Vec<&String> = stats["sinks"].as_object().unwrap().keys().collect();
    assert_eq!(listed, ["keep"], "{stats}");
    let plugins = plugboard_tests::http_client()
        .get(&format!("http://{}/v1/plugins", host.addr))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(!plugins.contains("\"rec\""), "the removed sink is still listed: {plugins}");
}

#[test]
fn replacing_a_sink_binary_restarts_only_that_sink_and_loses_nothing() {
    let dir = sink_dir();
    let (keep, rec) = (dir.path().join("keep.jsonl"), dir.path().join("rec.jsonl"));
    let base = format!(
        "sources:\n{}sinks:\n  - {{ name: keep, file: {{ path: keep.jsonl }} }}\n  - {{ name: rec, plugin: recorder, config: {{ path: {} }} }}\n",
        range_source("nums"),
        rec.display()
    );
    let host = Host::with_config(&dir, &base);
    wait_indices(&rec, "nums", 10);
    let first = host.only_pid("sink", "rec");
    let nums_pid = host.only_pid("source", "nums");

    replace(&dir, "recorder", "plugboard-recorder");
    let pids = host.pids("sink", "rec", 2);
    assert_ne!(pids[1], first);
    assert!(wait_gone(&[first], DEADLINE).is_empty(), "the old sink process (pid {first}) still runs");
    plugboard_tests::procs::assert_no_zombie_or_orphan(host.run.pid(), &[first]);
    // Every event stored before, during and after the replace reaches it (at least once).
    let at_replace = *distinct(indices(&keep, "nums")).last().unwrap();
    let seen = wait_indices(&rec, "nums", at_replace as usize + 30);
    assert!(distinct(seen.clone()).last().copied().unwrap_or(0) > at_replace + 10, "{seen:?}");
    assert_no_gap(seen, 0, "the restarted plugin sink");
    assert_no_gap(indices(&keep, "nums"), 0, "the file sink");
    assert_eq!(host.only_pid("source", "nums"), nums_pid, "the source was restarted");
    assert_eq!(host.pids("sink", "rec", 2).len(), 2, "the sink restarted more than once");
}

#[test]
fn a_route_change_changes_what_arrives_without_restarting_any_plugin() {
    let dir = sink_dir();
    let (picked, rec) = (dir.path().join("picked.jsonl"), dir.path().join("rec.jsonl"));
    let base = format!(
        "sources:\n{}{}sinks:\n  - {{ name: picked, file: {{ path: picked.jsonl }} }}\n  - {{ name: rec, plugin: recorder, config: {{ path: {} }} }}\nroutes:\n  - {{ name: pick, sources: [a], sinks: [picked] }}\n  - {{ name: everything, sinks: [rec] }}\n",
        range_source("a"),
        range_source("b"),
        rec.display()
    );
    let host = Host::with_config(&dir, &base);
    wait_indices(&picked, "a", 10);
    let pids = [host.only_pid("sink", "rec"), host.only_pid("source", "a"), host.only_pid("source", "b")];
    assert!(indices(&picked, "b").is_empty(), "the route picks only a");

    rewrite_config(&dir, &base.replace("sources: [a], sinks: [picked]", "sources: [b], sinks: [picked]"));
    wait_indices(&picked, "b", 10);
    // One step: once b's events arrive, a's do not any more.
    let ids = plugboard_tests::ids(&json_lines(&picked));
    let first_b = ids.iter().position(|id| id.starts_with("b-")).unwrap();
    let late_a: Vec<&String> = ids[first_b..].iter().filter(|id| id.starts_with("a-")).collect();
    assert!(late_a.is_empty(), "events of a after the swap: {late_a:?}");
    assert_no_gap(indices(&picked, "b"), distinct(indices(&picked, "b"))[0], "b after the swap");
    assert_no_gap(indices(&picked, "a"), 0, "a before the swap");
    // Nothing restarted, and the other sink's routes still hold.
    assert_eq!(
        [host.only_pid("sink", "rec"), host.only_pid("source", "a"), host.only_pid("source", "b")],
        pids,
        "a plugin was restarted by a route change"
    );
    let newest = *distinct(indices(&picked, "b")).last().unwrap();
    assert_no_gap(wait_indices(&rec, "b", newest as usize + 1), 0, "the unchanged route");
}

#[test]
fn a_source_added_by_reload_is_counted_and_matched_by_routes_naming_it() {
    let dir = sink_dir();
    let (x, y) = (dir.path().join("x.jsonl"), dir.path().join("y.jsonl"));
    let base = format!(
        "sources:\n{}sinks:\n  - {{ name: x, file: {{ path: x.jsonl }} }}\n  - {{ name: y, file: {{ path: y.jsonl }} }}\nroutes:\n  - {{ name: to-x, sources: [a], sinks: [x] }}\n",
        range_source("a")
    );
    let host = Host::with_config(&dir, &base);
    wait_indices(&x, "a", 5);
    let a_pid = host.only_pid("source", "a");

    rewrite_config(
        &dir,
        &format!("{base}  - {{ name: late-only, sources: [late], sinks: [y] }}\n")
            .replace("sources:\n", &format!("sources:\n{}", range_source("late"))),
    );
    // Added with its route in one reload: every one of its events arrives.
    let seen = wait_indices(&y, "late", 20);
    assert_no_gap(seen, 0, "the added source in the sink its route names");
    assert!(indices(&y, "a").is_empty(), "the route names late only");
    assert!(indices(&x, "late").is_empty(), "x's route names a only");
    assert_eq!(host.only_pid("source", "a"), a_pid);

    let stats = plugboard_tests::stats(&host.addr);
    let late = &stats["sources"]["late"];
    assert!(late["received"].as_u64().unwrap_or(0) >= 20, "{stats}");
    assert!(late["stored"].as_u64().unwrap_or(0) >= 20, "{stats}");
    let samples = plugboard_tests::metrics::scrape(&host.addr);
    let received = plugboard_tests::metrics::value(&samples, "plugboard_events_received_total", &[("source", "late")]);
    assert!(received.unwrap_or(0.0) >= 20.0, "plugboard_events_received_total{{source=late}}: {received:?}");
    let stored = plugboard_tests::metrics::value(&samples, "plugboard_events_stored_total", &[("source", "late")]);
    assert!(stored.unwrap_or(0.0) >= 20.0, "plugboard_events_stored_total{{source=late}}: {stored:?}");
    assert!(
        plugboard_tests::metrics::value(&samples, "plugboard_queue_depth", &[("source", "late")]).is_some(),
        "no queue depth for the added source"
    );
}

#[test]
fn a_removed_sink_binary_stops_its_sink_until_it_is_back_and_it_resumes_from_its_cursor() {
    let dir = sink_dir();
    let (keep, rec) = (dir.path().join("keep.jsonl"), dir.path().join("rec.jsonl"));
    let base = format!(
        "sources:\n{}sinks:\n  - {{ name: keep, file: {{ path: keep.jsonl }} }}\n  - {{ name: rec, plugin: recorder, config: {{ path: {} }} }}\nroutes:\n  - {{ sinks: [keep, rec] }}\n",
        range_source("nums"),
        rec.display()
    );
    let host = Host::with_config(&dir, &base);
    wait_indices(&rec, "nums", 10);
    let first = host.only_pid("sink", "rec");

    std::fs::remove_file(dir.plugins().join("plugboard-recorder")).unwrap();
    assert!(wait_gone(&[first], DEADLINE).is_empty(), "the sink (pid {first}) still runs after its binary was removed");
    let log = host.wait_log("the plugin executable is gone");
    assert_eq!(log["fields"]["sink"], "rec", "{log}");
    let before = distinct(indices(&keep, "nums")).len();
    wait_indices(&keep, "nums", before + 20);

    // Back: it starts again and catches up from where it stopped.
    install(&dir, "recorder", "plugboard-recorder");
    let pids = host.pids("sink", "rec", 2);
    assert_ne!(pids[1], first);
    let newest = *distinct(indices(&keep, "nums")).last().unwrap();
    assert_no_gap(wait_indices(&rec, "nums", newest as usize + 1), 0, "the sink that came back");
    assert_no_gap(indices(&keep, "nums"), 0, "the file sink");
}

// ------------------------------------------------ the command side of a reload

/// Starts `command` on a thread; returns its (status, reply) when joined.
fn command_in_background(host: &Host, command: &str) -> std::thread::JoinHandle<(u16, Value)> {
    let url = format!("http://{}/v1/commands", host.addr);
    let body = json!({ "command": command, "user": "ops" });
    std::thread::spawn(move || post_command(&url, body, None))
}

const SLOW: &str = "faulty sleep 4s";

#[test]
fn a_command_running_when_its_executor_config_changes_finishes_on_the_old_instance() {
    let dir = base_dir();
    let host = Host::with_config(&dir, BASE);
    let old = host.only_pid("executor", "faulty");
    let echo = host.only_pid("executor", "echo");
    let slow = command_in_background(&host, SLOW);
    host.wait_log("sleeping for 4s");

    rewrite_config(
        &dir,
        &BASE.replace("{ name: faulty, plugin: faulty }", "{ name: faulty, plugin: faulty, config: { arg: x } }"),
    );
    let pids = host.pids("executor", "faulty", 2);
    assert_ne!(pids[1], old);
    // New commands run on the new instance at once, while the old one drains.
    assert_eq!(host.wait_answers("faulty pid"), format!("pid {}\n", pids[1]));

    let (status, reply) = slow.join().unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["output"], format!("slept in pid {old}\n"), "{reply}");
    assert!(wait_gone(&[old], DEADLINE).is_empty(), "the old faulty (pid {old}) still runs after its command finished");
    assert_eq!(host.only_pid("executor", "echo"), echo, "echo was restarted");
    let reloaded = host.host_events("dev.plugboard.config.reloaded", 1);
    assert_eq!(reloaded[0]["data"]["restarted"][0]["instance"], "faulty", "{reloaded:?}");
}

#[test]
fn a_command_running_when_its_executor_is_removed_finishes_and_the_next_is_unknown() {
    let dir = base_dir();
    let host = Host::with_config(&dir, BASE);
    let old = host.only_pid("executor", "faulty");
    let slow = command_in_background(&host, SLOW);
    host.wait_log("sleeping for 4s");

    rewrite_config(&dir, &BASE.replace("  - { name: faulty, plugin: faulty }\n", ""));
    wait_for("faulty commands to be unknown", DEADLINE, || host.command("faulty ok").1["status"] == "unknown");
    let (status, reply) = host.command("faulty ok");
    assert_eq!(status, 404, "{reply}");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("unknown command \"faulty ok\""), "{reply}");
    assert!(error.contains("Known prefixes: echo"), "{reply}");

    let (status, reply) = slow.join().unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["output"], format!("slept in pid {old}\n"), "{reply}");
    assert!(wait_gone(&[old], DEADLINE).is_empty(), "the removed faulty (pid {old}) still runs");
}

#[test]
fn a_command_outliving_the_drain_ends_unavailable_and_the_log_says_so() {
    let dir = base_dir();
    let yaml = format!("shutdown: {{ drain_timeout: 1s }}\n{BASE}");
    let host = Host::with_config(&dir, &yaml);
    let old = host.only_pid("executor", "faulty");
    let slow = command_in_background(&host, "faulty sleep 60s");
    host.wait_log("sleeping for 1m");

    rewrite_config(
        &dir,
        &yaml.replace("{ name: faulty, plugin: faulty }", "{ name: faulty, plugin: faulty, config: { arg: y } }"),
    );
    let (status, reply) = slow.join().unwrap();
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["status"], "unavailable", "{reply}");
    let log = host.wait_log("commands still running on the old instance after shutdown.drain_timeout");
    assert_eq!(log["fields"]["executor"], "faulty", "{log}");
    assert!(wait_gone(&[old], DEADLINE).is_empty(), "the old faulty (pid {old}) still runs");
    assert_eq!(host.wait_answers("faulty ok"), "ok\n");
}

#[test]
fn a_permission_change_applies_to_the_next_command() {
    let dir = base_dir();
    let policies = |commands: &str| {
        format!(
            "{BASE}commands:\n  policies:\n    - {{ name: ops, effect: allow, users: [ops], commands: [{commands}] }}\n"
        )
    };
    let host = Host::with_config(&dir, &policies("echo"));
    let echo = host.only_pid("executor", "echo");
    let faulty = host.only_pid("executor", "faulty");
    assert_eq!(host.wait_answers("echo allowed"), "allowed\n");
    let (status, reply) = host.command("faulty ok");
    assert_eq!(status, 403, "{reply}");
    assert!(
        reply["error"].as_str().unwrap_or_default().starts_with("permission denied: ops may not run \"faulty ok\""),
        "{reply}"
    );

    rewrite_config(&dir, &policies("echo, faulty"));
    assert_eq!(host.wait_answers("faulty ok"), "ok\n");
    let reloaded = host.host_events("dev.plugboard.config.reloaded", 1);
    assert_eq!(reloaded[0]["data"]["needs_restart"], json!([]), "{reloaded:?}");

    // And back: denied again.
    rewrite_config(&dir, &policies("faulty"));
    wait_for("echo to be denied", DEADLINE, || host.command("echo x").0 == 403);
    assert_eq!(host.command("echo x").1["status"], "denied");
    // No instance was restarted for it.
    assert_eq!(host.only_pid("executor", "echo"), echo);
    assert_eq!(host.only_pid("executor", "faulty"), faulty);
}

#[test]
fn a_changed_automation_runs_its_new_command_for_the_next_event() {
    let dir = base_dir();
    let automation = |word: &str| {
        format!(
            "{BASE}automations:\n  - {{ name: greet, when: {{ types: [dev.test.ping] }}, command: \"echo {word} {{{{ event.id }}}}\" }}\n"
        )
    };
    let host = Host::with_config(&dir, &automation("first"));
    let outputs = |host: &Host, n: usize| host.host_events("dev.plugboard.command.output", n);
    post_event(&host.addr, None, "p1");
    assert_eq!(outputs(&host, 1)[0]["data"]["output"], "first p1\n");

    rewrite_config(&dir, &automation("second"));
    host.host_events("dev.plugboard.config.reloaded", 1);
    post_event(&host.addr, None, "p2");
    let out = outputs(&host, 2);
    assert_eq!(out[1]["data"]["output"], "second p2\n", "{out:?}");
    assert_eq!(out[1]["data"]["automation"], "greet");
    assert_eq!(out.len(), 2, "one run per event: {out:?}");
}

#[test]
fn an_automation_added_by_reload_runs_for_events_stored_from_then_on() {
    let dir = base_dir();
    let greet = "  - { name: greet, when: { types: [dev.test.ping] }, command: \"echo greet {{ event.id }}\" }\n";
    let shout = "  - { name: shout, when: { types: [dev.test.ping] }, command: \"echo shout {{ event.id }}\" }\n";
    let host = Host::with_config(&dir, &format!("{BASE}automations:\n{greet}"));
    let outputs = |host: &Host, n: usize| host.host_events("dev.plugboard.command.output", n);
    post_event(&host.addr, None, "p1");
    assert_eq!(outputs(&host, 1)[0]["data"]["output"], "greet p1\n");

    rewrite_config(&dir, &format!("{BASE}automations:\n{greet}{shout}"));
    host.host_events("dev.plugboard.config.reloaded", 1);
    post_event(&host.addr, None, "p2");
    let out = outputs(&host, 3);
    let mut runs: Vec<(String, String)> = out
        .iter()
        .map(|e| {
            let data = &e["data"];
            (
                data["automation"].as_str().unwrap_or_default().to_owned(),
                data["output"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    runs.sort();
    assert_eq!(
        runs,
        [
            ("greet".to_owned(), "greet p1\n".to_owned()),
            ("greet".to_owned(), "greet p2\n".to_owned()),
            ("shout".to_owned(), "shout p2\n".to_owned()),
        ],
        "the added automation runs for p2 only (it reads from the moment it is added): {out:?}"
    );
}

/// POSTs a structured CloudEvent of type `dev.test.ping` to `/v1/events`; returns the status.
fn post_event(addr: &str, token: Option<&str>, id: &str) -> u16 {
    let event = json!({ "specversion": "1.0", "id": id, "source": "/test", "type": "dev.test.ping" });
    let mut request = plugboard_tests::http_client()
        .post(&format!("http://{addr}/v1/events"))
        .header("content-type", "application/cloudevents+json");
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    request.send(event.to_string()).expect("POST /v1/events").status().as_u16()
}

/// POSTs `{}` to `/v1/sources/{name}`: (status, body).
fn post_source(addr: &str, name: &str, token: &str) -> (u16, String) {
    let mut response = plugboard_tests::http_client()
        .post(&format!("http://{addr}/v1/sources/{name}"))
        .header("authorization", &format!("Bearer {token}"))
        .header("content-type", "application/json")
        .send("{}")
        .expect("POST /v1/sources");
    (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn tokens_and_source_endpoints_follow_the_config() {
    let dir = base_dir();
    install(&dir, "webhook", "plugboard-webhook");
    let with = |token: &str, extra: &str| format!("http: {{ token: {token} }}\n{BASE}{extra}");
    let host = Host::with_config(&dir, &with("old-token", ""));
    let url = format!("http://{}/v1/commands", host.addr);
    let run = |token: &str| post_command(&url, json!({ "command": "echo hi" }), Some(token)).0;
    assert_eq!(run("old-token"), 200);
    assert_eq!(run("new-token"), 401);
    let (status, body) = post_source(&host.addr, "hook", "new-token");
    assert_eq!(status, 404, "{body}");

    // New token, and a webhook source added.
    let hook = "  - { name: hook, plugin: webhook }\n";
    rewrite_config(&dir, &with("new-token", "").replace("sources:\n", &format!("sources:\n{hook}")));
    wait_for("the new token to be accepted", DEADLINE, || run("new-token") == 200);
    assert_eq!(run("old-token"), 401);
    assert_eq!(post_event(&host.addr, Some("old-token"), "t1"), 401);
    assert_eq!(post_event(&host.addr, Some("new-token"), "t2"), 202);
    let mut last = (0, String::new());
    wait_for("the added source to answer", DEADLINE, || {
        last = post_source(&host.addr, "hook", "new-token");
        (200..300).contains(&last.0)
    });
    assert_eq!(post_source(&host.addr, "hook", "old-token").0, 401);
    let reloaded = host.host_events("dev.plugboard.config.reloaded", 1);
    assert_eq!(reloaded[0]["data"]["needs_restart"], json!([]), "{reloaded:?}");

    // Removed: 404, naming what exists.
    rewrite_config(&dir, &with("new-token", ""));
    wait_for("the removed source to answer 404", DEADLINE, || post_source(&host.addr, "hook", "new-token").0 == 404);
    let (_, body) = post_source(&host.addr, "hook", "new-token");
    assert!(body.contains("no source instance \\\"hook\\\"; sources: ticks"), "{body}");
}

/// Whether `GET /healthz` answers on `addr`.
fn healthz(addr: &str) -> bool {
    plugboard_tests::http_client().get(&format!("http://{addr}/healthz")).call().is_ok_and(|r| r.status() == 200)
}

#[test]
fn a_new_listen_address_moves_the_api_and_a_busy_one_keeps_the_old() {
    let dir = base_dir();
    // Without PLUGBOARD_LISTEN (the command line wins over the config, at start and on reload).
    let config = dir.write_config(&format!("http: {{ listen: '127.0.0.1:0' }}\n{BASE}"));
    let mut cmd = plugboard();
    cmd.env_remove("PLUGBOARD_LISTEN").args(["--log-format", "json", "run", "--config"]).arg(&config);
    let host = Host::spawn(cmd);
    let echo = host.only_pid("executor", "echo");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let moved = format!("127.0.0.1:{port}");
    rewrite_config(&dir, &format!("http: {{ listen: '{moved}' }}\n{BASE}"));
    wait_for("the API to answer on the new address", DEADLINE, || healthz(&moved));
    wait_for("the old address to stop answering", DEADLINE, || !healthz(&host.addr));
    let (status, reply) =
        post_command(&format!("http://{moved}/v1/commands"), json!({ "command": "echo moved" }), None);
    assert_eq!((status, reply["output"].as_str()), (200, Some("moved\n")), "{reply}");
    let reloaded = host.host_events("dev.plugboard.config.reloaded", 1);
    assert_eq!(reloaded[0]["data"]["needs_restart"], json!([]), "{reloaded:?}");
    assert_eq!(reloaded[0]["data"]["http_error"], Value::Null, "{reloaded:?}");

    // An address already in use: that part is refused, the API stays where it is.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    rewrite_config(&dir, &format!("http: {{ listen: '{busy_addr}' }}\n{BASE}"));
    let log = host.wait_log("http.listen not applied");
    let message = log["fields"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("cannot listen on {busy_addr}")), "{log}");
    assert!(message.contains(&format!("still listening on {moved}")), "{log}");
    let reloaded = host.host_events("dev.plugboard.config.reloaded", 2);
    assert!(reloaded[1]["data"]["http_error"].as_str().unwrap_or_default().contains(&busy_addr), "{reloaded:?}");
    assert!(healthz(&moved));
    assert_eq!(host.only_pid("executor", "echo"), echo);
    drop(busy);
}

// ------------------------------------------------------ plugin name clashes

#[test]
fn two_executables_of_one_plugin_name_are_named_at_start_in_plugins_and_on_reload() {
    // Neither file is named for the plugin (`plugboard-echo`), so neither is the obvious one.
    let dir = TestDir::new();
    install(&dir, "tick", "plugboard-tick");
    install(&dir, "faulty", "plugboard-faulty");
    let original = install(&dir, "echo", "plugboard-echo-old");
    let copy = install(&dir, "echo", "plugboard-echo-v2");

    // Start: refused, naming both files.
    let config = dir.write_config(BASE);
    let (code, _, stderr) = plugboard_tests::run_plugboard(&["run", "--config", config.to_str().unwrap()]);
    assert_ne!(code, Some(0), "{stderr}");
    let expected = format!(
        "plugin name \"echo\" is described by more than one executable: {} and {}",
        original.display(),
        copy.display()
    );
    assert!(stderr.contains(&format!("executors[0] \"echo\": {expected}")), "{stderr}");

    // `plugboard plugins` lists it as an error.
    let (code, stdout, _) =
        plugboard_tests::run_plugboard(&["--plugins-dir", dir.plugins().to_str().unwrap(), "plugins"]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.contains(&format!("error: {expected}")), "{stdout}");

    // Reload: a clash appearing under a running host is rejected; echo keeps running.
    std::fs::remove_file(&copy).unwrap();
    let host = Host::with_config(&dir, BASE);
    let echo = host.only_pid("executor", "echo");
    install(&dir, "echo", "plugboard-echo-v2");
    let rejected = host.host_events("dev.plugboard.config.rejected", 1);
    let error = rejected[0]["data"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&expected), "{rejected:?}");
    assert_eq!(host.wait_answers("echo still"), "still\n");
    assert_eq!(host.only_pid("executor", "echo"), echo);
    assert!(process_alive(echo));
}
