//! CloudEvents on the wire: validation of the protobuf form, the JSON event
//! format (structured mode), and conversion to and from the cloudevents-sdk
//! [`cloudevents::Event`].

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::event::{AttributesReader, ExtensionValue};
use cloudevents::{Data, EventBuilder, EventBuilderV10};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::io::cloudevents::v1::cloud_event::Data as ProtoData;
use crate::io::cloudevents::v1::cloud_event::cloud_event_attribute_value::Attr;
use crate::{CloudEvent, CloudEventAttributeValue};

/// The only CloudEvents spec version plugboard accepts.
pub const SPEC_VERSION: &str = "1.0";

/// Attribute names carried as plain fields of the proto message, and the JSON
/// format's data members: none of them may appear in the attributes map.
const RESERVED: &[&str] = &["id", "source", "specversion", "type", "data", "data_base64"];

/// Why an event is not a valid CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("missing required attribute {0:?}")]
    Missing(&'static str),
    #[error("unsupported specversion {0:?}: only \"1.0\" is accepted")]
    SpecVersion(String),
    #[error("invalid attribute name {0:?}: CloudEvents attribute names are lower-case ASCII letters and digits")]
    AttributeName(String),
    #[error("attribute {0:?} is reserved and cannot be an extension")]
    ReservedAttribute(String),
    #[error("attribute {name:?} has no value")]
    EmptyAttribute { name: String },
    #[error("attribute {name:?}: {reason}")]
    AttributeValue { name: String, reason: String },
    #[error("not a CloudEvent in the JSON format: {0}")]
    Json(String),
}

/// Checks what the CloudEvents spec requires of an event: the four required
/// attributes, specversion 1.0, and well-formed attribute names and values.
pub fn validate(event: &CloudEvent) -> Result<(), EventError> {
    if event.id.is_empty() {
        return Err(EventError::Missing("id"));
    }
    if event.source.is_empty() {
        return Err(EventError::Missing("source"));
    }
    if event.spec_version.is_empty() {
        return Err(EventError::Missing("specversion"));
    }
    if event.spec_version != SPEC_VERSION {
        return Err(EventError::SpecVersion(event.spec_version.clone()));
    }
    if event.r#type.is_empty() {
        return Err(EventError::Missing("type"));
    }
    for (name, value) in &event.attributes {
        validate_attribute_name(name)?;
        let Some(attr) = &value.attr else {
            return Err(EventError::EmptyAttribute { name: name.clone() });
        };
        if name == "time" && !matches!(attr, Attr::CeTimestamp(_)) {
            // Accept RFC 3339 text too (many producers send strings).
            let text = attr_text(attr);
            if DateTime::parse_from_rfc3339(&text).is_err() {
                return Err(EventError::AttributeValue {
                    name: name.clone(),
                    reason: format!("{text:?} is not an RFC 3339 timestamp"),
                });
            }
        }
        if let Attr::CeTimestamp(ts) = attr
            && (ts.nanos < 0 || DateTime::from_timestamp(ts.seconds, ts.nanos as u32).is_none())
        {
            return Err(EventError::AttributeValue { name: name.clone(), reason: "timestamp out of range".into() });
        }
    }
    Ok(())
}

/// CloudEvents attribute names: `a`-`z` and `0`-`9` only (spec §"Attribute Naming Convention").
pub fn validate_attribute_name(name: &str) -> Result<(), EventError> {
    if RESERVED.contains(&name) {
        return Err(EventError::ReservedAttribute(name.to_owned()));
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(EventError::AttributeName(name.to_owned()));
    }
    Ok(())
}

/// An attribute's canonical string form (CloudEvents type system).
pub fn attr_text(attr: &Attr) -> String {
    match attr {
        Attr::CeBoolean(b) => b.to_string(),
        Attr::CeInteger(i) => i.to_string(),
        Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s) => s.clone(),
        Attr::CeBytes(b) => base64::engine::general_purpose::STANDARD.encode(b),
        Attr::CeTimestamp(ts) => timestamp_text(ts),
    }
}

