//! The hashicorp/go-plugin handshake: the environment a host gives a plugin and
//! the one line a plugin prints on stdout once it serves. Shared by the host's
//! launcher and the SDK; nothing here is plugboard-specific.

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;

/// The core protocol version; go-plugin has never changed it.
pub const CORE_PROTOCOL_VERSION: u32 = 1;

/// Environment variables of the handshake.
pub mod env {
    pub const PLUGIN_MIN_PORT: &str = "PLUGIN_MIN_PORT";
    pub const PLUGIN_MAX_PORT: &str = "PLUGIN_MAX_PORT";
    pub const PLUGIN_PROTOCOL_VERSIONS: &str = "PLUGIN_PROTOCOL_VERSIONS";
    pub const PLUGIN_CLIENT_CERT: &str = "PLUGIN_CLIENT_CERT";
    pub const PLUGIN_UNIX_SOCKET_DIR: &str = "PLUGIN_UNIX_SOCKET_DIR";
    pub const PLUGIN_UNIX_SOCKET_GROUP: &str = "PLUGIN_UNIX_SOCKET_GROUP";
    pub const PLUGIN_MULTIPLEX_GRPC: &str = "PLUGIN_MULTIPLEX_GRPC";
    /// go-plugin's default port range, set even for Unix-socket plugins.
    pub const DEFAULT_MIN_PORT: u16 = 10000;
    pub const DEFAULT_MAX_PORT: u16 = 25000;
}

/// What go-plugin prints (on stderr, exit status 1) when a plugin binary is
/// run without the magic cookie, i.e. by hand.
pub const NOT_A_PLUGIN_MESSAGE: &str = "This binary is a plugin. These are not meant to be executed directly.\n\
Please execute the program that consumes these plugins, which will\n\
load any plugins automatically\n";

/// The go-plugin health service name a host checks.
pub const HEALTH_SERVICE: &str = "plugin";

/// The handshake settings both sides compile in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeConfig {
    pub magic_cookie_key: &'static str,
    pub magic_cookie_value: &'static str,
    /// App protocol versions this side speaks.
    pub app_protocol_versions: &'static [u32],
}

impl HandshakeConfig {
    /// The value of `PLUGIN_PROTOCOL_VERSIONS` a host offers: comma-separated, no spaces.
    pub fn protocol_versions_env(&self) -> String {
        self.app_protocol_versions.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    }
}

/// Plugin side: pick the app protocol version from what the host offered
/// (`PLUGIN_PROTOCOL_VERSIONS`), the way go-plugin does: the highest version
/// both speak; when none is shared, our lowest, so the host reports the
/// mismatch with both version lists. Entries that are not integers are skipped.
pub fn negotiate_version(offered: Option<&str>, ours: &[u32]) -> u32 {
    let offered: Vec<u32> = offered.unwrap_or_default().split(',').filter_map(|v| v.trim().parse().ok()).collect();
    let mut ours_desc = ours.to_vec();
    ours_desc.sort_unstable_by(|a, b| b.cmp(a));
    ours_desc.iter().copied().find(|v| offered.contains(v)).or_else(|| ours.iter().copied().min()).unwrap_or(1)
}

/// Where the plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginAddress {
    Unix(PathBuf),
    /// `host:port`, as printed by the plugin.
    Tcp(String),
}

impl PluginAddress {
    pub fn network(&self) -> &'static str {
        match self {
            PluginAddress::Unix(_) => "unix",
            PluginAddress::Tcp(_) => "tcp",
        }
    }
}

impl fmt::Display for PluginAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            PluginAddress::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// A parsed handshake line: `CORE|APP|NETWORK|ADDRESS|PROTOCOL|SERVERCERT[|MUX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeLine {
    pub core_version: u32,
    pub app_version: u32,
    pub address: PluginAddress,
    pub protocol: String,
    /// The plugin's DER certificate (AutoMTLS), when field 6 carries one.
    pub server_cert: Option<Vec<u8>>,
}

/// Why a handshake line was refused. The texts follow go-plugin's, so people
/// who know go-plugin recognise them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error(
        "Unrecognized remote plugin message: {line:?}\n\
         This usually means the plugin was not compiled for this architecture, \
         the plugin is missing dynamic-link libraries necessary to run, \
         the plugin is not executable by this process due to file permissions, \
         or the plugin failed to negotiate the initial go-plugin protocol handshake \
         (it must print exactly one line CORE|APP|NETWORK|ADDRESS|PROTOCOL on stdout before anything else)"
    )]
    Unrecognized { line: String },
    #[error(
        "Incompatible core API version with plugin. Plugin version: {plugin}, Core version: {CORE_PROTOCOL_VERSION}"
    )]
    CoreVersion { plugin: String },
    #[error("Incompatible API version with plugin. Plugin version: {plugin}, Client versions: {client:?}")]
    AppVersion { plugin: String, client: Vec<u32> },
    #[error("Unsupported network type {network:?} for address {address:?}: expected unix or tcp")]
    Network { network: String, address: String },
    #[error("Invalid plugin address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("Unsupported plugin protocol {protocol:?}. Supported: [grpc]")]
    Protocol { protocol: String },
    #[error("Invalid plugin certificate in handshake field 6: {reason}")]
    Certificate { reason: String },
}

