//! The store on a real SQLite file in a temporary directory.

use std::sync::Arc;

use plugboard_proto::CloudEvent;

use super::*;

fn event(source: &str, id: &str) -> CloudEvent {
    CloudEvent {
        id: id.into(),
        source: source.into(),
        spec_version: "1.0".into(),
        r#type: "t".into(),
        ..Default::default()
    }
}

fn batch(instance: &str, ids: &[&str], cursor: Option<&str>) -> EventBatch {
    let instance: Arc<str> = Arc::from(instance);
    let mut b = EventBatch::with_capacity(ids.len());
    for id in ids {
        b.push(Arc::clone(&instance), event("/s", id));
    }
    if let Some(c) = cursor {
        b.set_cursor(&instance, c.to_owned());
    }
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn events_get_contiguous_seqs_and_duplicates_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, opened) = Store::open(dir.path()).unwrap();
    assert_eq!(opened.last_seq, 0);
    let receipt = store.ingest(batch("a", &["1", "2", "1"], None)).await.unwrap();
    assert_eq!(receipt.seqs, [Some(1), Some(2), None]);
    let receipt = store.ingest(batch("b", &["2", "3"], None)).await.unwrap();
    assert_eq!(receipt.seqs, [None, Some(3)]);
    assert_eq!(*store.committed().borrow(), 3);
    let counts = store.instance_counts();
    assert_eq!(counts[&Arc::from("a")], InstanceCounts { stored: 2, duplicates: 1 });
    assert_eq!(counts[&Arc::from("b")], InstanceCounts { stored: 1, duplicates: 1 });
    let mut tail = Vec::new();
    assert_eq!(store.tail().read_after(0, 10, &mut tail), TailRead::Read(3));
    assert_eq!(tail.iter().map(|e| e.event.id.as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
    assert_eq!(&*tail[2].instance, "b");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cursors_and_seqs_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path()).unwrap();
        store.submit(batch("a", &["1", "2"], Some("c2"))).await.unwrap();
        // A batch of only dropped events still moves the cursor.
        store.submit(batch("a", &[], Some("c3"))).await.unwrap();
        store.set_sink_cursor("out", 1);
        store.close().await;
    }
    let (store, opened) = Store::open(dir.path()).unwrap();
    assert_eq!(opened.last_seq, 2);
    assert_eq!(opened.source_cursors["a"], "c3");
    assert_eq!(opened.sink_cursors["out"], 1);
    let receipt = store.ingest(batch("a", &["3"], None)).await.unwrap();
    assert_eq!(receipt.seqs, [Some(3)]);
    let mut reader = store.reader().unwrap();
    let mut events = Vec::new();
    reader.events_after(1, 10, &mut events).unwrap();
    assert_eq!(events.iter().map(|e| (e.seq, e.event.id.as_str())).collect::<Vec<_>>(), [(2, "2"), (3, "3")]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_host_at_a_time_per_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    let Err(err) = Store::open(dir.path()) else { panic!("a second open must fail") };
    let text = err.to_string();
    assert!(text.contains("is in use by another plugboard host"), "{text}");
    assert!(text.contains(&format!("(pid {})", std::process::id())), "{text}");
    store.close().await;
    drop(store);
    let (store, _) = Store::open(dir.path()).unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_and_replays_are_kept_until_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    store.ingest(batch("a", &["1", "2", "3"], None)).await.unwrap();
    store.dead_letter("hook", 1, 3, "503");
    store.dead_letter("hook", 2, 3, "503");
    store.dead_letter("hook", 2, 2, "timeout");
    store.dead_letter("other", 3, 1, "400");
    store.close().await;
    drop(store);

    let mut reader = Reader::open(dir.path()).unwrap();
    let dead = reader.dead_letters(Some("hook")).unwrap();
    assert_eq!(
        dead.iter().map(|d| (d.seq, d.attempts, d.error.as_str())).collect::<Vec<_>>(),
        [(1, 3, "503"), (2, 5, "timeout")]
    );
    assert_eq!(reader.dead_letters(None).unwrap().len(), 3);
    let id = reader.request_replay("hook", None).unwrap();
    assert_eq!(reader.replays("hook").unwrap(), [Replay { id, sink: "hook".into(), since: None }]);
    let events = reader.events_by_seq(&[3, 1, 99]).unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);

    let (store, _) = Store::open(dir.path()).unwrap();
    store.clear_dead_letter("hook", 1);
    store.clear_dead_letters_from("other", 2);
    store.replay_done(id);
    store.close().await;
    assert_eq!(reader.dead_letters(None).unwrap().iter().map(|d| d.seq).collect::<Vec<_>>(), [2]);
    assert!(reader.replays("hook").unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_by_instance_type_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    store.ingest(batch("a", &["1", "2"], None)).await.unwrap();
    let mut b = batch("b", &["3"], None);
    b.push(Arc::from("b"), CloudEvent { r#type: "other".into(), ..event("/s", "4") });
    store.ingest(b).await.unwrap();
    let mut reader = store.reader().unwrap();
    let ids = |filter: ListFilter, reader: &mut Reader| {
        reader.list(&filter).unwrap().into_iter().map(|e| e.stored.event.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(ListFilter::default(), &mut reader), ["1", "2", "3", "4"]);
    assert_eq!(ids(ListFilter { instance: Some("b".into()), ..Default::default() }, &mut reader), ["3", "4"]);
    assert_eq!(ids(ListFilter { ty: Some("other".into()), ..Default::default() }, &mut reader), ["4"]);
    assert_eq!(ids(ListFilter { since: Some(2), limit: Some(2), ..Default::default() }, &mut reader), ["2", "3"]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_store_refuses_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    store.close().await;
    assert!(matches!(store.ingest(batch("a", &["1"], None)).await, Err(StoreError::Closed)));
}

#[test]
fn a_missing_store_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let err = Reader::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("no event store at") && err.contains("has `plugboard run` run"), "{err}");
}
