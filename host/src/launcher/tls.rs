//! go-plugin AutoMTLS, host side.
//!
//! Per launch the host mints a throw-away key pair and a self-signed
//! certificate, hands the certificate to the plugin as PEM in
//! `PLUGIN_CLIENT_CERT` (the key never leaves this process), and later dials
//! the plugin with TLS 1.2+, ALPN `h2` and SNI `localhost`, presenting that
//! certificate and trusting exactly the DER certificate the plugin printed in
//! field 6 of its handshake line.
//!
//! Trust is byte-for-byte pinning, not webpki path building: go-plugin's
//! certificates are CA:TRUE, which webpki refuses as an end entity. The
//! handshake signature is still checked, with the aws-lc-rs provider because
//! Go plugins sign with P-521, which *ring* cannot verify.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// The name both sides put in and expect from certificates (go-plugin's).
pub const TLS_SERVER_NAME: &str = "localhost";

/// Why AutoMTLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate the AutoMTLS certificate: {0}")]
    Generate(String),
    #[error("cannot build the TLS client configuration: {0}")]
    Config(String),
}

/// The aws-lc-rs provider: the one rustls provider that verifies P-521.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The host's per-launch certificate and key (kept in memory only).
pub struct HostIdentity {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for HostIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostIdentity").finish_non_exhaustive()
    }
}

impl HostIdentity {
    /// A fresh ECDSA P-256 key and a self-signed certificate for `localhost`.
    ///
    /// CA:TRUE with certificate signing, like go-plugin's own: plugins that
    /// verify the client certificate by path building (grpcio, OpenSSL) then
    /// accept it as its own trust anchor, and Go plugins accept it too.
    /// Extended key usage has client auth (Go checks it) and server auth.
    pub fn generate() -> Result<Self, TlsError> {
        let (cert_der, cert_pem, key_der) = self_signed().map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(Self { cert_der, cert_pem, key_der })
    }

    /// The certificate as PEM, the value of `PLUGIN_CLIENT_CERT`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A TLS client configuration that presents this identity and trusts only
    /// `server_cert_der` (the plugin's handshake field 6).
    pub fn client_config(&self, server_cert_der: Vec<u8>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = provider();
        let verifier =
            PinnedServerCert { der: server_cert_der, algorithms: provider.signature_verification_algorithms };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(vec![self.cert_der.clone()], key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        // grpc-go 1.67+ refuses TLS peers that negotiate no ALPN.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

fn self_signed() -> Result<(CertificateDer<'static>, String, Vec<u8>), rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec![TLS_SERVER_NAME.to_owned()])?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "plugboard");
    name.push(DnType::CommonName, TLS_SERVER_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;
    Ok((cert.der().clone(), cert.pem(), key.serialize_der()))
}

/// Trusts exactly one certificate, compared byte for byte, and checks the
/// handshake signatures made with its key.
#[derive(Debug)]
struct PinnedServerCert {
    der: Vec<u8>,
    algorithms: WebPkiSupportedAlgorithms,
}

// rustls shows this error with `{:?}`: make that the readable text.
struct NotThePinnedCertificate;

impl std::fmt::Debug for NotThePinnedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for NotThePinnedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the plugin presented a certificate other than the one in its handshake line")
    }
}

impl std::error::Error for NotThePinnedCertificate {}

impl ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
                NotThePinnedCertificate,
            )))))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_fresh_per_launch_and_pem_encoded() {
        let a = HostIdentity::generate().unwrap();
        let b = HostIdentity::generate().unwrap();
        assert!(a.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"), "{}", a.cert_pem());
        assert!(a.cert_pem().ends_with("-----END CERTIFICATE-----\n"));
        assert_ne!(a.cert_pem(), b.cert_pem());
    }

    #[test]
    fn the_provider_verifies_p521_signatures() {
        let schemes = provider().signature_verification_algorithms.supported_schemes();
        assert!(schemes.contains(&SignatureScheme::ECDSA_NISTP521_SHA512), "{schemes:?}");
    }

    #[test]
    fn only_the_pinned_certificate_is_trusted() {
        let a = HostIdentity::generate().unwrap();
        let b = HostIdentity::generate().unwrap();
        let verifier =
            PinnedServerCert { der: a.cert_der.to_vec(), algorithms: provider().signature_verification_algorithms };
        let name = ServerName::try_from(TLS_SERVER_NAME).unwrap();
        assert!(verifier.verify_server_cert(&a.cert_der, &[], &name, &[], UnixTime::now()).is_ok());
        let err = verifier.verify_server_cert(&b.cert_der, &[], &name, &[], UnixTime::now()).unwrap_err();
        assert!(err.to_string().contains("other than the one in its handshake line"), "{err}");
    }
}