fn timestamp_text(ts: &prost_types::Timestamp) -> String {
    DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// A string-valued attribute (`subject`, `datacontenttype`, extensions...).
pub fn attribute<'a>(event: &'a CloudEvent, name: &str) -> Option<&'a str> {
    match event.attributes.get(name)?.attr.as_ref()? {
        Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s) => Some(s),
        _ => None,
    }
}

/// Builds a string attribute value.
pub fn string_attr(value: impl Into<String>) -> CloudEventAttributeValue {
    CloudEventAttributeValue { attr: Some(Attr::CeString(value.into())) }
}

/// Builds a timestamp attribute value.
pub fn timestamp_attr(time: DateTime<Utc>) -> CloudEventAttributeValue {
    CloudEventAttributeValue {
        attr: Some(Attr::CeTimestamp(prost_types::Timestamp {
            seconds: time.timestamp(),
            nanos: time.timestamp_subsec_nanos() as i32,
        })),
    }
}

fn is_json_content_type(ct: Option<&str>) -> bool {
    match ct {
        None => true, // the JSON format's default for data is application/json
        Some(ct) => {
            let essence = ct.split(';').next().unwrap_or_default().trim();
            essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
        }
    }
}

/// Serialises an event in the CloudEvents JSON format (structured mode) without
/// copying it: `serde_json::to_writer(w, &Json(&event))`.
pub struct Json<'a>(pub &'a CloudEvent);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("specversion", &e.spec_version)?;
        map.serialize_entry("id", &e.id)?;
        map.serialize_entry("source", &e.source)?;
        map.serialize_entry("type", &e.r#type)?;
        for (name, value) in &e.attributes {
            match &value.attr {
                Some(Attr::CeBoolean(b)) => map.serialize_entry(name, b)?,
                Some(Attr::CeInteger(i)) => map.serialize_entry(name, i)?,
                Some(Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s)) => map.serialize_entry(name, s)?,
                Some(attr @ (Attr::CeBytes(_) | Attr::CeTimestamp(_))) => {
                    map.serialize_entry(name, &attr_text(attr))?
                }
                None => {}
            }
        }
        match &e.data {
            Some(ProtoData::TextData(text)) => {
                let json = is_json_content_type(attribute(e, "datacontenttype"))
                    .then(|| serde_json::from_str::<&serde_json::value::RawValue>(text).ok())
                    .flatten();
                match json {
                    Some(raw) => map.serialize_entry("data", raw)?,
                    None => map.serialize_entry("data", text)?,
                }
            }
            Some(ProtoData::BinaryData(bytes)) => {
                map.serialize_entry("data_base64", &base64::engine::general_purpose::STANDARD.encode(bytes))?
            }
            Some(ProtoData::ProtoData(any)) => {
                map.serialize_entry("data_base64", &base64::engine::general_purpose::STANDARD.encode(&any.value))?
            }
            None => {}
        }
        map.end()
    }
}

/// The event in the JSON format, as bytes (no trailing newline).
pub fn to_json_vec(event: &CloudEvent) -> Vec<u8> {
    // Serialising our own map of strings and numbers cannot fail.
    serde_json::to_vec(&Json(event)).unwrap_or_default()
}

/// Parses one event in the JSON format, validating it.
pub fn from_json_slice(bytes: &[u8]) -> Result<CloudEvent, EventError> {
    let sdk: cloudevents::Event = serde_json::from_slice(bytes).map_err(|e| EventError::Json(e.to_string()))?;
    let event = from_sdk(sdk)?;
    validate(&event)?;
    Ok(event)
}

/// Parses a JSON batch (`application/cloudevents-batch+json`): an array of events.
pub fn batch_from_json_slice(bytes: &[u8]) -> Result<Vec<CloudEvent>, (usize, EventError)> {
    let raw: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(bytes).map_err(|e| (0, EventError::Json(e.to_string())))?;
    raw.iter().enumerate().map(|(i, r)| from_json_slice(r.get().as_bytes()).map_err(|e| (i, e))).collect()
}

