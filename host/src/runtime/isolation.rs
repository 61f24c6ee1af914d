//! Isolation settings of plugin processes in the config: resource limits,
//! the environment, the user they run as, and the largest gRPC message.
//!
//! They can be set at three levels, the most specific winning field by field:
//! the top level (`limits:`, `env_allow:`, `max_message_size:`), per
//! executable (`plugins: {<file name>: ...}`) and per instance (a source,
//! executor or plugin sink). `env` maps merge (the instance's value wins),
//! `env_allow` lists add up.
//!
//! ```yaml
//! limits: { open_files: 1024 }            # every plugin
//! plugins:
//!   plugboard-exec: { limits: { memory: 512MiB }, run_as: "nobody:nogroup" }
//! executors:
//!   - name: exec
//!     plugin: exec
//!     limits: { memory: 256MiB, cpu_time: 60s, processes: 64 }
//!     env: { LANG: C.UTF-8 }
//!     env_allow: [PLUGBOARD_PLUGIN_LOG]
//!     max_message_size: 4MiB
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::launcher::limits::{self, CgroupMode, Limits};
use crate::launcher::{RunAs, RunAsError};
use crate::plugin::Isolation;

/// A number of bytes: an integer, or a string with a unit (`256MiB`, `4 MB`, `64k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Binary units (`K`, `Ki`, `KiB`...) are powers of 1024, decimal ones (`KB`...) of 1000.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let bad = || {
            format!(
                "invalid size {text:?}: expected bytes as a whole number with an optional unit (e.g. 256MiB, 4MB, 65536)"
            )
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "k" | "Ki" | "KiB" => 1 << 10,
            "M" | "Mi" | "MiB" => 1 << 20,
            "G" | "Gi" | "GiB" => 1 << 30,
            "T" | "Ti" | "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return Err(bad()),
        };
        n.checked_mul(factor).map(Self).ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&limits::format_bytes(self.0))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes: a whole number or a string such as \"256MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {n}: sizes are not negative")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ByteSize, E> {
                ByteSize::parse(s).map_err(E::custom)
            }
        }
        // A visitor (not a buffered untagged enum) keeps the field's path in errors.
        d.deserialize_any(Visitor)
    }
}

/// `limits:` of an instance, an executable or the whole host.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Memory of the plugin and its children: cgroup v2 `memory.max` or v1
    /// `memory.limit_in_bytes`, else address space (`RLIMIT_AS`).
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// Total CPU time (`RLIMIT_CPU`): SIGXCPU, then SIGKILL.
    #[serde(default, with = "humantime_serde")]
    pub cpu_time: Option<Duration>,
    /// CPUs' worth of time (0.5 = half a CPU); needs a cgroup cpu controller (v2 or v1).
    #[serde(default)]
    pub cpu_rate: Option<f64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    #[serde(default)]
    pub open_files: Option<u64>,
    /// Processes and threads: cgroup `pids.max` (v2 or v1), else `RLIMIT_NPROC` (per user; not for root).
    #[serde(default)]
    pub processes: Option<u64>,
    /// Where plugin cgroups are made: `auto` (default: beneath the host's own
    /// cgroups, v2 where it has the controller, else v1), `off` (rlimits only)
    /// or a delegated cgroup v2 directory.
    #[serde(default)]
    pub cgroup: Option<String>,
}

impl LimitsConfig {
    /// `self` over `base`, field by field.
    fn over(&self, base: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            memory: self.memory.or(base.memory),
            cpu_time: self.cpu_time.or(base.cpu_time),
            cpu_rate: self.cpu_rate.or(base.cpu_rate),
            open_files: self.open_files.or(base.open_files),
            processes: self.processes.or(base.processes),
            cgroup: self.cgroup.clone().or_else(|| base.cgroup.clone()),
        }
    }

    fn to_limits(&self) -> Result<Limits, String> {
        let cgroups = match self.cgroup.as_deref() {
            None | Some("auto") => CgroupMode::Auto,
            Some("off") => CgroupMode::Off,
            Some(path) if path.starts_with('/') => CgroupMode::Under(PathBuf::from(path)),
            Some(other) => {
                return Err(format!("limits.cgroup {other:?} must be auto, off or an absolute cgroup v2 directory"));
            }
        };
        Ok(Limits {
            memory: self.memory.map(|m| m.0),
            cpu_time: self.cpu_time,
            cpu_rate: self.cpu_rate,
            open_files: self.open_files,
            processes: self.processes,
            cgroups,
        })
    }
}

