//! Handshake hardening: the address a plugin announces must be where the
//! host told it to listen — a socket directly inside the private per-launch
//! directory, or a loopback TCP address — unless the launch allows otherwise.
//! A plugin (or whatever printed its first line) cannot point the host at
//! someone else's socket or at another machine.

use std::net::IpAddr;
use std::path::Path;

use plugboard_proto::goplugin::PluginAddress;

/// Which announced addresses a launch accepts beyond the safe ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Accept a Unix socket outside the per-launch socket directory (e.g. a
    /// plugin that ignores both `PLUGIN_UNIX_SOCKET_DIR` and `TMPDIR`).
    pub allow_socket_outside_dir: bool,
    /// Accept a TCP address that is not loopback.
    pub allow_non_loopback_tcp: bool,
}

/// Why an announced address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error(
        "the plugin announced the socket {socket}, which is not inside its private socket directory {dir}; \
         refused (a plugin must listen in PLUGIN_UNIX_SOCKET_DIR; allow it per plugin with allow_socket_outside_dir)"
    )]
    OutsideSocketDir { socket: String, dir: String },
    #[error(
        "the plugin announced the TCP address {address}, which is not loopback; refused \
         (plugins must listen on 127.0.0.1 or ::1; allow it per plugin with allow_non_loopback_tcp)"
    )]
    NonLoopback { address: String },
}

/// Checks `address` against `socket_dir` and `policy`.
pub fn check(address: &PluginAddress, socket_dir: &Path, policy: AddressPolicy) -> Result<(), AddressError> {
    match address {
        PluginAddress::Unix(path) => {
            if policy.allow_socket_outside_dir || in_dir(path, socket_dir) {
                Ok(())
            } else {
                Err(AddressError::OutsideSocketDir {
                    socket: path.display().to_string(),
                    dir: socket_dir.display().to_string(),
                })
            }
        }
        PluginAddress::Tcp(addr) => {
            if policy.allow_non_loopback_tcp || is_loopback(addr) {
                Ok(())
            } else {
                Err(AddressError::NonLoopback { address: addr.clone() })
            }
        }
    }
}

/// Directly inside `dir`, judged on canonical paths so `..` or a symlinked
/// temp dir neither fools nor trips the check.
fn in_dir(path: &Path, dir: &Path) -> bool {
    let canonical_dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let parent = match path.parent() {
        Some(p) => p.canonicalize().unwrap_or_else(|_| p.to_path_buf()),
        None => return false,
    };
    let plain_name = path.file_name().is_some_and(|n| n != "." && n != "..");
    plain_name && parent == canonical_dir
}

fn is_loopback(addr: &str) -> bool {
    let Some((host, _port)) = addr.rsplit_once(':') else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_must_be_directly_in_the_socket_dir() {
        let dir = tempfile::tempdir().unwrap();
        let inside = PluginAddress::Unix(dir.path().join("plugin.sock"));
        assert_eq!(check(&inside, dir.path(), AddressPolicy::default()), Ok(()));
        let sneaky = PluginAddress::Unix(dir.path().join("../other.sock"));
        assert!(matches!(
            check(&sneaky, dir.path(), AddressPolicy::default()),
            Err(AddressError::OutsideSocketDir { .. })
        ));
        let outside = PluginAddress::Unix("/tmp/plugin123".into());
        let err = check(&outside, dir.path(), AddressPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("/tmp/plugin123"), "{err}");
        let allowed = AddressPolicy { allow_socket_outside_dir: true, ..Default::default() };
        assert_eq!(check(&outside, dir.path(), allowed), Ok(()));
    }

    #[test]
    fn tcp_must_be_loopback() {
        let dir = Path::new("/nonexistent");
        for ok in ["127.0.0.1:1234", "127.9.9.9:1", "[::1]:80", "localhost:1234"] {
            assert_eq!(check(&PluginAddress::Tcp(ok.into()), dir, AddressPolicy::default()), Ok(()), "{ok}");
        }
        for bad in ["10.0.0.1:1234", "0.0.0.0:1234", "example.com:80", "[::]:80"] {
            assert!(
                matches!(
                    check(&PluginAddress::Tcp(bad.into()), dir, AddressPolicy::default()),
                    Err(AddressError::NonLoopback { .. })
                ),
                "{bad}"
            );
        }
        let allowed = AddressPolicy { allow_non_loopback_tcp: true, ..Default::default() };
        assert_eq!(check(&PluginAddress::Tcp("10.0.0.1:1234".into()), dir, allowed), Ok(()));
    }
}
