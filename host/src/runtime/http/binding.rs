//! The CloudEvents HTTP protocol binding's binary mode, both ways: the event's
//! attributes as `ce-` headers (percent-encoded per the binding spec
//! §3.1.3.2), `datacontenttype` as `Content-Type`, the data as the body.
//!
//! Written here rather than taken from cloudevents-sdk's `binding::http`,
//! which neither percent-encodes nor percent-decodes header values; the JSON
//! event format (structured and batched mode) does come from the SDK, through
//! `plugboard_proto::event`.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use plugboard_proto::event::{attr_text, string_attr, timestamp_attr};
use plugboard_proto::io::cloudevents::v1::cloud_event::Data;
use plugboard_proto::io::cloudevents::v1::cloud_event::cloud_event_attribute_value::Attr;
use plugboard_proto::{CloudEvent, CloudEventAttributeValue};

/// Encoded in header values: space, `"`, `%`, controls, and (by
/// `utf8_percent_encode`) everything outside ASCII.
const HEADER_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// Why a binary-mode request is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BindingError(pub String);

/// Whether `content_type` is JSON (`application/json`, `text/json`, `*+json`).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

fn is_text(content_type: &str) -> bool {
    is_json(content_type) || content_type.trim_start().to_ascii_lowercase().starts_with("text/")
}

/// Reads a binary-mode event from request headers and body. Validation of
/// the result (names, required attributes) is left to the caller.
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<CloudEvent, BindingError> {
    let mut attributes: BTreeMap<String, String> = BTreeMap::new();
    for name in headers.keys() {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else { continue };
        let mut values = headers.get_all(name).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(BindingError(format!("header {name} appears more than once")));
        };
        let value = value.to_str().map_err(|_| {
            BindingError(format!("header {name} is not printable ASCII (percent-encode other characters)"))
        })?;
        let decoded = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| BindingError(format!("header {name} is not valid UTF-8 after percent-decoding")))?;
        if attribute == "datacontenttype" {
            return Err(BindingError(
                "binary mode carries datacontenttype as Content-Type, not ce-datacontenttype".into(),
            ));
        }
        attributes.insert(attribute.to_owned(), decoded.into_owned());
    }
    if attributes.is_empty() {
        return Err(BindingError(
            "no ce- headers: send a binary-mode event (ce-id, ce-source, ce-type, ce-specversion headers) \
             or set Content-Type to application/cloudevents+json or application/cloudevents-batch+json"
                .into(),
        ));
    }
    let mut take = |name: &str| attributes.remove(name).unwrap_or_default();
    let mut event = CloudEvent {
        id: take("id"),
        source: take("source"),
        spec_version: take("specversion"),
        r#type: take("type"),
        ..Default::default()
    };
    for (name, value) in attributes {
        let attr = match name.as_str() {
            "time" => {
                let time = chrono::DateTime::parse_from_rfc3339(&value)
                    .map_err(|_| BindingError(format!("header ce-time {value:?} is not an RFC 3339 timestamp")))?;
                timestamp_attr(time.with_timezone(&chrono::Utc))
            }
            "dataschema" => CloudEventAttributeValue { attr: Some(Attr::CeUri(value)) },
            _ => string_attr(value),
        };
        event.attributes.insert(name, attr);
    }
    let content_type = match headers.get(axum::http::header::CONTENT_TYPE) {
        Some(ct) => {
            Some(ct.to_str().map_err(|_| BindingError("Content-Type is not printable ASCII".into()))?.to_owned())
        }
        None => None,
    };
    if !body.is_empty() {
        let text = content_type.as_deref().is_none_or(is_text);
        event.data = Some(match (text, std::str::from_utf8(body)) {
            (true, Ok(s)) => Data::TextData(s.to_owned()),
            (true, Err(_)) if content_type.as_deref().is_some_and(is_json) => {
                return Err(BindingError("the body is not valid UTF-8 although Content-Type is JSON".into()));
            }
            _ => Data::BinaryData(body.to_vec()),
        });
    }
    if let Some(ct) = content_type {
        event.attributes.insert("datacontenttype".into(), string_attr(ct));
    }
    Ok(event)
}

