//! Building CloudEvents: [`EventBuilder`] fills `id` (a time-ordered UUIDv7),
//! `time` and `specversion`, so a source only says what happened.

use std::collections::BTreeMap;

use plugboard_proto::event::{string_attr, timestamp_attr};
use plugboard_proto::io::cloudevents::v1::cloud_event::Data;
use plugboard_proto::io::cloudevents::v1::cloud_event::cloud_event_attribute_value::Attr;
use plugboard_proto::{CloudEvent, CloudEventAttributeValue};
use serde::Serialize;

/// Builds one CloudEvent.
///
/// ```
/// let event = plugboard_sdk::EventBuilder::new("dev.plugboard.tick", "/tick/every-second")
///     .subject("tick")
///     .json(&serde_json::json!({"index": 1}))
///     .build();
/// assert_eq!(event.spec_version, "1.0");
/// assert!(!event.id.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct EventBuilder {
    event: CloudEvent,
}

impl EventBuilder {
    /// An event of type `ty` (reverse-DNS, e.g. `dev.plugboard.tick`) from `source` (a URI-reference).
    pub fn new(ty: impl Into<String>, source: impl Into<String>) -> Self {
        let mut attributes = BTreeMap::new();
        attributes.insert("time".to_owned(), timestamp_attr(chrono::Utc::now()));
        Self {
            event: CloudEvent {
                id: uuid::Uuid::now_v7().to_string(),
                source: source.into(),
                spec_version: plugboard_proto::event::SPEC_VERSION.to_owned(),
                r#type: ty.into(),
                attributes,
                data: None,
            },
        }
    }

    /// Replaces the generated id, e.g. with an id the upstream system gave
    /// (the host drops an event whose (source, id) it has already stored).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.event.id = id.into();
        self
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.event.attributes.insert("subject".to_owned(), string_attr(subject));
        self
    }

    /// Sets `time` (defaults to now).
    pub fn time(mut self, time: chrono::DateTime<chrono::Utc>) -> Self {
        self.event.attributes.insert("time".to_owned(), timestamp_attr(time));
        self
    }

    /// A string extension attribute. Names must be lower-case letters and digits.
    pub fn extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.event.attributes.insert(name.into(), string_attr(value));
        self
    }

    /// An integer extension attribute.
    pub fn extension_int(mut self, name: impl Into<String>, value: i32) -> Self {
        self.event.attributes.insert(name.into(), CloudEventAttributeValue { attr: Some(Attr::CeInteger(value)) });
        self
    }

    /// JSON data (`datacontenttype: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        // Serialising a value that serde can represent does not fail for the
        // types plugins use; fall back to null rather than losing the event.
        let text = serde_json::to_string(data).unwrap_or_else(|_| "null".to_owned());
        self.event.attributes.insert("datacontenttype".to_owned(), string_attr("application/json"));
        self.event.data = Some(Data::TextData(text));
        self
    }

    /// Text data with its content type, e.g. `text/plain`.
    pub fn text(mut self, content_type: &str, text: impl Into<String>) -> Self {
        self.event.attributes.insert("datacontenttype".to_owned(), string_attr(content_type));
        self.event.data = Some(Data::TextData(text.into()));
        self
    }

    /// Binary data with its content type.
    pub fn binary(mut self, content_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.event.attributes.insert("datacontenttype".to_owned(), string_attr(content_type));
        self.event.data = Some(Data::BinaryData(bytes.into()));
        self
    }

    pub fn build(self) -> CloudEvent {
        self.event
    }
}
