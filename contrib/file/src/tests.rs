//! Real files in temp directories; every wait has a deadline.

use std::path::Path;
use std::time::Duration;

use plugboard_sdk::proto::event::attribute;
use plugboard_sdk::proto::io::cloudevents::v1::cloud_event::Data;
use plugboard_sdk::testing::{self, RunningSource};

use super::*;

const DEADLINE: Duration = Duration::from_secs(30);

fn data(event: &CloudEvent) -> serde_json::Value {
    match &event.data {
        Some(Data::TextData(t)) => serde_json::from_str(t).unwrap(),
        other => panic!("no JSON data: {other:?}"),
    }
}

async fn next(run: &mut RunningSource) -> (CloudEvent, String) {
    tokio::time::timeout(DEADLINE, run.next())
        .await
        .expect("an event within the deadline")
        .expect("the stream did not fail")
        .expect("the stream did not end")
}

/// Skips events until one matches: an in-place write may be read half-done
/// (truncated, then written) and reported in between.
async fn next_matching(run: &mut RunningSource, what: &str, pred: impl Fn(&CloudEvent) -> bool) -> CloudEvent {
    let wait = async {
        loop {
            let (event, _) = run.next().await.expect("the stream did not fail").expect("the stream did not end");
            if pred(&event) {
                return event;
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.unwrap_or_else(|_| panic!("no event {what} within {DEADLINE:?}"))
}

/// Replaces a file whole (write a temporary file, rename it over), so no
/// reader ever sees it half-written.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn subject(event: &CloudEvent) -> &str {
    attribute(event, "subject").unwrap_or_default()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_is_reported_at_start_in_config_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, gone, bad) = (
        dir.path().join("a.yaml"),
        dir.path().join("b.json"),
        dir.path().join("gone.yml"),
        dir.path().join("bad.yaml"),
    );
    std::fs::write(&a, "env: prod\nhosts: [web1, web2]\n").unwrap();
    std::fs::write(&b, r#"{"limit": 3}"#).unwrap();
    std::fs::write(&bad, "key: : :\n").unwrap();
    let config = serde_json::json!({"files": [a, b, gone, bad]});
    let events = testing::collect_events(FileSource, config, None, 4).await.unwrap();

    let (ea, _) = &events[0];
    assert_eq!((ea.r#type.as_str(), subject(ea)), (TYPE_LOADED, path_str(&a)));
    assert_eq!(data(ea), serde_json::json!({"env": "prod", "hosts": ["web1", "web2"]}));
    assert_eq!(ea.id.len(), 32);
    assert_eq!(ea.source, "/plugboard/file/test");
    assert_eq!(data(&events[1].0), serde_json::json!({"limit": 3}));

    let (missing, _) = &events[2];
    assert_eq!((missing.r#type.as_str(), subject(missing)), (TYPE_MISSING, path_str(&gone)));
    assert_eq!(data(missing)["path"], path_str(&gone));

    let (invalid, cursor) = &events[3];
    assert_eq!(invalid.r#type, TYPE_INVALID);
    let error = data(invalid)["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("invalid YAML: "), "{error}");

    // The last cursor holds every file's state.
    let states: BTreeMap<String, String> = serde_json::from_str(cursor).unwrap();
    assert_eq!(states.len(), 4);
    assert_eq!(states[path_str(&gone)], "missing");
    assert!(states[path_str(&a)].starts_with("sha256:"));
    assert!(states[path_str(&bad)].starts_with("invalid:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_reloaded_and_unchanged_content_is_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.json"));
    std::fs::write(&a, "v: 1\n").unwrap();
    let config = serde_json::json!({"files": [a, b], "debounce": "20ms"});
    let mut run = testing::start_source(FileSource, config, None);
    let (first, _) = next(&mut run).await;
    assert_eq!((first.r#type.as_str(), data(&first)), (TYPE_LOADED, serde_json::json!({"v": 1})));
    assert_eq!(next(&mut run).await.0.r#type, TYPE_MISSING, "b.json does not exist yet");

    // Written in place.
    std::fs::write(&a, "v: 2\n").unwrap();
    let e = next_matching(&mut run, "with v: 2", |e| data(e) == serde_json::json!({"v": 2})).await;
    assert_eq!((e.r#type.as_str(), subject(&e)), (TYPE_LOADED, path_str(&a)));

    // Replaced by a rename, the way editors and deploy tools save.
    replace(&a, "v: 3\n");
    let (e, _) = next(&mut run).await;
    assert_eq!(data(&e), serde_json::json!({"v": 3}));

    // Broken, then fixed.
    replace(&a, "v: [\n");
    let (e, _) = next(&mut run).await;
    assert_eq!((e.r#type.as_str(), data(&e)["path"].as_str()), (TYPE_INVALID, Some(path_str(&a))));
    replace(&a, "v: 4\n");
    assert_eq!(data(&next(&mut run).await.0), serde_json::json!({"v": 4}));

    // The same content again is no change; the next event is b's creation.
    replace(&a, "v: 4\n");
    replace(&b, r#"{"b": true}"#);
    let (e, _) = next(&mut run).await;
    assert_eq!((e.r#type.as_str(), subject(&e)), (TYPE_LOADED, path_str(&b)));

    // Deleted, then back.
    std::fs::remove_file(&a).unwrap();
    let (e, _) = next(&mut run).await;
    assert_eq!((e.r#type.as_str(), subject(&e)), (TYPE_MISSING, path_str(&a)));
    replace(&a, "v: 5\n");
    assert_eq!(data(&next(&mut run).await.0), serde_json::json!({"v": 5}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_only_files_changed_since_the_cursor_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&a, "a: 1\n").unwrap();
    std::fs::write(&b, "b: 1\n").unwrap();
    let config = serde_json::json!({"files": [a, b]});
    let events = testing::collect_events(FileSource, config.clone(), None, 2).await.unwrap();
    let cursor = events[1].1.clone();

    std::fs::write(&b, "b: 2\n").unwrap();
    let mut run = testing::start_source(FileSource, config, Some(cursor));
    let (e, _) = next(&mut run).await;
    assert_eq!((subject(&e), data(&e)), (path_str(&b), serde_json::json!({"b": 2})), "a.yaml is unchanged");
}

#[tokio::test]
async fn bad_configs_and_cursors_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let orphan = dir.path().join("no-such-dir").join("x.yaml");
    let err = testing::collect_events(FileSource, serde_json::json!({"files": [orphan]}), None, 1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot watch {} (the directory of {}): No such file or directory (os error 2)",
            orphan.parent().unwrap().display(),
            orphan.display()
        )
    );
    let config = serde_json::json!({"files": [dir.path().join("x.yaml")]});
    let err = testing::collect_events(FileSource, config, Some("7".into()), 1).await.unwrap_err();
    assert!(err.to_string().starts_with("resume cursor is not this source's file states"), "{err}");
    let err = testing::collect_events(FileSource, serde_json::json!({"files": ["x.txt"]}), None, 1).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid config: files[0] \"x.txt\": the name must end in .yaml, .yml or .json");
}
