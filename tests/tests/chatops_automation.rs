//! Automations: a source event triggers a templated command whose output is
//! emitted as a `dev.plugboard.command.output` event.

use plugboard_tests::chatops::*;
use plugboard_tests::*;

#[test]
fn a_source_event_turns_into_a_command_whose_output_is_emitted() {
    let dir = TestDir::new();
    dir.add_plugin("range").add_plugin("echo");
    let host = start_host(
        &dir,
        r##"sources:
  - name: numbers
    plugin: range
    config: { limit: 3 }
executors:
  - name: echo
    plugin: echo
commands:
  policies:
    - { effect: allow, users: [robot], commands: [echo] }
automations:
  - name: announce
    when: { types: [dev.plugboard.range], sources: ["/plugboard/range/*"] }
    command: "echo event {{ event.id }} has index {{ event.data.index }}"
    user: robot
    channel: "#alerts"
  - name: forbidden
    when: { types: [dev.plugboard.range] }
    command: "echo {{ event.id }}"
    user: intruder
    once_within: 1h
"##,
    );
    let outputs = host.events_of_type("dev.plugboard.command.output", 4);
    let mut announced: Vec<String> = outputs
        .iter()
        .filter(|e| e["data"]["automation"] == "announce")
        .map(|e| e["data"]["output"].as_str().unwrap().to_owned())
        .collect();
    announced.sort();
    assert_eq!(
        announced,
        ["event numbers-0 has index 0\n", "event numbers-1 has index 1\n", "event numbers-2 has index 2\n"]
    );
    let first = outputs.iter().find(|e| e["data"]["automation"] == "announce").unwrap();
    assert_eq!(first["source"], "/plugboard/host");
    assert_eq!(first["subject"], "announce");
    assert_eq!(first["data"]["user"], "robot");
    assert_eq!(first["data"]["channel"], "#alerts");
    assert_eq!(first["data"]["exit_code"], 0);
    assert!(first["data"]["trigger"]["id"].as_str().unwrap().starts_with("numbers-"));
    assert_eq!(first["data"]["trigger"]["type"], "dev.plugboard.range");

    // The other automation runs as a user no policy allows: denied like a person would be,
    // and throttled to one run per hour.
    let forbidden: Vec<_> = outputs.iter().filter(|e| e["data"]["automation"] == "forbidden").collect();
    assert_eq!(forbidden.len(), 1, "{outputs:?}");
    assert_eq!(forbidden[0]["data"]["status"], "denied");
    let denied = host.events_of_type("dev.plugboard.command.denied", 1);
    assert_eq!(denied[0]["data"]["user"], "intruder");
    assert_eq!(denied[0]["data"]["platform"], "automation");
}

#[test]
fn a_route_narrows_an_automation_and_its_output_reaches_a_sink() {
    let dir = TestDir::new();
    dir.add_plugin("range").add_plugin("echo");
    let out = dir.path().join("outputs.jsonl");
    let config = dir.write_config(&format!(
        r#"sources:
  - {{ name: numbers, plugin: range, config: {{ limit: 5 }} }}
executors:
  - {{ name: echo, plugin: echo }}
commands:
  policies:
    - {{ effect: allow, users: [robot], commands: [echo] }}
automations:
  - {{ name: evens, command: "echo even {{{{ event.data.index }}}}", user: robot }}
routes:
  - sources: [numbers]
    condition: 'data.index % 2 == 0'
    automations: [evens]
  - filters: [{{ exact: {{ type: dev.plugboard.command.output }} }}]
    sinks: [outputs]
sinks:
  - {{ name: outputs, file: {{ path: {} }} }}
"#,
        out.display()
    ));
    let host = run_host(&config);
    wait_for("three automation outputs in the file sink", DEADLINE, || json_lines(&out).len() >= 3);
    let mut outputs: Vec<String> =
        json_lines(&out).iter().map(|e| e["data"]["output"].as_str().unwrap_or_default().to_owned()).collect();
    outputs.sort();
    assert_eq!(outputs, ["even 0\n", "even 2\n", "even 4\n"], "only the events the route's condition admits");
    for e in json_lines(&out) {
        assert_eq!(e["type"], "dev.plugboard.command.output");
        assert_eq!(e["subject"], "evens");
    }
    drop(host);
}
