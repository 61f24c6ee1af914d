//! Which binary a plugin path is: a replaced file (new inode, or the same
//! inode rewritten) has a new identity, an untouched one keeps it. Cheap
//! enough to take for the whole plugins directory on every reload.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The identity of an executable file (symlinks followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BinaryId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl BinaryId {
    pub fn of_metadata(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    /// The identity of the file at `path`, when it is a regular executable file.
    pub fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then(|| Self::of_metadata(&meta))
    }
}

/// Identities of plugin executables, by path.
pub type Identities = BTreeMap<PathBuf, BinaryId>;

/// The regular, executable, non-hidden files of `dir` and their identities
/// (what discovery would pick up). A file still being copied in shows up
/// with a size or mtime that changes between two snapshots.
pub fn snapshot(dir: &Path) -> std::io::Result<Identities> {
    let mut ids = Identities::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if let Some(id) = BinaryId::of(&path) {
            ids.insert(path, id);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_has_a_new_identity_and_hidden_or_plain_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("plugboard-x");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join(".plugboard-y"), "x").unwrap();
        std::fs::set_permissions(dir.path().join(".plugboard-y"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let before = snapshot(dir.path()).unwrap();
        assert_eq!(before.keys().collect::<Vec<_>>(), [&exe]);
        assert_eq!(snapshot(dir.path()).unwrap(), before, "an untouched file keeps its identity");

        // Replaced the way operators should: a new file renamed over the old one.
        let tmp = dir.path().join(".tmp");
        std::fs::write(&tmp, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &exe).unwrap();
        assert_ne!(snapshot(dir.path()).unwrap()[&exe], before[&exe]);
    }
}
