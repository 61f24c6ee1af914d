//! The gRPC channel to a plugin: HTTP/2 over the Unix socket or TCP address
//! from the handshake, with a valid `:authority`. Plaintext is h2c with prior
//! knowledge; with AutoMTLS the stream is wrapped in rustls first (the
//! `https` URI only sets `:scheme`; this connector does the TLS itself).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use plugboard_proto::goplugin::PluginAddress;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint};

use super::tls::TLS_SERVER_NAME;

trait Io: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Io for T {}

type BoxedIo = TokioIo<Pin<Box<dyn Io>>>;

/// Connects to the plugin's address. `localhost` is the authority: strict
/// HTTP/2 servers reject empty or path-like ones, and it is the TLS name.
/// With `tls` (see [`super::tls::HostIdentity::client_config`]) the stream is
/// TLS with ALPN h2 and SNI `localhost`.
pub async fn connect(
    address: &PluginAddress,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Channel, tonic::transport::Error> {
    let uri = if tls.is_some() { "https://localhost" } else { "http://localhost" };
    let endpoint = Endpoint::from_static(uri).connect_timeout(timeout).tcp_nodelay(true);
    let address = address.clone();
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let address = address.clone();
            let tls = tls.clone();
            async move {
                let stream: Pin<Box<dyn Io>> = match address {
                    PluginAddress::Unix(path) => Box::pin(tokio::net::UnixStream::connect(path).await?),
                    PluginAddress::Tcp(addr) => {
                        let stream = tokio::net::TcpStream::connect(addr).await?;
                        stream.set_nodelay(true)?;
                        Box::pin(stream)
                    }
                };
                let stream = match tls {
                    None => stream,
                    Some(config) => {
                        let name = ServerName::try_from(TLS_SERVER_NAME).map_err(std::io::Error::other)?;
                        let tls = tokio_rustls::TlsConnector::from(config).connect(name, stream).await?;
                        Box::pin(tls)
                    }
                };
                Ok::<BoxedIo, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}
