//! The CloudEvents Subscriptions API filter dialects (spec §3.2.4.1.1):
//! `exact`, `prefix`, `suffix` over attribute values (case sensitive, every
//! named attribute must match, a missing attribute never matches), and the
//! combinators `all`, `any`, `not`. In YAML, as in the spec's JSON:
//!
//! ```yaml
//! filters:
//!   - prefix: { type: com.github. }
//!   - not: { exact: { subject: noise } }
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;

use plugboard_proto::CloudEvent;
use serde::Deserialize;

/// One filter expression.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Dialects")]
pub enum Filter {
    Exact(BTreeMap<String, String>),
    Prefix(BTreeMap<String, String>),
    Suffix(BTreeMap<String, String>),
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
}

/// The spec's JSON shape, `{ "<dialect>": ... }`, as YAML reads it: a map
/// that sets exactly one dialect.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dialects {
    exact: Option<BTreeMap<String, String>>,
    prefix: Option<BTreeMap<String, String>>,
    suffix: Option<BTreeMap<String, String>>,
    all: Option<Vec<Filter>>,
    any: Option<Vec<Filter>>,
    not: Option<Box<Filter>>,
}

impl TryFrom<Dialects> for Filter {
    type Error = String;

    fn try_from(d: Dialects) -> Result<Self, String> {
        let mut set = Vec::new();
        let mut filter = None;
        let mut take = |name: &'static str, f: Option<Filter>| {
            if let Some(f) = f {
                set.push(name);
                filter = Some(f);
            }
        };
        take("exact", d.exact.map(Filter::Exact));
        take("prefix", d.prefix.map(Filter::Prefix));
        take("suffix", d.suffix.map(Filter::Suffix));
        take("all", d.all.map(Filter::All));
        take("any", d.any.map(Filter::Any));
        take("not", d.not.map(Filter::Not));
        match (set.len(), filter) {
            (1, Some(f)) => Ok(f),
            _ => Err(format!(
                "a filter expression sets exactly one of exact, prefix, suffix, all, any, not (found {})",
                if set.is_empty() { "none".to_owned() } else { set.join(", ") }
            )),
        }
    }
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &CloudEvent) -> bool {
        match self {
            Filter::Exact(m) => each(m, event, |value, wanted| value == wanted),
            Filter::Prefix(m) => each(m, event, |value, wanted| value.starts_with(wanted)),
            Filter::Suffix(m) => each(m, event, |value, wanted| value.ends_with(wanted)),
            Filter::All(filters) => filters.iter().all(|f| f.matches(event)),
            Filter::Any(filters) => filters.iter().any(|f| f.matches(event)),
            Filter::Not(filter) => !filter.matches(event),
        }
    }

    /// What the spec forbids: empty names or values, empty `all`/`any`.
    pub fn problems(&self, at: &str, problems: &mut Vec<String>) {
        let attributes = |dialect: &str, m: &BTreeMap<String, String>, problems: &mut Vec<String>| {
            if m.is_empty() {
                problems.push(format!("{at}: `{dialect}` names no attribute"));
            }
            for (name, value) in m {
                if let Err(e) = plugboard_proto::event::validate_attribute_name(name)
                    && !matches!(name.as_str(), "id" | "source" | "specversion" | "type")
                {
                    problems.push(format!("{at}: `{dialect}`: {e}"));
                }
                if value.is_empty() {
                    problems.push(format!("{at}: `{dialect}` value for {name:?} must not be empty"));
                }
            }
        };
        match self {
            Filter::Exact(m) => attributes("exact", m, problems),
            Filter::Prefix(m) => attributes("prefix", m, problems),
            Filter::Suffix(m) => attributes("suffix", m, problems),
            Filter::All(filters) | Filter::Any(filters) => {
                let dialect = if matches!(self, Filter::All(_)) { "all" } else { "any" };
                if filters.is_empty() {
                    problems.push(format!("{at}: `{dialect}` needs at least one filter expression"));
                }
                for (i, f) in filters.iter().enumerate() {
                    f.problems(&format!("{at}.{dialect}[{i}]"), problems);
                }
            }
            Filter::Not(f) => f.problems(&format!("{at}.not"), problems),
        }
    }
}

fn each(m: &BTreeMap<String, String>, event: &CloudEvent, test: impl Fn(&str, &str) -> bool) -> bool {
    m.iter().all(|(name, wanted)| attribute_text(event, name).is_some_and(|value| test(&value, wanted)))
}

