//! Checksum pinning (go-plugin's `SecureConfig`, without its time-of-check /
//! time-of-use gap): the executable is opened once, the open file is hashed,
//! and the very same open file is executed through `/proc/self/fd/N`. Whoever
//! replaces the path after the check replaces a different inode.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out)
            .map_err(|e| format!("{text:?} is not a SHA-256 digest (64 hex digits): {e}"))?;
        Ok(Self(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// Why a pinned executable was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("cannot open plugin {path} to check its checksum: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error(
        "plugin {path} does not match its pinned checksum: expected sha256 {expected}, found {actual}; \
         refusing to run it (update `sha256` in the config if the binary was upgraded on purpose)"
    )]
    Mismatch { path: PathBuf, expected: String, actual: String },
}

/// An executable whose open file matched the expected digest. Keep it alive
/// until the child has been spawned from [`VerifiedExecutable::exec_path`].
#[derive(Debug)]
pub struct VerifiedExecutable {
    file: File,
}

impl VerifiedExecutable {
    /// Opens `path`, hashes the open file and compares.
    pub fn open(path: &Path, expected: &Sha256) -> Result<Self, ChecksumError> {
        let open_err = |source| ChecksumError::Open { path: path.to_owned(), source };
        // O_CLOEXEC (std's default): no other child inherits it; the spawn
        // clears the flag in this plugin's child only.
        let mut file = File::open(path).map_err(open_err)?;
        let actual = digest(&mut file).map_err(open_err)?;
        if actual != *expected {
            return Err(ChecksumError::Mismatch {
                path: path.to_owned(),
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(Self { file })
    }

    /// The descriptor the child must keep open across exec (scripts: the
    /// interpreter opens `/proc/self/fd/N` after exec).
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// What to exec: the open file itself.
    pub fn exec_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd()))
    }
}

/// SHA-256 of everything readable from `reader` (aws-lc's optimised code,
/// fast even in debug builds).
pub fn digest(reader: &mut impl Read) -> std::io::Result<Sha256> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => ctx.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(Sha256(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_the_known_value() {
        let d = digest(&mut &b"abc"[..]).unwrap();
        assert_eq!(d.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(Sha256::from_hex(&d.to_hex().to_uppercase()).unwrap(), d);
        assert!(Sha256::from_hex("abc").unwrap_err().contains("64 hex digits"));
    }

    #[tokio::test]
    async fn the_hashed_file_runs_even_if_the_path_is_replaced_after_the_check() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin");
        let write_script = |p: &Path, body: &str| {
            std::fs::write(p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write_script(&path, "echo original");
        let expected = digest(&mut File::open(&path).unwrap()).unwrap();
        let verified = VerifiedExecutable::open(&path, &expected).unwrap();
        // Someone swaps the file between the check and the exec.
        let evil = dir.path().join("evil");
        write_script(&evil, "echo replaced");
        std::fs::rename(&evil, &path).unwrap();

        let exec = verified.exec_path();
        let spec = super::super::spawn::ProcessSpec {
            program: &exec,
            arg0: Some(path.as_os_str()),
            keep_fd: Some(verified.fd()),
            args: &[],
            inherit_env: true,
            env: Vec::new(),
            setup: Default::default(),
        };
        let child = super::super::spawn::spawn(spec).await.expect("spawn the pinned file");
        drop(verified);
        let out = child.wait_with_output().await.unwrap();
        // A script: the interpreter opened /proc/self/fd/N after exec, so the
        // descriptor survived exec in the child only.
        assert_eq!(String::from_utf8_lossy(&out.stdout), "original\n", "{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn a_mismatch_names_both_digests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, b"abc").unwrap();
        let good = digest(&mut &b"abc"[..]).unwrap();
        let verified = VerifiedExecutable::open(&path, &good).unwrap();
        assert!(verified.exec_path().to_string_lossy().starts_with("/proc/self/fd/"));
        let err = VerifiedExecutable::open(&path, &Sha256([0; 32])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&good.to_hex()) && text.contains(&"0".repeat(64)), "{text}");
    }
}
