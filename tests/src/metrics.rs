//! A reader for the Prometheus text format `GET /metrics` serves: enough to
//! find one sample by name and labels.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// All samples of a scrape (comments and blank lines skipped).
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).ok_or_else(|| format!("not a Prometheus sample line: {l:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let close = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => {}
                '=' => {
                    let (_, quote) = chars.next()?;
                    if quote != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        };
        rest = &body[close + 1..];
    }
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// The value of the sample named `name` whose labels include all of `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
}

/// `GET /metrics` of a running host, parsed (panics on a non-200 answer or a bad line).
pub fn scrape(addr: &str) -> Vec<Sample> {
    let mut response = crate::http_client().get(&format!("http://{addr}/metrics")).call().expect("GET /metrics");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("metrics body");
    assert_eq!(status, 200, "GET /metrics: {text}");
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_labels_escapes_and_timestamps() {
        let text = "# HELP plugboard_plugin_up Up.\n# TYPE plugboard_plugin_up gauge\n\
            plugboard_plugin_up{instance=\"a\",kind=\"source\",plugin=\"fa\\\"ulty\"} 1\n\
            plugboard_events_stored_total{source=\"x,y\"} 12 1700000000\n\
            plugboard_command_duration_seconds_bucket{executor=\"e\",le=\"+Inf\"} 3\n\
            up 0\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].labels["plugin"], "fa\"ulty");
        assert_eq!(value(&samples, "plugboard_plugin_up", &[("instance", "a"), ("kind", "source")]), Some(1.0));
        assert_eq!(value(&samples, "plugboard_events_stored_total", &[("source", "x,y")]), Some(12.0));
        assert_eq!(value(&samples, "plugboard_command_duration_seconds_bucket", &[("le", "+Inf")]), Some(3.0));
        assert_eq!(value(&samples, "up", &[]), Some(0.0));
        assert_eq!(value(&samples, "plugboard_plugin_up", &[("instance", "b")]), None);
        assert!(parse("plugboard_x{a=\"1\" 2").is_err());
    }
}
