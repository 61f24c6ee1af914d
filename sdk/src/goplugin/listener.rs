//! The plugin's Unix socket: in the directory the host asked for
//! (`PLUGIN_UNIX_SOCKET_DIR`) or a private temp dir, owned by
//! `PLUGIN_UNIX_SOCKET_GROUP` when set.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use plugboard_proto::goplugin::env;
use tokio::net::UnixListener;

/// Linux's `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

pub(super) struct Socket {
    pub listener: UnixListener,
    pub path: PathBuf,
    /// Removes the socket (and our private dir) when dropped.
    pub cleanup: Cleanup,
}

pub(super) enum Cleanup {
    File(PathBuf),
    Dir(#[allow(dead_code)] tempfile::TempDir),
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::File(p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub(super) fn bind() -> io::Result<Socket> {
    let (path, cleanup) = match std::env::var_os(env::PLUGIN_UNIX_SOCKET_DIR) {
        Some(dir) if !dir.is_empty() => {
            let path = Path::new(&dir).join(format!("plugin{}.sock", std::process::id()));
            (path.clone(), Cleanup::File(path))
        }
        _ => {
            let dir = tempfile::Builder::new()
                .prefix("plugboard-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir()?;
            (dir.path().join("plugin.sock"), Cleanup::Dir(dir))
        }
    };
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {} is {len} bytes, longer than the {MAX_SOCKET_PATH} a Unix socket allows; use a shorter TMPDIR or PLUGIN_UNIX_SOCKET_DIR",
                path.display()
            ),
        ));
    }
    let listener = UnixListener::bind(&path)?;
    if let Some(group) = std::env::var_os(env::PLUGIN_UNIX_SOCKET_GROUP).filter(|g| !g.is_empty()) {
        apply_group(&path, &group.to_string_lossy())?;
    }
    Ok(Socket { listener, path, cleanup })
}

fn apply_group(path: &Path, group: &str) -> io::Result<()> {
    let gid = match group.parse::<u32>() {
        Ok(gid) => nix::unistd::Gid::from_raw(gid),
        Err(_) => {
            nix::unistd::Group::from_name(group)
                .map_err(io::Error::other)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no group named {group:?}")))?
                .gid
        }
    };
    nix::unistd::chown(path, None, Some(gid)).map_err(io::Error::other)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
}
