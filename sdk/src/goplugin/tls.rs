//! go-plugin AutoMTLS, plugin side.
//!
//! When the host sets `PLUGIN_CLIENT_CERT` (its certificate, PEM), the plugin
//! mints its own key pair and self-signed certificate, serves TLS 1.2+ with
//! ALPN `h2`, requires a client certificate and accepts only the host's,
//! byte for byte (pinning: go-plugin's certificates are CA:TRUE, which webpki
//! path building refuses), and prints its own certificate, DER in unpadded
//! standard base64, in field 6 of the handshake line.
//!
//! Go hosts sign with P-521 keys; the aws-lc-rs provider verifies those.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The plugin's TLS server settings and the certificate for field 6.
pub(super) struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub cert_der: Vec<u8>,
}

/// Reads `PLUGIN_CLIENT_CERT`: `None` when AutoMTLS is off.
pub(super) fn from_env() -> Result<Option<ServerTls>, String> {
    match std::env::var(plugboard_proto::goplugin::env::PLUGIN_CLIENT_CERT) {
        Ok(pem) if !pem.trim().is_empty() => server_tls(&pem).map(Some),
        _ => Ok(None),
    }
}

/// TLS settings that trust exactly the host certificate in `client_pem`.
pub(super) fn server_tls(client_pem: &str) -> Result<ServerTls, String> {
    let client = CertificateDer::from_pem_slice(client_pem.as_bytes())
        .map_err(|e| format!("PLUGIN_CLIENT_CERT is not a PEM certificate: {e}"))?;
    let (cert_der, key_der) = self_signed().map_err(|e| format!("cannot generate the AutoMTLS certificate: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = PinnedClientCert { der: client.to_vec(), algorithms: provider.signature_verification_algorithms };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![cert_der.clone()], key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(ServerTls { config: Arc::new(config), cert_der: cert_der.to_vec() })
}

/// An ECDSA P-256 certificate for `localhost`, valid for server and client
/// auth (the Go host checks the name and, when present, the key usage).
fn self_signed() -> Result<(CertificateDer<'static>, Vec<u8>), rcgen::Error> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "plugboard plugin");
    name.push(DnType::CommonName, "localhost");
    params.distinguished_name = name;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key)?;
    Ok((cert.der().clone(), key.serialize_der()))
}

#[derive(Debug)]
struct PinnedClientCert {
    der: Vec<u8>,
    algorithms: WebPkiSupportedAlgorithms,
}

// rustls shows this error with `{:?}`: make that the readable text.
struct NotTheHost;

impl std::fmt::Debug for NotTheHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for NotTheHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("client certificate is not the one in PLUGIN_CLIENT_CERT")
    }
}

impl std::error::Error for NotTheHost {}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(NotTheHost)))))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// One accepted connection, plain or TLS.
pub(super) struct Conn(Box<dyn Io>);

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

pub(super) type Incoming = Pin<Box<dyn tokio_stream::Stream<Item = io::Result<Conn>> + Send>>;

/// The connections to serve: accepted as they come, and with TLS each
/// handshake runs on its own task so a slow or hostile client blocks nobody.
pub(super) fn incoming(listener: UnixListener, tls: Option<Arc<rustls::ServerConfig>>) -> Incoming {
    let Some(config) = tls else {
        let plain = tokio_stream::wrappers::UnixListenerStream::new(listener);
        return Box::pin(tokio_stream::StreamExt::map(plain, |r| r.map(|s: UnixStream| Conn(Box::new(s)))));
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, rx) = mpsc::channel::<io::Result<Conn>>(16);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(Conn(Box::new(tls)))).await;
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "TLS handshake with a client failed"),
                    Err(_) => tracing::warn!("TLS handshake with a client timed out"),
                }
            });
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_client_certificate_is_a_clear_error() {
        let err = server_tls("not pem").err().expect("refused");
        assert!(err.starts_with("PLUGIN_CLIENT_CERT is not a PEM certificate"), "{err}");
    }

    #[test]
    fn the_plugin_certificate_is_fresh_der() {
        let (cert, _) = self_signed().unwrap();
        let (other, _) = self_signed().unwrap();
        assert_eq!(cert.as_ref()[0], 0x30, "DER SEQUENCE");
        assert_ne!(cert, other);
    }
}
