//! Running a plugin as another user and group (the host must be root).
//!
//! The ids are resolved in the parent (the user database is not
//! async-signal-safe); the child only calls `setgroups`, `setgid` and
//! `setuid`, in that order, between fork and exec.

use std::fmt;

use nix::unistd::{Gid, Group, Uid, User};

/// The identity a plugin process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's, from the group database).
    pub groups: Vec<u32>,
    /// For messages: `user:group` as configured.
    pub label: String,
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.label, self.uid, self.gid)
    }
}

/// Why a `run_as` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunAsError {
    #[error("run_as: no user {0:?} on this machine")]
    NoUser(String),
    #[error("run_as: no group {0:?} on this machine")]
    NoGroup(String),
    #[error("run_as: cannot read the user database: {0}")]
    Lookup(String),
    #[error("run_as needs the host to run as root (it runs as uid {0}); remove run_as or start plugboard as root")]
    NotRoot(u32),
}

impl RunAs {
    /// `user` is a name or a numeric uid; `group` (a name or gid) defaults
    /// to the user's primary group. Supplementary groups are the user's.
    pub fn resolve(user: &str, group: Option<&str>) -> Result<Self, RunAsError> {
        let lookup = |e: nix::Error| RunAsError::Lookup(e.to_string());
        let found = match user.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)).map_err(lookup)?,
            Err(_) => User::from_name(user).map_err(lookup)?,
        };
        let (uid, primary, name) = match (found, user.parse::<u32>()) {
            (Some(u), _) => (u.uid.as_raw(), Some(u.gid.as_raw()), Some(u.name)),
            // A numeric uid without a passwd entry is fine with an explicit group.
            (None, Ok(uid)) => (uid, None, None),
            (None, Err(_)) => return Err(RunAsError::NoUser(user.to_owned())),
        };
        let gid = match group {
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    Group::from_name(g).map_err(lookup)?.ok_or_else(|| RunAsError::NoGroup(g.to_owned()))?.gid.as_raw()
                }
            },
            None => {
                primary.ok_or_else(|| RunAsError::NoUser(format!("{user} (a uid without a user needs a group)")))?
            }
        };
        let groups = match &name {
            Some(name) => {
                let cname = std::ffi::CString::new(name.as_str()).map_err(|e| RunAsError::Lookup(e.to_string()))?;
                let mut groups: Vec<u32> = nix::unistd::getgrouplist(&cname, Gid::from_raw(gid))
                    .map_err(lookup)?
                    .into_iter()
                    .map(Gid::as_raw)
                    .collect();
                groups.sort_unstable();
                groups.dedup();
                groups
            }
            None => vec![gid],
        };
        let label = match group {
            Some(g) => format!("{user}:{g}"),
            None => user.to_owned(),
        };
        Ok(Self { uid, gid, groups, label })
    }

    /// Refuses unless the host can switch users.
    pub fn check_privilege() -> Result<(), RunAsError> {
        let euid = nix::unistd::geteuid().as_raw();
        if euid == 0 { Ok(()) } else { Err(RunAsError::NotRoot(euid)) }
    }
}
