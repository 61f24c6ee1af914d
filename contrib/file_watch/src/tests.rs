//! Real directories, real file operations, waits on conditions.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

fn is_probe(d: &serde_json::Value) -> bool {
    d["src_path"].as_str().is_some_and(|p| p.contains(".probe-"))
}

/// Events seen while waiting, probes left out.
#[derive(Default)]
struct Seen(Vec<(String, serde_json::Value)>);

impl Seen {
    /// Reads events until one of type `.{change}` for `path` arrives; returns its data.
    async fn expect(&mut self, run: &mut RunningSource, change: &str, path: &Path) -> serde_json::Value {
        let ty = format!("dev.plugboard.file_watch.{change}");
        let wait = async {
            loop {
                let (event, cursor) = run.next().await.expect("stream failed").expect("stream ended");
                assert_eq!(cursor, "", "file_watch has no cursors");
                let d = data(&event);
                if is_probe(&d) {
                    continue;
                }
                self.0.push((event.r#type.clone(), d.clone()));
                if event.r#type == ty && d["src_path"] == path.to_str().unwrap() {
                    return d;
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait).await.unwrap_or_else(|_| {
            panic!("no {change} event for {} within {DEADLINE:?}; saw {:?}", path.display(), self.0)
        })
    }

    fn paths(&self) -> Vec<&str> {
        self.0.iter().filter_map(|(_, d)| d["src_path"].as_str()).collect()
    }
}

/// Creates probe files until one is reported: from then on the watch is live.
async fn wait_until_watching(run: &mut RunningSource, dir: &Path) {
    let ready = async {
        for i in 0.. {
            let probe = dir.join(format!(".probe-{i}"));
            std::fs::write(&probe, b"").unwrap();
            let seen = tokio::time::timeout(Duration::from_millis(200), async {
                loop {
                    let (event, _) = run.next().await.expect("stream failed").expect("stream ended");
                    if data(&event)["src_path"].as_str().is_some_and(|p| p.contains(".probe-")) {
                        return;
                    }
                }
            })
            .await;
            if seen.is_ok() {
                return;
            }
        }
    };
    tokio::time::timeout(DEADLINE, ready).await.expect("the watch never became live");
}

fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_modify_move_delete_are_reported_in_order() {
    let (_guard, root) = temp_dir();
    let config = serde_json::json!({"path": root, "debounce": "20ms"});
    let mut run = testing::start_source(FileWatch, config, None);
    wait_until_watching(&mut run, &root).await;
    let mut seen = Seen::default();

    let a = root.join("a.txt");
    std::fs::write(&a, b"one").unwrap();
    let d = seen.expect(&mut run, "created", &a).await;
    assert_eq!(d["type"], "file");
    assert_eq!(d["root_path"], root.to_str().unwrap());
    assert_eq!(d["change"], "created");

    std::fs::OpenOptions::new()
        .append(true)
        .open(&a)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"two"))
        .unwrap();
    seen.expect(&mut run, "modified", &a).await;

    let b = root.join("b.txt");
    std::fs::rename(&a, &b).unwrap();
    let d = seen.expect(&mut run, "moved", &a).await;
    assert_eq!(d["dest_path"], b.to_str().unwrap());
    assert_eq!(d["type"], "file");

    std::fs::remove_file(&b).unwrap();
    let d = seen.expect(&mut run, "deleted", &b).await;
    assert!(d.get("dest_path").is_none());

    let sub = root.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let d = seen.expect(&mut run, "created", &sub).await;
    assert_eq!(d["type"], "dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_watches_see_subdirectories_and_non_recursive_ones_do_not() {
    let (_guard, root) = temp_dir();
    let sub = root.join("sub");
    std::fs::create_dir(&sub).unwrap();

    let mut flat = testing::start_source(FileWatch, serde_json::json!({"path": root, "debounce": "20ms"}), None);
    let mut deep = testing::start_source(
        FileWatch,
        serde_json::json!({"paths": [root], "recursive": true, "debounce": "20ms"}),
        None,
    );
    wait_until_watching(&mut flat, &root).await;
    wait_until_watching(&mut deep, &root).await;

    let inner = sub.join("inner.txt");
    std::fs::write(&inner, b"x").unwrap();
    let top = root.join("top.txt");
    std::fs::write(&top, b"x").unwrap();

    let mut deep_seen = Seen::default();
    deep_seen.expect(&mut deep, "created", &inner).await;
    let mut flat_seen = Seen::default();
    flat_seen.expect(&mut flat, "created", &top).await;
    // Events come in the order they happened: inner.txt would have come first.
    assert!(!flat_seen.paths().contains(&inner.to_str().unwrap()), "{:?}", flat_seen.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_paths_are_not_reported() {
    let (_guard, root) = temp_dir();
    let config = serde_json::json!({"path": root, "ignore_regexes": ["\\.swp$"], "debounce": "20ms"});
    let mut run = testing::start_source(FileWatch, config, None);
    wait_until_watching(&mut run, &root).await;
    let swap = root.join("notes.txt.swp");
    std::fs::write(&swap, b"x").unwrap();
    let notes = root.join("notes.txt");
    std::fs::write(&notes, b"x").unwrap();
    let mut seen = Seen::default();
    seen.expect(&mut run, "created", &notes).await;
    assert!(!seen.paths().contains(&swap.to_str().unwrap()), "{:?}", seen.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_watched_path_reports_it_then_fails_the_stream() {
    let (_guard, base) = temp_dir();
    let root = base.join("watched");
    std::fs::create_dir(&root).unwrap();
    let mut run = testing::start_source(FileWatch, serde_json::json!({"path": root, "debounce": "20ms"}), None);
    wait_until_watching(&mut run, &root).await;
    std::fs::remove_dir_all(&root).unwrap();
    let mut seen = Seen::default();
    seen.expect(&mut run, "deleted", &root).await;
    let end = tokio::time::timeout(DEADLINE, async {
        loop {
            match run.next().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends");
    let err = end.unwrap_err();
    assert_eq!(err.to_string(), format!("watched path {} was deleted", root.display()));
}

#[tokio::test]
async fn a_missing_path_fails_clearly() {
    let (_guard, base) = temp_dir();
    let missing = base.join("nope");
    let err = testing::collect_events(FileWatch, serde_json::json!({"path": missing}), None, 1).await.unwrap_err();
    assert_eq!(err.to_string(), format!("cannot watch {}: No such file or directory (os error 2)", missing.display()));
    let err = testing::collect_events(FileWatch, serde_json::json!({"recursive": true}), None, 1).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid config: path (or paths) is required");
}
