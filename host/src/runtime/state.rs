//! Where the host keeps its durable state (the event store), when neither
//! `--state-dir` (`PLUGBOARD_STATE_DIR`) nor the config's `state_dir` says:
//! the XDG state directory, `$XDG_STATE_HOME/plugboard`, which is
//! `~/.local/state/plugboard` by default. It is created on first use, so it
//! needs no set-up; one host at a time may use a state directory.

use std::path::PathBuf;

/// Environment variable (and `--state-dir`) overriding the state directory.
pub const STATE_DIR_ENV: &str = "PLUGBOARD_STATE_DIR";

/// `$XDG_STATE_HOME/plugboard`, else `$HOME/.local/state/plugboard`, else
/// `.plugboard-state` in the working directory.
pub fn default_state_dir() -> PathBuf {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").and_then(absolute) {
        return dir.join("plugboard");
    }
    if let Some(home) = std::env::var_os("HOME").and_then(absolute) {
        return home.join(".local/state/plugboard");
    }
    PathBuf::from(".plugboard-state")
}
