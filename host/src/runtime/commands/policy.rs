//! Who may run what. Without any policy every command is allowed (a fresh
//! install works out of the box); once one policy is configured, a command
//! runs only if an `allow` policy matches it and no `deny` policy does.
//!
//! A policy matches a caller when every selector it sets matches (users,
//! groups, channels, platforms: exact names or globs); it matches a command
//! when one of its `commands` globs does. A command glob without a wildcard
//! matches that command and everything under it, word-wise: `kubectl get`
//! matches `kubectl get pods` but not `kubectl getx`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One policy in `commands.policies`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Shown in denials and audit events.
    #[serde(default)]
    pub name: Option<String>,
    pub effect: Effect,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Command globs (after alias expansion); empty means every command.
    #[serde(default)]
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// Who asks for a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    /// Other names of the same user (e.g. a Slack user id beside the name);
    /// policies naming any of them match.
    pub user_aliases: Vec<String>,
    pub groups: Vec<String>,
    pub channel: String,
    pub platform: String,
}

/// The verdict on one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { reason: String },
}

/// The compiled `commands.policies` plus `commands.groups`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<PolicyConfig>,
    /// user → groups, from `commands.groups`.
    memberships: BTreeMap<String, Vec<String>>,
}

impl Policy {
    pub fn new(rules: Vec<PolicyConfig>, groups: &BTreeMap<String, Vec<String>>) -> Self {
        let mut memberships: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, members) in groups {
            for member in members {
                memberships.entry(member.clone()).or_default().push(group.clone());
            }
        }
        Self { rules, memberships }
    }

    /// Whether any policy is configured (deny by default from then on).
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Adds the groups `commands.groups` gives the caller's names.
    pub fn with_groups(&self, mut caller: Caller) -> Caller {
        for name in std::iter::once(&caller.user).chain(&caller.user_aliases) {
            if let Some(groups) = self.memberships.get(name) {
                for g in groups {
                    if !caller.groups.contains(g) {
                        caller.groups.push(g.clone());
                    }
                }
            }
        }
        caller
    }

    fn matching<'a>(&'a self, caller: &'a Caller) -> impl Iterator<Item = &'a PolicyConfig> + 'a {
        self.rules.iter().filter(move |r| r.matches_caller(caller))
    }

    /// The verdict on `command` (the command text after alias expansion).
    pub fn decide(&self, caller: &Caller, command: &str) -> Decision {
        if !self.enabled() {
            return Decision::Allow;
        }
        let mut allowed = false;
        for rule in self.matching(caller) {
            if rule.commands.is_empty() || rule.commands.iter().any(|p| command_matches(p, command)) {
                match rule.effect {
                    Effect::Deny => {
                        return Decision::Deny { reason: format!("denied by policy {}", rule.label()) };
                    }
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed { Decision::Allow } else { Decision::Deny { reason: "no policy allows it".into() } }
    }

    /// Whether the caller may run at least some command under `prefix`
    /// (what `help` lists): an allow policy reaches into it and no deny
    /// policy covers all of it.
    pub fn may_use_prefix(&self, caller: &Caller, prefix: &str) -> bool {
        if !self.enabled() {
            return true;
        }
        let mut reachable = false;
        for rule in self.matching(caller) {
            match rule.effect {
                Effect::Deny if rule.commands.is_empty() || rule.commands.iter().any(|p| covers(p, prefix)) => {
                    return false;
                }
                Effect::Allow if rule.commands.is_empty() || rule.commands.iter().any(|p| reaches(p, prefix)) => {
                    reachable = true;
                }
                _ => {}
            }
        }
        reachable
    }

    /// Problems with the policies (reported with the rest of the config).
    pub fn problems(rules: &[PolicyConfig]) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            for c in &r.commands {
                if c.trim().is_empty() {
                    problems.push(format!("commands.policies[{i}]: empty command pattern"));
                }
            }
        }
        problems
    }
}

impl PolicyConfig {
    fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{name:?}"),
            None => "(unnamed)".into(),
        }
    }

    fn matches_caller(&self, caller: &Caller) -> bool {
        fn any<'a>(patterns: &[String], mut values: impl Iterator<Item = &'a String>) -> bool {
            patterns.is_empty() || values.any(|v| patterns.iter().any(|p| glob(p, v)))
        }
        any(&self.users, std::iter::once(&caller.user).chain(&caller.user_aliases))
            && any(&self.groups, caller.groups.iter())
            && any(&self.channels, std::iter::once(&caller.channel))
            && any(&self.platforms, std::iter::once(&caller.platform))
    }
}

fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Whether a command pattern matches a command.
pub fn command_matches(pattern: &str, command: &str) -> bool {
    let pattern = normalise(pattern);
    let command = normalise(command);
    if has_wildcard(&pattern) {
        glob(&pattern, &command)
    } else {
        command == pattern || command.strip_prefix(&pattern).is_some_and(|rest| rest.starts_with(' '))
    }
}

/// Whether the pattern matches every command under `prefix`.
fn covers(pattern: &str, prefix: &str) -> bool {
    let pattern = normalise(pattern);
    if has_wildcard(&pattern) {
        pattern.ends_with('*') && glob(&pattern, prefix)
    } else {
        command_matches(&pattern, prefix)
    }
}

/// Whether the pattern matches some command under `prefix`.
fn reaches(pattern: &str, prefix: &str) -> bool {
    let pattern = normalise(pattern);
    let literal = pattern.split(['*', '?']).next().unwrap_or_default();
    covers(&pattern, prefix)
        || command_matches(&pattern, prefix)
        || literal.starts_with(&format!("{prefix} "))
        || (has_wildcard(&pattern) && prefix.starts_with(literal))
}

fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `*` matches any run of characters, `?` one character; everything else is literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(effect: Effect, users: &[&str], commands: &[&str]) -> PolicyConfig {
        PolicyConfig {
            name: None,
            effect,
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: vec![],
            channels: vec![],
            platforms: vec![],
            commands: commands.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn caller(user: &str) -> Caller {
        Caller { user: user.into(), channel: "#ops".into(), platform: "slack".into(), ..Caller::default() }
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("kube*", "kubectl get"));
        assert!(glob("k?bectl", "kubectl"));
        assert!(!glob("kube*x", "kubectl"));
        assert!(glob("*get*", "kubectl get pods"));
    }

    #[test]
    fn no_policy_allows_everything_one_policy_denies_by_default() {
        let open = Policy::default();
        assert_eq!(open.decide(&caller("eve"), "rm -rf"), Decision::Allow);
        let p = Policy::new(vec![rule(Effect::Allow, &["alice"], &["echo"])], &BTreeMap::new());
        assert_eq!(p.decide(&caller("alice"), "echo hi"), Decision::Allow);
        assert!(matches!(p.decide(&caller("bob"), "echo hi"), Decision::Deny { .. }));
        assert!(matches!(p.decide(&caller("alice"), "echoes"), Decision::Deny { .. }));
    }

    #[test]
    fn deny_wins_and_groups_come_from_config() {
        let groups = BTreeMap::from([("ops".to_string(), vec!["bob".to_string()])]);
        let mut allow_ops = rule(Effect::Allow, &[], &["*"]);
        allow_ops.groups = vec!["ops".into()];
        let deny = rule(Effect::Deny, &["bob"], &["kubectl delete"]);
        let p = Policy::new(vec![allow_ops, deny], &groups);
        let bob = p.with_groups(caller("bob"));
        assert_eq!(bob.groups, ["ops"]);
        assert_eq!(p.decide(&bob, "kubectl get pods"), Decision::Allow);
        assert!(
            matches!(p.decide(&bob, "kubectl delete pod x"), Decision::Deny { reason } if reason.contains("(unnamed)"))
        );
        assert!(matches!(p.decide(&caller("carol"), "echo"), Decision::Deny { .. }));
    }

    #[test]
    fn channel_and_platform_selectors() {
        let mut r = rule(Effect::Allow, &[], &[]);
        r.channels = vec!["#ops*".into()];
        r.platforms = vec!["slack".into()];
        let p = Policy::new(vec![r], &BTreeMap::new());
        assert_eq!(p.decide(&caller("x"), "anything"), Decision::Allow);
        let mut elsewhere = caller("x");
        elsewhere.channel = "#random".into();
        assert!(matches!(p.decide(&elsewhere, "anything"), Decision::Deny { .. }));
    }

    #[test]
    fn help_lists_prefixes_the_caller_can_reach() {
        let p = Policy::new(
            vec![rule(Effect::Allow, &["alice"], &["kubectl get", "echo"]), rule(Effect::Deny, &["alice"], &["date*"])],
            &BTreeMap::new(),
        );
        let alice = caller("alice");
        assert!(p.may_use_prefix(&alice, "kubectl"));
        assert!(p.may_use_prefix(&alice, "echo"));
        assert!(!p.may_use_prefix(&alice, "date"));
        assert!(!p.may_use_prefix(&alice, "http"));
        assert!(!p.may_use_prefix(&caller("bob"), "echo"));
    }
}