/// go-plugin only treats field 6 as a certificate when it is longer than this;
/// shorter values are leftovers of old implementations.
const MIN_CERT_FIELD_LEN: usize = 50;

impl HandshakeLine {
    /// Parses and validates a handshake line as a go-plugin host does.
    /// `app_versions` are the app protocol versions the host offered.
    pub fn parse(line: &str, app_versions: &[u32]) -> Result<Self, HandshakeError> {
        let line = line.trim();
        let fields: Vec<&str> = line.split('|').collect();
        if fields.len() < 4 {
            return Err(HandshakeError::Unrecognized { line: line.to_owned() });
        }
        let core_version = match fields[0].parse::<u32>() {
            Ok(v) if v == CORE_PROTOCOL_VERSION => v,
            _ => {
                return Err(HandshakeError::CoreVersion { plugin: fields[0].to_owned() });
            }
        };
        let app_version = match fields[1].parse::<u32>() {
            Ok(v) if app_versions.contains(&v) => v,
            _ => {
                return Err(HandshakeError::AppVersion { plugin: fields[1].to_owned(), client: app_versions.to_vec() });
            }
        };
        let address = parse_address(fields[2], fields[3])?;
        // A missing protocol field means a pre-gRPC (net/rpc) plugin.
        let protocol = fields.get(4).copied().unwrap_or("netrpc");
        if protocol != "grpc" {
            return Err(HandshakeError::Protocol { protocol: protocol.to_owned() });
        }
        let server_cert = match fields.get(5) {
            Some(cert) if cert.len() > MIN_CERT_FIELD_LEN => Some(decode_cert(cert)?),
            _ => None,
        };
        Ok(HandshakeLine { core_version, app_version, address, protocol: protocol.to_owned(), server_cert })
    }

    /// Formats the line a plugin prints (without the trailing newline). Always six
    /// fields, like a Go plugin: the sixth is empty without AutoMTLS.
    pub fn format(&self) -> String {
        let (network, address) = match &self.address {
            PluginAddress::Unix(p) => ("unix", p.display().to_string()),
            PluginAddress::Tcp(a) => ("tcp", a.clone()),
        };
        let cert = self
            .server_cert
            .as_deref()
            .map(|der| base64::engine::general_purpose::STANDARD_NO_PAD.encode(der))
            .unwrap_or_default();
        format!("{}|{}|{network}|{address}|{}|{cert}", self.core_version, self.app_version, self.protocol)
    }
}

fn parse_address(network: &str, address: &str) -> Result<PluginAddress, HandshakeError> {
    match network {
        "unix" => {
            if address.is_empty() {
                return Err(HandshakeError::Address {
                    address: address.to_owned(),
                    reason: "empty socket path".to_owned(),
                });
            }
            Ok(PluginAddress::Unix(PathBuf::from(address)))
        }
        "tcp" => {
            let port = address.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(_))) if !host.is_empty() => Ok(PluginAddress::Tcp(address.to_owned())),
                _ => Err(HandshakeError::Address {
                    address: address.to_owned(),
                    reason: "expected host:port".to_owned(),
                }),
            }
        }
        other => Err(HandshakeError::Network { network: other.to_owned(), address: address.to_owned() }),
    }
}

