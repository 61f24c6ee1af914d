//! The gRPC channel to a plugin: HTTP/2 with prior knowledge (h2c) over the
//! Unix socket or TCP address from the handshake, with a valid `:authority`.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use plugboard_proto::goplugin::PluginAddress;
use tonic::transport::{Channel, Endpoint};

/// Connects to the plugin's address. `localhost` is the authority: strict
/// HTTP/2 servers reject empty or path-like ones.
pub(crate) async fn connect(address: &PluginAddress, timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_static("http://localhost").connect_timeout(timeout).tcp_nodelay(true);
    match address.clone() {
        PluginAddress::Unix(path) => {
            endpoint
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
                }))
                .await
        }
        PluginAddress::Tcp(addr) => {
            endpoint
                .connect_with_connector(tower::service_fn(move |_| {
                    let addr = addr.clone();
                    async move {
                        let stream = tokio::net::TcpStream::connect(addr).await?;
                        stream.set_nodelay(true)?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
        }
    }
}
