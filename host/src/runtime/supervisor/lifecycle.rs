//! Lifecycle events: every transition of a plugin instance becomes a
//! CloudEvent `dev.plugboard.plugin.<transition>` in the event pipeline
//! (through [`HostEvents`]), so it is stored and routable like any event.
//!
//! Supervisors never wait on the pipeline: events go through an unbounded
//! channel (they are few: restarts are paced by the backoff) to one task
//! that hands them over in order. Events raised before the pipeline exists
//! (plugin sinks start with it) wait in the channel until it is bound.

use plugboard_proto::CloudEvent;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{Kind, Transition};
use crate::launcher::ExitReason;
use crate::runtime::commands::audit::json_event;
use crate::runtime::host_events::HostEvents;

/// The CloudEvents type prefix of lifecycle events.
pub const TYPE_PREFIX: &str = "dev.plugboard.plugin.";

/// Where supervisors report transitions. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    tx: Option<mpsc::UnboundedSender<Message>>,
}

#[derive(Debug)]
enum Message {
    Event(CloudEvent),
    /// Answered once every event sent before it is in the pipeline.
    Flush(oneshot::Sender<()>),
}

/// Binds a [`Lifecycle`] to the pipeline once it runs.
pub struct LifecycleBinder(oneshot::Sender<HostEvents>);

impl LifecycleBinder {
    pub fn bind(self, events: HostEvents) {
        let _ = self.0.send(events);
    }
}

impl Lifecycle {
    /// Reports nowhere (`exec`, `shell`, tests).
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    /// Reports into the pipeline once the binder is bound; dropping the
    /// binder unbound discards the events.
    pub fn new() -> (Self, LifecycleBinder) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let (bind_tx, bind_rx) = oneshot::channel::<HostEvents>();
        tokio::spawn(async move {
            let Ok(events) = bind_rx.await else { return };
            while let Some(message) = rx.recv().await {
                match message {
                    Message::Event(event) => {
                        if !events.emit(event).await {
                            // The pipeline has stopped (host shutdown): nothing more can be stored.
                            return;
                        }
                    }
                    Message::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        (Self { tx: Some(tx) }, LifecycleBinder(bind_tx))
    }

    pub(super) fn emit(&self, kind: Kind, name: &str, plugin: &str, transition: Transition, mut data: Value) {
        let Some(tx) = &self.tx else { return };
        if let Value::Object(map) = &mut data {
            map.insert("instance".into(), json!(name));
            map.insert("kind".into(), json!(kind.as_str()));
            map.insert("plugin".into(), json!(plugin));
        }
        let mut event = json_event(&format!("{TYPE_PREFIX}{}", transition.as_str()), &data);
        event.attributes.insert("subject".into(), plugboard_proto::event::string_attr(name));
        let _ = tx.send(Message::Event(event));
    }

    /// Waits until the events reported so far are in the pipeline's queue
    /// (the host calls it before it stops the pipeline).
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, flushed) = oneshot::channel();
        if tx.send(Message::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

/// The JSON shape of an exit: `{"code": 3, "signal": null, "text": "exit status 3"}`.
pub fn exit_json(exit: Option<&ExitReason>) -> Value {
    match exit {
        Some(r) => json!({ "code": r.code(), "signal": r.signal(), "text": r.to_string() }),
        None => Value::Null,
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::disabled()
    }
}