/// A binary-mode message for `event`: headers (names lower case, values
/// percent-encoded) and body.
pub fn encode(event: &CloudEvent) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers = Vec::with_capacity(event.attributes.len() + 5);
    let mut header = |name: &str, value: &str| {
        headers.push((format!("ce-{name}"), utf8_percent_encode(value, HEADER_VALUE).to_string()));
    };
    header("specversion", &event.spec_version);
    header("id", &event.id);
    header("source", &event.source);
    header("type", &event.r#type);
    let mut content_type = None;
    for (name, value) in &event.attributes {
        let Some(attr) = &value.attr else { continue };
        if name == "datacontenttype" {
            content_type = Some(attr_text(attr));
        } else {
            header(name, &attr_text(attr));
        }
    }
    if let Some(ct) = content_type {
        headers.push(("content-type".into(), ct));
    }
    let body = match &event.data {
        None => Vec::new(),
        Some(Data::TextData(text)) => text.as_bytes().to_vec(),
        Some(Data::BinaryData(bytes)) => bytes.clone(),
        Some(Data::ProtoData(any)) => any.value.clone(),
    };
    (headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn decodes_headers_percent_encoding_and_data() {
        let h = headers(&[
            ("ce-id", "1"),
            ("ce-source", "/my%20source"),
            ("ce-specversion", "1.0"),
            ("ce-type", "com.example.x"),
            ("ce-subject", "caf%C3%A9"),
            ("ce-time", "2026-11-26T10:00:00Z"),
            ("ce-team", "db"),
            ("content-type", "application/json"),
            ("authorization", "Bearer x"),
        ]);
        let e = decode(&h, br#"{"a":1}"#).unwrap();
        assert_eq!(e.source, "/my source");
        assert_eq!(plugboard_proto::event::attribute(&e, "subject"), Some("café"));
        assert_eq!(plugboard_proto::event::attribute(&e, "team"), Some("db"));
        assert_eq!(plugboard_proto::event::attribute(&e, "datacontenttype"), Some("application/json"));
        assert!(matches!(e.attributes["time"].attr, Some(Attr::CeTimestamp(_))));
        assert_eq!(e.data, Some(Data::TextData(r#"{"a":1}"#.into())));
        assert!(!e.attributes.contains_key("authorization"));
        assert_eq!(plugboard_proto::event::validate(&e), Ok(()));
    }

    #[test]
    fn binary_bodies_stay_binary() {
        let h = headers(&[
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-specversion", "1.0"),
            ("ce-type", "t"),
            ("content-type", "application/octet-stream"),
        ]);
        assert_eq!(decode(&h, &[0, 255]).unwrap().data, Some(Data::BinaryData(vec![0, 255])));
    }

    #[test]
    fn bad_headers_say_which() {
        let err = decode(&headers(&[("content-type", "application/json")]), b"{}").unwrap_err();
        assert!(err.0.contains("no ce- headers"), "{err}");
        let err = decode(&headers(&[("ce-id", "1"), ("ce-time", "yesterday")]), b"").unwrap_err();
        assert_eq!(err.0, "header ce-time \"yesterday\" is not an RFC 3339 timestamp");
        let err = decode(&headers(&[("ce-id", "1"), ("ce-id", "2")]), b"").unwrap_err();
        assert_eq!(err.0, "header ce-id appears more than once");
        let err = decode(&headers(&[("ce-id", "%FF")]), b"").unwrap_err();
        assert_eq!(err.0, "header ce-id is not valid UTF-8 after percent-decoding");
        // Missing required attributes are left to validation.
        let e = decode(&headers(&[("ce-id", "1")]), b"").unwrap();
        assert!(plugboard_proto::event::validate(&e).is_err());
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut event = CloudEvent {
            id: "a b".into(),
            source: "/s%\"".into(),
            spec_version: "1.0".into(),
            r#type: "t".into(),
            data: Some(Data::TextData("{\"x\":\"é\"}".into())),
            ..Default::default()
        };
        event.attributes.insert("datacontenttype".into(), string_attr("application/json"));
        event.attributes.insert("subject".into(), string_attr("naïve"));
        let (pairs, body) = encode(&event);
        assert!(pairs.contains(&("ce-subject".into(), "na%C3%AFve".into())), "{pairs:?}");
        assert!(pairs.contains(&("ce-source".into(), "/s%25%22".into())), "{pairs:?}");
        let h: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(decode(&headers(&h), &body).unwrap(), event);
    }
}