/// Declares a config struct (an instance or a `plugins:` entry) with the
/// isolation fields appended, and `isolation_level` to read them as one
/// [`Level`]. The fields are written out in the struct rather than
/// `#[serde(flatten)]`ed: flatten cannot be combined with
/// `deny_unknown_fields` and loses the line and column of errors.
macro_rules! with_isolation_fields {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident: $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty,)*
            /// Resource limits of the plugin process (see [`crate::runtime::isolation`]).
            #[serde(default)]
            pub limits: Option<$crate::runtime::isolation::LimitsConfig>,
            /// Variables set in the plugin's environment.
            #[serde(default)]
            pub env: std::collections::BTreeMap<String, String>,
            /// Variables passed through from the host's environment (when set).
            #[serde(default)]
            pub env_allow: Vec<String>,
            /// Give the plugin the host's whole environment (default: scrubbed).
            #[serde(default)]
            pub inherit_env: Option<bool>,
            /// `user[:group]` the plugin runs as (the host must run as root).
            #[serde(default)]
            pub run_as: Option<String>,
            /// Largest gRPC message to or from the plugin (default 64 MiB).
            #[serde(default)]
            pub max_message_size: Option<$crate::runtime::isolation::ByteSize>,
        }

        impl $name {
            /// The isolation fields, as one level.
            pub fn isolation_level(&self) -> $crate::runtime::isolation::Level<'_> {
                $crate::runtime::isolation::Level {
                    limits: self.limits.as_ref(),
                    env: Some(&self.env),
                    env_allow: &self.env_allow,
                    inherit_env: self.inherit_env,
                    run_as: self.run_as.as_deref(),
                    max_message_size: self.max_message_size,
                }
            }

            /// Whether any isolation field is set.
            pub fn sets_isolation(&self) -> bool {
                self.limits.is_some()
                    || !self.env.is_empty()
                    || !self.env_allow.is_empty()
                    || self.inherit_env.is_some()
                    || self.run_as.is_some()
                    || self.max_message_size.is_some()
            }
        }
    };
}
pub(crate) use with_isolation_fields;

/// The isolation fields as they appear at one level of the config.
#[derive(Debug, Clone, Copy, Default)]
pub struct Level<'a> {
    pub limits: Option<&'a LimitsConfig>,
    pub env: Option<&'a BTreeMap<String, String>>,
    pub env_allow: &'a [String],
    pub inherit_env: Option<bool>,
    pub run_as: Option<&'a str>,
    pub max_message_size: Option<ByteSize>,
}

/// Default largest message between host and plugin, either way.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = crate::plugin::MAX_MESSAGE_SIZE as u64;

/// Variables the host sets for the go-plugin handshake; `env` cannot replace them.
const RESERVED_ENV: &[&str] = &[
    plugboard_proto::handshake::MAGIC_COOKIE_KEY,
    plugboard_proto::goplugin::env::PLUGIN_MIN_PORT,
    plugboard_proto::goplugin::env::PLUGIN_MAX_PORT,
    plugboard_proto::goplugin::env::PLUGIN_PROTOCOL_VERSIONS,
    plugboard_proto::goplugin::env::PLUGIN_UNIX_SOCKET_DIR,
    plugboard_proto::goplugin::env::PLUGIN_CLIENT_CERT,
    "TMPDIR",
];

