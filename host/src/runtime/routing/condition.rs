//! A route's condition on an event: a CEL expression (the `cel` crate, the
//! continuation of cel-interpreter) over two variables:
//!
//! - `data`: the event's data — parsed JSON when it is JSON, a string for
//!   other text, bytes for binary data, `null` when there is none;
//! - `event`: every attribute by name (`event.type`, `event.subject`,
//!   extensions...) plus `event.data`.
//!
//! For example `data.severity == "critical" && event.type.startsWith("com.example.")`.
//! An expression that errors for an event (a missing key, a type mismatch)
//! does not match it; `has(data.severity)` tests for a key first.

use std::sync::Arc;

use plugboard_proto::CloudEvent;
use plugboard_proto::io::cloudevents::v1::cloud_event::Data;
use plugboard_proto::io::cloudevents::v1::cloud_event::cloud_event_attribute_value::Attr;
use serde_json::Value as Json;

pub struct Condition {
    source: String,
    program: cel::Program,
    env: Arc<cel::Env>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl Condition {
    /// Compiles `source`; the error says where it does not parse.
    pub fn compile(source: &str) -> Result<Self, String> {
        let env = Arc::new(cel::Env::stdlib());
        let program = env.compile(source).map_err(|e| e.to_string().trim().to_owned())?;
        Ok(Self { source: source.to_owned(), program, env })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition for `event`: true only when it yields `true`.
    pub fn evaluate(&self, event: &CloudEvent) -> Result<bool, String> {
        let data = data_value(event);
        let mut attributes = serde_json::Map::with_capacity(event.attributes.len() + 5);
        attributes.insert("id".into(), Json::from(event.id.as_str()));
        attributes.insert("source".into(), Json::from(event.source.as_str()));
        attributes.insert("specversion".into(), Json::from(event.spec_version.as_str()));
        attributes.insert("type".into(), Json::from(event.r#type.as_str()));
        for (name, value) in &event.attributes {
            let value = match value.attr.as_ref() {
                Some(Attr::CeBoolean(b)) => Json::from(*b),
                Some(Attr::CeInteger(i)) => Json::from(*i),
                Some(Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s)) => Json::from(s.as_str()),
                Some(attr) => Json::from(plugboard_proto::event::attr_text(attr)),
                None => continue,
            };
            attributes.insert(name.clone(), value);
        }
        let data_cel = match data {
            DataValue::Json(json) => json_to_cel(&json),
            DataValue::Bytes(bytes) => cel::Value::Bytes(Arc::new(bytes.to_vec())),
        };
        let mut entries = match json_to_cel(&Json::Object(attributes)) {
            cel::Value::Map(map) => (*map.map).clone(),
            _ => Default::default(),
        };
        entries.insert(cel::objects::Key::String(Arc::new("data".to_owned())), data_cel.clone());
        let event_map = cel::objects::Map { map: Arc::new(entries) };
        let mut context = cel::Context::with_env(Arc::clone(&self.env));
        context.add_variable_from_value("data", data_cel);
        context.add_variable_from_value("event", cel::Value::Map(event_map));
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("the condition yielded {other:?}, not a boolean")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// JSON as CEL. Integral numbers become `int` (not `uint`, as serde would
/// make non-negative ones), so `data.n % 2 == 0` and `data.n > 3` work with
/// CEL's int literals; other numbers become `double`.
fn json_to_cel(json: &Json) -> cel::Value {
    match json {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(items) => cel::Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Json::Object(map) => cel::Value::Map(cel::objects::Map {
            map: Arc::new(
                map.iter().map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), json_to_cel(v))).collect(),
            ),
        }),
    }
}

enum DataValue<'a> {
    Json(Json),
    Bytes(&'a [u8]),
}

fn data_value(event: &CloudEvent) -> DataValue<'_> {
    match &event.data {
        None => DataValue::Json(Json::Null),
        Some(Data::TextData(text)) => {
            DataValue::Json(serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.clone())))
        }
        Some(Data::BinaryData(bytes)) => DataValue::Bytes(bytes),
        Some(Data::ProtoData(any)) => DataValue::Bytes(&any.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_proto::event::string_attr;

    fn event(data: &str) -> CloudEvent {
        let mut e = CloudEvent {
            id: "1".into(),
            source: "/am".into(),
            spec_version: "1.0".into(),
            r#type: "com.example.alert".into(),
            data: Some(Data::TextData(data.into())),
            ..Default::default()
        };
        e.attributes.insert("subject".into(), string_attr("disk"));
        e
    }

    #[test]
    fn conditions_see_json_data_and_attributes() {
        let c = Condition::compile(r#"data.severity == "critical" && data.value > 90"#).unwrap();
        assert_eq!(c.evaluate(&event(r#"{"severity":"critical","value":95}"#)), Ok(true));
        assert_eq!(c.evaluate(&event(r#"{"severity":"critical","value":50}"#)), Ok(false));
        let c = Condition::compile(r#"event.type.startsWith("com.example.") && event.subject == "disk""#).unwrap();
        assert_eq!(c.evaluate(&event("{}")), Ok(true));
        let c = Condition::compile(r#"event.data.labels.team in ["db", "infra"]"#).unwrap();
        assert_eq!(c.evaluate(&event(r#"{"labels":{"team":"db"}}"#)), Ok(true));
    }

    #[test]
    fn json_integers_are_cel_ints_and_fractions_doubles() {
        let c = Condition::compile("data.index % 2 == 0 && data.index > 3 && data.ratio < 0.5").unwrap();
        assert_eq!(c.evaluate(&event(r#"{"index":4,"ratio":0.25}"#)), Ok(true));
        assert_eq!(c.evaluate(&event(r#"{"index":5,"ratio":0.25}"#)), Ok(false));
        let c = Condition::compile("data.delta == -3").unwrap();
        assert_eq!(c.evaluate(&event(r#"{"delta":-3}"#)), Ok(true));
    }

    #[test]
    fn a_missing_key_is_an_error_and_has_tests_for_it() {
        let c = Condition::compile(r#"data.severity == "critical""#).unwrap();
        assert!(c.evaluate(&event("{}")).is_err());
        let c = Condition::compile(r#"has(data.severity) && data.severity == "critical""#).unwrap();
        assert_eq!(c.evaluate(&event("{}")), Ok(false));
    }

    #[test]
    fn non_boolean_results_and_syntax_errors_are_reported() {
        assert!(Condition::compile("data.severity ==").is_err());
        let c = Condition::compile("1 + 1").unwrap();
        assert!(c.evaluate(&event("{}")).unwrap_err().contains("not a boolean"));
    }

    #[test]
    fn text_data_that_is_not_json_is_a_string() {
        let c = Condition::compile(r#"data.contains("disk full")"#).unwrap();
        let mut e = event("the disk full again");
        e.attributes.insert("datacontenttype".into(), string_attr("text/plain"));
        assert_eq!(c.evaluate(&e), Ok(true));
    }
}
