//! Which executor answers a command: aliases are expanded first, then the
//! longest matching prefix (in whole words) wins.

use std::collections::BTreeMap;

/// A prefix or alias claimed twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("prefix {prefix:?} of executor {executor:?} is already claimed by executor {existing:?}")]
    PrefixConflict { prefix: String, executor: String, existing: String },
    #[error("alias {alias:?} of executor {executor:?} is already defined by executor {existing:?}")]
    AliasConflict { alias: String, executor: String, existing: String },
}

/// Why a command could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("empty command")]
    Empty,
    #[error("cannot parse command: {0}")]
    Syntax(String),
    #[error("unknown command {command:?}{}. Known prefixes: {}",
        if suggestions.is_empty() { String::new() } else { format!(" (did you mean {}?)", suggestions.join(", ")) },
        if known.is_empty() { "none (no executors are configured)".to_owned() } else { known.join(", ") })]
    Unknown { command: String, suggestions: Vec<String>, known: Vec<String> },
}

/// A resolved command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub executor: String,
    pub prefix: String,
    pub args: Vec<String>,
    /// The command text after alias expansion.
    pub command: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandTable {
    /// prefix words → executor
    prefixes: BTreeMap<Vec<String>, String>,
    /// alias words → (expansion words, executor that defined it)
    aliases: BTreeMap<Vec<String>, (Vec<String>, String)>,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

impl CommandTable {
    pub fn add_prefix(&mut self, prefix: &str, executor: &str) -> Result<(), TableError> {
        let key = words(prefix);
        if let Some(existing) = self.prefixes.get(&key) {
            return Err(TableError::PrefixConflict {
                prefix: prefix.to_owned(),
                executor: executor.to_owned(),
                existing: existing.clone(),
            });
        }
        self.prefixes.insert(key, executor.to_owned());
        Ok(())
    }

    pub fn add_alias(&mut self, alias: &str, expansion: &str, executor: &str) -> Result<(), TableError> {
        let key = words(alias);
        if let Some((_, existing)) = self.aliases.get(&key) {
            return Err(TableError::AliasConflict {
                alias: alias.to_owned(),
                executor: executor.to_owned(),
                existing: existing.clone(),
            });
        }
        self.aliases.insert(key, (words(expansion), executor.to_owned()));
        Ok(())
    }

    /// Every prefix, sorted.
    pub fn prefixes(&self) -> Vec<String> {
        self.prefixes.keys().map(|k| k.join(" ")).collect()
    }

    /// (prefix, executor) pairs, sorted by prefix.
    pub fn entries(&self) -> impl Iterator<Item = (String, &str)> {
        self.prefixes.iter().map(|(k, v)| (k.join(" "), v.as_str()))
    }

    /// (alias, expansion) pairs, sorted by alias.
    pub fn aliases(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.aliases.iter().map(|(k, (v, _))| (k.join(" "), v.join(" ")))
    }

    /// Splits `line` like a shell and resolves it.
    pub fn resolve_line(&self, line: &str) -> Result<Resolved, ResolveError> {
        let words = shell_words::split(line).map_err(|e| ResolveError::Syntax(e.to_string()))?;
        self.resolve(words)
    }

    /// Resolves already-split words.
    pub fn resolve(&self, mut words: Vec<String>) -> Result<Resolved, ResolveError> {
        if words.is_empty() {
            return Err(ResolveError::Empty);
        }
        if let Some((len, expansion)) = longest_match(&self.aliases, &words).map(|(len, (exp, _))| (len, exp.clone())) {
            words.splice(..len, expansion);
        }
        let command = shell_words::join(&words);
        match longest_match(&self.prefixes, &words) {
            Some((len, executor)) => Ok(Resolved {
                executor: executor.clone(),
                prefix: words[..len].join(" "),
                args: words[len..].to_vec(),
                command,
            }),
            None => {
                Err(ResolveError::Unknown { suggestions: self.closest(&words[0]), known: self.prefixes(), command })
            }
        }
    }

    /// Prefixes whose first word is close to `word` (edit distance).
    fn closest(&self, word: &str) -> Vec<String> {
        let mut scored: Vec<(usize, String)> = self
            .prefixes
            .keys()
            .map(|k| (strsim::damerau_levenshtein(word, &k[0]), k.join(" ")))
            .filter(|(d, p)| *d <= 2.max(word.len() / 3) && *d < p.len())
            .collect();
        scored.sort();
        scored.into_iter().take(3).map(|(_, p)| p).collect()
    }
}

/// The longest key whose words start `words`.
fn longest_match<'a, V>(map: &'a BTreeMap<Vec<String>, V>, words: &[String]) -> Option<(usize, &'a V)> {
    (1..=words.len()).rev().find_map(|n| map.get(&words[..n]).map(|v| (n, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CommandTable {
        let mut t = CommandTable::default();
        t.add_prefix("kubectl", "k8s").unwrap();
        t.add_prefix("kubectl logs", "logs").unwrap();
        t.add_prefix("echo", "echo").unwrap();
        t.add_alias("k", "kubectl", "k8s").unwrap();
        t.add_alias("kl", "kubectl logs", "logs").unwrap();
        t
    }

    #[test]
    fn longest_prefix_wins() {
        let r = table().resolve_line("kubectl logs pod-1 -f").unwrap();
        assert_eq!(r.executor, "logs");
        assert_eq!(r.prefix, "kubectl logs");
        assert_eq!(r.args, ["pod-1", "-f"]);
        let r = table().resolve_line("kubectl get pods").unwrap();
        assert_eq!(r.executor, "k8s");
        assert_eq!(r.args, ["get", "pods"]);
    }

    #[test]
    fn prefixes_match_whole_words_only() {
        let err = table().resolve_line("echoes hi").unwrap_err();
        assert!(matches!(err, ResolveError::Unknown { .. }));
        let r = table().resolve_line("echo").unwrap();
        assert!(r.args.is_empty());
    }

    #[test]
    fn aliases_expand_first_including_multi_word() {
        let r = table().resolve_line("k get pods").unwrap();
        assert_eq!((r.executor.as_str(), r.command.as_str()), ("k8s", "kubectl get pods"));
        let r = table().resolve_line("kl pod-1").unwrap();
        assert_eq!((r.executor.as_str(), r.prefix.as_str()), ("logs", "kubectl logs"));
    }

    #[test]
    fn shell_quoting_is_respected() {
        let r = table().resolve_line("echo 'hello   world' \"a b\"").unwrap();
        assert_eq!(r.args, ["hello   world", "a b"]);
        assert!(matches!(table().resolve_line("echo 'open"), Err(ResolveError::Syntax(_))));
        assert_eq!(table().resolve_line("   "), Err(ResolveError::Empty));
    }

    #[test]
    fn unknown_commands_list_known_prefixes_and_suggest() {
        let err = table().resolve_line("ecko hi").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown command \"ecko hi\" (did you mean echo?). Known prefixes: echo, kubectl, kubectl logs"
        );
        let err = CommandTable::default().resolve_line("x").unwrap_err();
        assert!(err.to_string().ends_with("Known prefixes: none (no executors are configured)"));
    }

    #[test]
    fn a_prefix_claimed_twice_is_an_error() {
        let mut t = table();
        let err = t.add_prefix("kubectl", "other").unwrap_err();
        assert_eq!(err.to_string(), "prefix \"kubectl\" of executor \"other\" is already claimed by executor \"k8s\"");
        assert!(t.add_alias("k", "echo", "echo").is_err());
    }
}