/// Merges the levels (most general first) into launch settings. `at` names
/// the place in errors; every problem is pushed, none is fatal here.
pub fn resolve(at: &str, levels: &[Level<'_>], problems: &mut Vec<String>) -> Isolation {
    let mut limits = LimitsConfig::default();
    let mut env = BTreeMap::new();
    let mut env_allow: Vec<String> = Vec::new();
    let mut inherit_env = None;
    let mut run_as = None;
    let mut max_message_size = None;
    for level in levels {
        if let Some(l) = level.limits {
            limits = l.over(&limits);
        }
        env.extend(level.env.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
        for name in level.env_allow {
            if !env_allow.contains(name) {
                env_allow.push(name.clone());
            }
        }
        inherit_env = level.inherit_env.or(inherit_env);
        run_as = level.run_as.or(run_as);
        max_message_size = level.max_message_size.or(max_message_size);
    }
    for name in env.keys().chain(&env_allow) {
        if name.is_empty() || name.contains(['=', '\0']) {
            problems.push(format!("{at}: environment variable name {name:?} is not valid"));
        } else if RESERVED_ENV.contains(&name.as_str()) {
            problems.push(format!(
                "{at}: environment variable {name} is set by the host for the plugin handshake and cannot be configured"
            ));
        }
    }
    let run_as = run_as.and_then(|spec| {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let resolved = RunAs::check_privilege().and_then(|()| RunAs::resolve(user, group));
        resolved.map_err(|e: RunAsError| problems.push(format!("{at}: {e}"))).ok()
    });
    let max_message_size = max_message_size.map_or(DEFAULT_MAX_MESSAGE_SIZE, |s| s.0);
    if !(1024..=(u32::MAX as u64)).contains(&max_message_size) {
        problems.push(format!("{at}: max_message_size {} must be between 1 KiB and 4 GiB", ByteSize(max_message_size)));
    }
    let limits = match limits.to_limits() {
        Ok(l) => l,
        Err(e) => {
            problems.push(format!("{at}: {e}"));
            Limits::default()
        }
    };
    Isolation {
        limits,
        inherit_env: inherit_env.unwrap_or(false),
        env_allow,
        env: env.into_iter().collect(),
        run_as,
        max_message_size: max_message_size.min(u32::MAX as u64) as usize,
    }
}

/// Checks that the limits can be enforced on this machine for this user and
/// says how each one is (cgroup v2, v1 or rlimit): `memory 256 MiB (cgroup memory.max), ...`.
pub fn describe(at: &str, isolation: &Isolation, problems: &mut Vec<String>) -> String {
    let uid = isolation.run_as.as_ref().map(|r| r.uid).unwrap_or_else(|| nix::unistd::geteuid().as_raw());
    let l = &isolation.limits;
    let mut parts = Vec::new();
    match limits::check(l, uid) {
        Err(e) => problems.push(format!("{at}: {e}")),
        Ok(how) => {
            for (what, by) in how {
                let value = match what {
                    "memory" => l.memory.map(limits::format_bytes),
                    "cpu_time" => l.cpu_time.map(|t| humantime::format_duration(t).to_string()),
                    "cpu_rate" => l.cpu_rate.map(|r| format!("{r} CPUs")),
                    "open_files" => l.open_files.map(|n| n.to_string()),
                    "processes" => l.processes.map(|n| n.to_string()),
                    _ => None,
                };
                let mechanism = by.mechanism(what);
                parts.push(format!("{what} {} ({mechanism})", value.unwrap_or_default()));
            }
        }
    }
    if parts.is_empty() {
        parts.push("no resource limits".into());
    }
    parts.push(format!("max_message_size {}", limits::format_bytes(isolation.max_message_size as u64)));
    parts.push(match isolation.inherit_env {
        true => "inherits the host's environment".into(),
        false => format!(
            "scrubbed environment (allowed: {}; set: {})",
            if isolation.env_allow.is_empty() { "-".into() } else { isolation.env_allow.join(",") },
            if isolation.env.is_empty() {
                "-".into()
            } else {
                isolation.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(",")
            }
        ),
    });
    if let Some(run_as) = &isolation.run_as {
        parts.push(format!("runs as {run_as}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(ByteSize::parse("256MiB"), Ok(ByteSize(256 << 20)));
        assert_eq!(ByteSize::parse("4 MiB"), Ok(ByteSize(4 << 20)));
        assert_eq!(ByteSize::parse("64k"), Ok(ByteSize(64 << 10)));
        assert_eq!(ByteSize::parse("2MB"), Ok(ByteSize(2_000_000)));
        assert_eq!(ByteSize::parse("1G"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        for bad in ["lots", "", "12XB", "-1", "1.5G", "99999999999999999999"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn levels_merge_field_by_field() {
        let top = LimitsConfig { open_files: Some(1024), memory: Some(ByteSize(1 << 30)), ..Default::default() };
        let exe = LimitsConfig { memory: Some(ByteSize(512 << 20)), ..Default::default() };
        let inst = LimitsConfig { cpu_time: Some(Duration::from_secs(60)), ..Default::default() };
        let top_env_allow = vec!["LANG".to_owned()];
        let exe_env = BTreeMap::from([("A".to_owned(), "exe".to_owned()), ("B".to_owned(), "exe".to_owned())]);
        let inst_env = BTreeMap::from([("B".to_owned(), "inst".to_owned())]);
        let inst_allow = vec!["RUST_LOG".to_owned(), "LANG".to_owned()];
        let mut problems = Vec::new();
        let iso = resolve(
            "executors[0]",
            &[
                Level { limits: Some(&top), env_allow: &top_env_allow, ..Default::default() },
                Level {
                    limits: Some(&exe),
                    env: Some(&exe_env),
                    max_message_size: Some(ByteSize(8 << 20)),
                    ..Default::default()
                },
                Level { limits: Some(&inst), env: Some(&inst_env), env_allow: &inst_allow, ..Default::default() },
            ],
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(iso.limits.memory, Some(512 << 20));
        assert_eq!(iso.limits.open_files, Some(1024));
        assert_eq!(iso.limits.cpu_time, Some(Duration::from_secs(60)));
        assert_eq!(iso.env, [("A".to_owned(), "exe".to_owned()), ("B".to_owned(), "inst".to_owned())]);
        assert_eq!(iso.env_allow, ["LANG", "RUST_LOG"]);
        assert_eq!(iso.max_message_size, 8 << 20);
        assert!(!iso.inherit_env);
        assert!(iso.run_as.is_none());
    }

    #[test]
    fn handshake_variables_and_bad_values_are_problems() {
        let env = BTreeMap::from([("PLUGIN_UNIX_SOCKET_DIR".to_owned(), "/tmp".to_owned())]);
        let limits = LimitsConfig { cgroup: Some("somewhere".into()), ..Default::default() };
        let mut problems = Vec::new();
        resolve(
            "sources[1] \"s\"",
            &[Level {
                env: Some(&env),
                limits: Some(&limits),
                max_message_size: Some(ByteSize(10)),
                ..Default::default()
            }],
            &mut problems,
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("PLUGIN_UNIX_SOCKET_DIR is set by the host"), "{problems:?}");
        assert!(problems[1].contains("max_message_size 10 bytes must be between"), "{problems:?}");
        assert!(problems[2].contains("limits.cgroup \"somewhere\""), "{problems:?}");
    }
}