fn decode_cert(field: &str) -> Result<Vec<u8>, HandshakeError> {
    // Go writes unpadded standard base64; accept padding too.
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(field.trim_end_matches('='))
        .map_err(|e| HandshakeError::Certificate { reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &[u32] = &[1];

    #[test]
    fn parses_the_line_a_go_plugin_prints() {
        let line = HandshakeLine::parse("1|1|unix|/tmp/plugin3034109734|grpc|\n", V1).unwrap();
        assert_eq!(line.core_version, 1);
        assert_eq!(line.app_version, 1);
        assert_eq!(line.address, PluginAddress::Unix("/tmp/plugin3034109734".into()));
        assert_eq!(line.protocol, "grpc");
        assert_eq!(line.server_cert, None);
    }

    #[test]
    fn accepts_the_five_field_line_of_the_non_go_guide_and_crlf() {
        let line = HandshakeLine::parse("1|1|tcp|127.0.0.1:1234|grpc\r\n", V1).unwrap();
        assert_eq!(line.address, PluginAddress::Tcp("127.0.0.1:1234".into()));
    }

    #[test]
    fn ignores_a_seventh_field_and_short_certificate_leftovers() {
        let line = HandshakeLine::parse("1|1|unix|/s|grpc|abc|true", V1).unwrap();
        assert_eq!(line.server_cert, None);
    }

    #[test]
    fn decodes_an_unpadded_base64_certificate() {
        let der: Vec<u8> = (0..=255u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&der);
        let line = HandshakeLine::parse(&format!("1|1|unix|/s|grpc|{b64}"), V1).unwrap();
        assert_eq!(line.server_cert.as_deref(), Some(der.as_slice()));
        let padded = base64::engine::general_purpose::STANDARD.encode(&der);
        let line = HandshakeLine::parse(&format!("1|1|unix|/s|grpc|{padded}"), V1).unwrap();
        assert_eq!(line.server_cert.as_deref(), Some(der.as_slice()));
    }

    #[test]
    fn garbage_is_an_unrecognized_message_naming_the_line() {
        let err = HandshakeLine::parse("hello from init", V1).unwrap_err();
        assert_eq!(err, HandshakeError::Unrecognized { line: "hello from init".into() });
        assert!(err.to_string().starts_with("Unrecognized remote plugin message: \"hello from init\""));
        let err = HandshakeLine::parse("", V1).unwrap_err();
        assert!(matches!(err, HandshakeError::Unrecognized { .. }));
    }

    #[test]
    fn core_version_mismatch() {
        let err = HandshakeLine::parse("2|1|unix|/s|grpc|", V1).unwrap_err();
        assert_eq!(err.to_string(), "Incompatible core API version with plugin. Plugin version: 2, Core version: 1");
        assert!(matches!(HandshakeLine::parse("x|1|unix|/s|grpc|", V1), Err(HandshakeError::CoreVersion { .. })));
    }

    #[test]
    fn app_version_mismatch_lists_client_versions() {
        let err = HandshakeLine::parse("1|7|unix|/s|grpc|", V1).unwrap_err();
        assert_eq!(err.to_string(), "Incompatible API version with plugin. Plugin version: 7, Client versions: [1]");
    }

    #[test]
    fn netrpc_or_missing_protocol_is_refused() {
        let err = HandshakeLine::parse("1|1|unix|/s", V1).unwrap_err();
        assert_eq!(err.to_string(), "Unsupported plugin protocol \"netrpc\". Supported: [grpc]");
        assert!(matches!(HandshakeLine::parse("1|1|unix|/s|netrpc|", V1), Err(HandshakeError::Protocol { .. })));
    }

    #[test]
    fn bad_network_and_addresses() {
        assert!(matches!(HandshakeLine::parse("1|1|udp|/s|grpc|", V1), Err(HandshakeError::Network { .. })));
        assert!(matches!(HandshakeLine::parse("1|1|tcp|nope|grpc|", V1), Err(HandshakeError::Address { .. })));
        assert!(matches!(HandshakeLine::parse("1|1|tcp|:99999|grpc|", V1), Err(HandshakeError::Address { .. })));
        assert!(matches!(HandshakeLine::parse("1|1|unix||grpc|", V1), Err(HandshakeError::Address { .. })));
    }

    #[test]
    fn format_round_trips() {
        let line = HandshakeLine {
            core_version: 1,
            app_version: 1,
            address: PluginAddress::Unix("/tmp/pb/plugin.sock".into()),
            protocol: "grpc".into(),
            server_cert: None,
        };
        assert_eq!(line.format(), "1|1|unix|/tmp/pb/plugin.sock|grpc|");
        assert_eq!(HandshakeLine::parse(&line.format(), V1).unwrap(), line);
    }

    #[test]
    fn negotiation_picks_highest_common_or_our_lowest() {
        assert_eq!(negotiate_version(Some("1"), &[1]), 1);
        assert_eq!(negotiate_version(Some("3,x,1,2"), &[1, 2]), 2);
        assert_eq!(negotiate_version(Some("2,3"), &[1]), 1);
        assert_eq!(negotiate_version(None, &[2, 4]), 2);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in ".*") {
            let _ = HandshakeLine::parse(&s, V1);
        }

        #[test]
        fn any_valid_unix_line_round_trips(path in "/[a-zA-Z0-9_./-]{1,90}", app in 1u32..5) {
            let line = HandshakeLine {
                core_version: 1,
                app_version: app,
                address: PluginAddress::Unix(path.into()),
                protocol: "grpc".into(),
                server_cert: None,
            };
            proptest::prop_assert_eq!(HandshakeLine::parse(&line.format(), &[app]).unwrap(), line);
        }
    }
}