/// An attribute's value as text (the CloudEvents canonical string form), or
/// `None` when the event does not have it.
pub fn attribute_text<'a>(event: &'a CloudEvent, name: &str) -> Option<Cow<'a, str>> {
    use plugboard_proto::io::cloudevents::v1::cloud_event::cloud_event_attribute_value::Attr;
    match name {
        "id" => Some(Cow::Borrowed(&event.id)),
        "source" => Some(Cow::Borrowed(&event.source)),
        "specversion" => Some(Cow::Borrowed(&event.spec_version)),
        "type" => Some(Cow::Borrowed(&event.r#type)),
        _ => match event.attributes.get(name)?.attr.as_ref()? {
            Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s) => Some(Cow::Borrowed(s)),
            attr => Some(Cow::Owned(plugboard_proto::event::attr_text(attr))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_proto::event::string_attr;

    fn event(ty: &str, subject: Option<&str>) -> CloudEvent {
        let mut e = CloudEvent {
            id: "1".into(),
            source: "/github/cloudevents/spec".into(),
            spec_version: "1.0".into(),
            r#type: ty.into(),
            ..Default::default()
        };
        if let Some(s) = subject {
            e.attributes.insert("subject".into(), string_attr(s));
        }
        e
    }

    fn parse(yaml: &str) -> Filter {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn exact_prefix_and_suffix_match_every_named_attribute() {
        let push = event("com.github.push", Some("https://github.com/cloudevents/spec"));
        let issue = event("com.github.issue.created", None);
        let exact = parse("exact: { type: com.github.push, subject: 'https://github.com/cloudevents/spec' }");
        assert!(exact.matches(&push));
        assert!(!exact.matches(&issue));
        let prefix = parse("prefix: { type: com.github. }");
        assert!(prefix.matches(&push) && prefix.matches(&issue));
        assert!(!parse("prefix: { type: com.gitlab. }").matches(&push));
        let suffix = parse("suffix: { type: .created }");
        assert!(suffix.matches(&issue) && !suffix.matches(&push));
        assert!(parse("suffix: { source: /spec }").matches(&push));
        // Case sensitive.
        assert!(!parse("exact: { type: COM.GITHUB.PUSH }").matches(&push));
    }

    #[test]
    fn a_missing_attribute_never_matches() {
        let issue = event("com.github.issue.created", None);
        assert!(!parse("prefix: { subject: https }").matches(&issue));
        assert!(!parse("exact: { subject: x }").matches(&issue));
        // ... but `not` of it does.
        assert!(parse("not: { exact: { subject: x } }").matches(&issue));
    }

    #[test]
    fn all_any_and_not_combine() {
        let push = event("com.github.push", Some("main"));
        let all = parse("all:\n  - prefix: { type: com.github. }\n  - exact: { subject: main }\n");
        assert!(all.matches(&push));
        assert!(!all.matches(&event("com.github.push", Some("dev"))));
        let any = parse("any:\n  - exact: { type: a }\n  - suffix: { type: .push }\n");
        assert!(any.matches(&push));
        assert!(!any.matches(&event("b", None)));
        let not = parse("not:\n  any:\n    - exact: { type: com.github.push }\n");
        assert!(!not.matches(&push));
        assert!(not.matches(&event("x", None)));
    }

    #[test]
    fn extension_attributes_match_by_their_text() {
        let mut e = event("t", None);
        e.attributes.insert(
            "priority".into(),
            plugboard_proto::CloudEventAttributeValue {
                attr: Some(
                    plugboard_proto::io::cloudevents::v1::cloud_event::cloud_event_attribute_value::Attr::CeInteger(7),
                ),
            },
        );
        assert!(parse("exact: { priority: '7' }").matches(&e));
    }

    #[test]
    fn what_the_spec_forbids_is_reported() {
        let mut problems = Vec::new();
        parse("all: []").problems("routes[0].filters[0]", &mut problems);
        parse("exact: { type: '' }").problems("f", &mut problems);
        parse("prefix: { Bad-Name: x }").problems("g", &mut problems);
        parse("not: { any: [] }").problems("h", &mut problems);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("routes[0].filters[0]: `all` needs at least one"), "{problems:?}");
        assert!(problems[1].contains("value for \"type\" must not be empty"), "{problems:?}");
        assert!(problems[2].contains("Bad-Name"), "{problems:?}");
        assert!(problems[3].starts_with("h.not: `any`"), "{problems:?}");
        let err = serde_yaml::from_str::<Filter>("sql: \"type = 'x'\"").unwrap_err().to_string();
        assert!(err.contains("unknown field `sql`"), "{err}");
        let err =
            serde_yaml::from_str::<Filter>("{ exact: { type: a }, prefix: { type: b } }").unwrap_err().to_string();
        assert!(err.contains("exactly one of exact, prefix, suffix, all, any, not (found exact, prefix)"), "{err}");
    }
}