/// Converts a cloudevents-sdk event into the protobuf form.
pub fn from_sdk(mut event: cloudevents::Event) -> Result<CloudEvent, EventError> {
    let spec_version = event.specversion().to_string();
    let mut attributes = BTreeMap::new();
    if let Some(ct) = event.datacontenttype() {
        attributes.insert("datacontenttype".to_owned(), string_attr(ct));
    }
    if let Some(schema) = event.dataschema() {
        attributes
            .insert("dataschema".to_owned(), CloudEventAttributeValue { attr: Some(Attr::CeUri(schema.to_string())) });
    }
    if let Some(subject) = event.subject() {
        attributes.insert("subject".to_owned(), string_attr(subject));
    }
    if let Some(time) = event.time() {
        attributes.insert("time".to_owned(), timestamp_attr(*time));
    }
    for (name, value) in event.iter_extensions() {
        let attr = match value {
            ExtensionValue::String(s) => Attr::CeString(s.clone()),
            ExtensionValue::Boolean(b) => Attr::CeBoolean(*b),
            ExtensionValue::Integer(i) => {
                Attr::CeInteger(i32::try_from(*i).map_err(|_| EventError::AttributeValue {
                    name: name.to_owned(),
                    reason: format!("integer {i} is outside the CloudEvents 32-bit range"),
                })?)
            }
        };
        attributes.insert(name.to_owned(), CloudEventAttributeValue { attr: Some(attr) });
    }
    let id = event.id().to_owned();
    let source = event.source().to_string();
    let ty = event.ty().to_owned();
    let data = match event.take_data().2 {
        None => None,
        Some(Data::Binary(b)) => Some(ProtoData::BinaryData(b)),
        Some(Data::String(s)) => Some(ProtoData::TextData(s)),
        Some(Data::Json(v)) => Some(ProtoData::TextData(v.to_string())),
    };
    Ok(CloudEvent { id, source, spec_version, r#type: ty, attributes, data })
}

/// Converts the protobuf form into a cloudevents-sdk event (validating it).
pub fn to_sdk(event: &CloudEvent) -> Result<cloudevents::Event, EventError> {
    validate(event)?;
    let mut b = EventBuilderV10::new().id(event.id.clone()).source(event.source.clone()).ty(event.r#type.clone());
    for (name, value) in &event.attributes {
        let Some(attr) = &value.attr else { continue };
        b = match (name.as_str(), attr) {
            ("datacontenttype" | "dataschema", _) => b,
            ("subject", a) => b.subject(attr_text(a)),
            ("time", Attr::CeTimestamp(ts)) => match DateTime::from_timestamp(ts.seconds, ts.nanos as u32) {
                Some(t) => b.time(t),
                None => b,
            },
            ("time", a) => b.time(attr_text(a)),
            (_, Attr::CeBoolean(v)) => b.extension(name, *v),
            (_, Attr::CeInteger(v)) => b.extension(name, i64::from(*v)),
            (_, a) => b.extension(name, attr_text(a)),
        };
    }
    let ct = attribute(event, "datacontenttype").map(str::to_owned);
    let schema = attribute(event, "dataschema").map(str::to_owned);
    let data = match &event.data {
        None => None,
        Some(ProtoData::BinaryData(bytes)) => Some(Data::Binary(bytes.clone())),
        Some(ProtoData::ProtoData(any)) => Some(Data::Binary(any.value.clone())),
        Some(ProtoData::TextData(text)) => {
            Some(match is_json_content_type(ct.as_deref()).then(|| serde_json::from_str(text).ok()).flatten() {
                Some(v) => Data::Json(v),
                None => Data::String(text.clone()),
            })
        }
    };
    if let Some(data) = data {
        let ct = ct.unwrap_or_else(|| "application/json".to_owned());
        b = match schema {
            Some(s) => b.data_with_schema(ct, s, data),
            None => b.data(ct, data),
        };
    }
    b.build().map_err(|e| EventError::AttributeValue { name: "event".into(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CloudEvent {
        let mut attributes = BTreeMap::new();
        attributes.insert("datacontenttype".into(), string_attr("application/json"));
        attributes.insert("subject".into(), string_attr("tick"));
        attributes.insert(
            "time".into(),
            timestamp_attr(DateTime::parse_from_rfc3339("2026-11-26T10:00:00.5Z").unwrap().into()),
        );
        attributes.insert("index".into(), CloudEventAttributeValue { attr: Some(Attr::CeInteger(7)) });
        CloudEvent {
            id: "e-1".into(),
            source: "/plugboard/tick/t1".into(),
            spec_version: "1.0".into(),
            r#type: "dev.plugboard.tick".into(),
            attributes,
            data: Some(ProtoData::TextData(r#"{"index":7}"#.into())),
        }
    }

    #[test]
    fn json_format_embeds_json_data_and_typed_attributes() {
        let json: serde_json::Value = serde_json::from_slice(&to_json_vec(&sample())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "specversion": "1.0",
                "id": "e-1",
                "source": "/plugboard/tick/t1",
                "type": "dev.plugboard.tick",
                "datacontenttype": "application/json",
                "subject": "tick",
                "time": "2026-11-26T10:00:00.500Z",
                "index": 7,
                "data": {"index": 7}
            })
        );
    }

    #[test]
    fn json_round_trips_through_the_sdk_parser() {
        let event = sample();
        let back = from_json_slice(&to_json_vec(&event)).unwrap();
        assert_eq!(back.id, event.id);
        assert_eq!(back.r#type, event.r#type);
        assert_eq!(attribute(&back, "subject"), Some("tick"));
        assert_eq!(back.data, event.data);
        assert_eq!(back.attributes.get("index"), event.attributes.get("index"));
        assert_eq!(back.attributes.get("time"), event.attributes.get("time"));
    }

    #[test]
    fn binary_data_uses_data_base64() {
        let mut e = sample();
        e.attributes.remove("datacontenttype");
        e.data = Some(ProtoData::BinaryData(vec![0, 1, 2, 255]));
        let json: serde_json::Value = serde_json::from_slice(&to_json_vec(&e)).unwrap();
        assert_eq!(json["data_base64"], "AAEC/w==");
        assert!(json.get("data").is_none());
    }

    #[test]
    fn text_data_that_is_not_json_stays_a_string() {
        let mut e = sample();
        e.attributes.insert("datacontenttype".into(), string_attr("text/plain"));
        e.data = Some(ProtoData::TextData("{not json".into()));
        let json: serde_json::Value = serde_json::from_slice(&to_json_vec(&e)).unwrap();
        assert_eq!(json["data"], "{not json");
    }

    #[test]
    fn validation_names_the_problem() {
        let mut e = sample();
        e.id.clear();
        assert_eq!(validate(&e), Err(EventError::Missing("id")));
        let mut e = sample();
        e.spec_version = "0.3".into();
        assert_eq!(validate(&e), Err(EventError::SpecVersion("0.3".into())));
        let mut e = sample();
        e.attributes.insert("Bad-Name".into(), string_attr("x"));
        assert_eq!(validate(&e), Err(EventError::AttributeName("Bad-Name".into())));
        let mut e = sample();
        e.attributes.insert("id".into(), string_attr("x"));
        assert_eq!(validate(&e), Err(EventError::ReservedAttribute("id".into())));
        let mut e = sample();
        e.attributes.insert("time".into(), string_attr("yesterday"));
        assert!(matches!(validate(&e), Err(EventError::AttributeValue { .. })));
        assert_eq!(validate(&sample()), Ok(()));
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        assert!(matches!(from_json_slice(b"{"), Err(EventError::Json(_))));
        assert!(from_json_slice(br#"{"specversion":"1.0","id":"1","type":"t"}"#).is_err());
        let (index, _) =
            batch_from_json_slice(br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{}]"#).unwrap_err();
        assert_eq!(index, 1);
    }

    proptest::proptest! {
        #[test]
        fn from_json_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = from_json_slice(&bytes);
        }
    }
}
