//! The checker's report: one line per item, pass/warn/fail, with a one-line
//! fix hint under every item that did not pass.

use std::fmt;

/// How one item came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Not required; worth fixing.
    Warn,
    /// Required; the plugin is not conformant.
    Fail,
    /// Not checked because an earlier required item failed.
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One checked item.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    /// How to fix it (shown unless the item passed).
    pub hint: String,
}

/// Everything checked about one plugin.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub path: String,
    pub items: Vec<Item>,
}

impl Report {
    pub fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, Outcome::Pass, detail, "");
    }

    pub fn warn(&mut self, name: &'static str, detail: impl Into<String>, hint: impl Into<String>) {
        self.push(name, Outcome::Warn, detail, hint);
    }

    pub fn fail(&mut self, name: &'static str, detail: impl Into<String>, hint: impl Into<String>) {
        self.push(name, Outcome::Fail, detail, hint);
    }

    pub fn skip(&mut self, names: &[&'static str], because: &str) {
        for name in names {
            self.push(name, Outcome::Skip, format!("not checked: {because}"), "");
        }
    }

    fn push(&mut self, name: &'static str, outcome: Outcome, detail: impl Into<String>, hint: impl Into<String>) {
        self.items.push(Item { name, outcome, detail: detail.into(), hint: hint.into() });
    }

    pub fn outcome(&self, name: &str) -> Option<Outcome> {
        self.items.iter().find(|i| i.name == name).map(|i| i.outcome)
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.items.iter().filter(|i| i.outcome == outcome).count()
    }

    /// Conformant: no required item failed.
    pub fn passed(&self) -> bool {
        self.count(Outcome::Fail) == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plugboard plugin check {}", self.path)?;
        for item in &self.items {
            // Multi-line details (stderr excerpts) stay readable, indented.
            let mut lines = item.detail.lines();
            writeln!(f, "{}  {:<22} {}", item.outcome.label(), item.name, lines.next().unwrap_or_default())?;
            for line in lines {
                writeln!(f, "      {:<22} {line}", "")?;
            }
            if item.outcome != Outcome::Pass && !item.hint.is_empty() {
                writeln!(f, "      {:<22} fix: {}", "", item.hint)?;
            }
        }
        let verdict = if self.passed() { "conformant" } else { "NOT conformant" };
        write!(
            f,
            "{verdict}: {} checks passed, {} warnings, {} failed, {} not checked",
            self.count(Outcome::Pass),
            self.count(Outcome::Warn),
            self.count(Outcome::Fail),
            self.count(Outcome::Skip)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_show_their_hint_and_decide_the_verdict() {
        let mut r = Report { path: "p".into(), ..Default::default() };
        r.pass("cookie", "refused");
        r.warn("stdio", "absent", "serve plugin.GRPCStdio");
        assert!(r.passed());
        r.fail("health", "NOT_SERVING\nsecond line", "set plugin to SERVING");
        assert!(!r.passed());
        let text = r.to_string();
        assert!(text.contains("PASS  cookie "), "{text}");
        assert!(text.contains("fix: serve plugin.GRPCStdio"), "{text}");
        assert!(text.contains("FAIL  health"), "{text}");
        assert!(text.contains("\n                             second line"), "{text}");
        assert!(text.ends_with("NOT conformant: 1 checks passed, 1 warnings, 1 failed, 0 not checked"), "{text}");
    }
}
