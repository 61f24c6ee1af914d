use std::fmt;

/// An error a plugin returns to the host. It travels as a gRPC status, so
/// the host can tell "your config is wrong" from "something broke".
#[derive(Debug, Clone)]
pub struct PluginError {
    code: tonic::Code,
    message: String,
}

impl PluginError {
    /// The instance's config is not what this plugin needs.
    pub fn invalid_config(message: impl fmt::Display) -> Self {
        Self { code: tonic::Code::InvalidArgument, message: format!("invalid config: {message}") }
    }
    /// The request itself is wrong (bad arguments, bad HTTP body...).
    pub fn invalid_argument(message: impl fmt::Display) -> Self {
        Self { code: tonic::Code::InvalidArgument, message: message.to_string() }
    }
    /// A dependency is down; the host may retry later.
    pub fn unavailable(message: impl fmt::Display) -> Self {
        Self { code: tonic::Code::Unavailable, message: message.to_string() }
    }
    /// Anything else that went wrong.
    pub fn internal(message: impl fmt::Display) -> Self {
        Self { code: tonic::Code::Internal, message: message.to_string() }
    }
    /// This plugin does not offer the operation.
    pub fn unimplemented(what: &str) -> Self {
        Self { code: tonic::Code::Unimplemented, message: format!("{what} is not implemented by this plugin") }
    }
    /// The error a gRPC status carries.
    pub fn from_status(status: &tonic::Status) -> Self {
        Self { code: status.code(), message: status.message().to_owned() }
    }
    pub fn code(&self) -> tonic::Code {
        self.code
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<PluginError> for tonic::Status {
    fn from(e: PluginError) -> Self {
        tonic::Status::new(e.code, e.message)
    }
}

impl From<serde_json::Error> for PluginError {
    fn from(e: serde_json::Error) -> Self {
        PluginError::invalid_config(e)
    }
}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        PluginError::internal(e)
    }
}
