//! plugboard's handshake constants. Every plugboard plugin, in any language,
//! uses these with go-plugin's handshake.

use crate::goplugin::HandshakeConfig;

/// The magic cookie environment variable a plugin checks.
pub const MAGIC_COOKIE_KEY: &str = "PLUGBOARD_PLUGIN";
/// The value the host puts in [`MAGIC_COOKIE_KEY`].
pub const MAGIC_COOKIE_VALUE: &str = "7c2e5d0a-1f4b-4c8e-9a3d-5b6f0e2c8d41";
/// The plugboard app protocol version this build speaks.
pub const APP_PROTOCOL_VERSION: u32 = 1;

/// The handshake settings shared by the plugboard host and its plugins.
pub const HANDSHAKE: HandshakeConfig = HandshakeConfig {
    magic_cookie_key: MAGIC_COOKIE_KEY,
    magic_cookie_value: MAGIC_COOKIE_VALUE,
    app_protocol_versions: &[APP_PROTOCOL_VERSION],
};
