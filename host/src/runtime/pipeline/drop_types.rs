//! Per source instance, event types dropped before they are stored
//! (ManageIQ's blacklisted event names): exact names, or `prefix*`.

use std::collections::HashSet;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DropTypes {
    exact: HashSet<String>,
    prefixes: Vec<String>,
}

impl DropTypes {
    /// Compiles the patterns; the error names the first bad one.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut drop = Self::default();
        for p in patterns {
            match p.find('*') {
                None if !p.is_empty() => {
                    drop.exact.insert(p.clone());
                }
                Some(star) if star == p.len() - 1 => drop.prefixes.push(p[..star].to_owned()),
                _ => {
                    return Err(format!(
                        "drop_types pattern {p:?} must be an event type or a prefix followed by a single trailing '*'"
                    ));
                }
            }
        }
        Ok(drop)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// Whether events of type `ty` are dropped.
    pub fn drops(&self, ty: &str) -> bool {
        self.exact.contains(ty) || self.prefixes.iter().any(|p| ty.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_prefixes() {
        let d = DropTypes::new(&["a.noise".into(), "com.example.debug.*".into()]).unwrap();
        assert!(d.drops("a.noise"));
        assert!(!d.drops("a.noise.more"));
        assert!(d.drops("com.example.debug.x"));
        assert!(d.drops("com.example.debug."));
        assert!(!d.drops("com.example.debu"));
        assert!(!d.drops("other"));
        assert!(DropTypes::new(&["*".into()]).unwrap().drops("anything"));
    }

    #[test]
    fn misplaced_stars_are_refused() {
        let err = DropTypes::new(&["a*b".into()]).unwrap_err();
        assert!(err.contains("\"a*b\""), "{err}");
        assert!(DropTypes::new(&["**".into()]).is_err());
        assert!(DropTypes::new(&["".into()]).is_err());
    }
}
