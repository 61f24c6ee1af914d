//! Who may post: the bearer token and the HMAC body signature, both compared
//! in constant time.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sha2::Digest as _;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    #[default]
    Sha256,
    Sha1,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha512 => "sha512",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

/// Why a request is refused; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no credentials where some are required.
    Unauthenticated(String),
    /// 403: credentials given but wrong.
    Forbidden(String),
}

/// Checks `Authorization: Bearer <token>`. Both sides are hashed first so the
/// comparison takes the same time whatever the lengths.
pub fn check_bearer(authorization: Option<&str>, expected: &str) -> Result<(), Refusal> {
    let Some(value) = authorization else {
        return Err(Refusal::Unauthenticated("missing bearer token (Authorization: Bearer <token>)".into()));
    };
    let given = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(Refusal::Unauthenticated("the Authorization header is not a bearer token".into())),
    };
    let a = sha2::Sha256::digest(given.as_bytes());
    let b = sha2::Sha256::digest(expected.as_bytes());
    if bool::from(a.as_slice().ct_eq(b.as_slice())) {
        Ok(())
    } else {
        // 401 rather than 403: a wrong token is no credential at all.
        Err(Refusal::Unauthenticated("invalid bearer token".into()))
    }
}

/// The configured HMAC check.
#[derive(Clone)]
pub struct HmacCheck {
    secret: Vec<u8>,
    algorithm: Algorithm,
    header: String,
    encoding: Encoding,
    prefix: String,
}

impl std::fmt::Debug for HmacCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("HmacCheck")
            .field("algorithm", &self.algorithm)
            .field("header", &self.header)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl HmacCheck {
    pub fn new(secret: Vec<u8>, algorithm: Algorithm, header: String, encoding: Encoding, prefix: String) -> Self {
        Self { secret, algorithm, header, encoding, prefix }
    }

    /// The lower-case header carrying the signature.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// Checks the signature header value against the body.
    pub fn verify(&self, header_value: Option<&str>, body: &[u8]) -> Result<(), Refusal> {
        let Some(value) = header_value else {
            return Err(Refusal::Unauthenticated(format!("missing signature header {}", self.header)));
        };
        let value = value.trim();
        let encoded = match value.get(..self.prefix.len()) {
            Some(p) if !self.prefix.is_empty() && p.eq_ignore_ascii_case(&self.prefix) => &value[self.prefix.len()..],
            _ => value,
        };
        let signature = match self.encoding {
            Encoding::Hex => hex::decode(encoded).ok(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(encoded).ok(),
        };
        let Some(signature) = signature else {
            let encoding = match self.encoding {
                Encoding::Hex => "hex",
                Encoding::Base64 => "base64",
            };
            return Err(Refusal::Forbidden(format!("signature in {} is not {encoding}", self.header)));
        };
        // `verify_slice` compares in constant time.
        let ok = match self.algorithm {
            Algorithm::Sha256 => verify::<hmac::Hmac<sha2::Sha256>>(&self.secret, body, &signature),
            Algorithm::Sha1 => verify::<hmac::Hmac<sha1::Sha1>>(&self.secret, body, &signature),
            Algorithm::Sha512 => verify::<hmac::Hmac<sha2::Sha512>>(&self.secret, body, &signature),
        };
        if ok {
            Ok(())
        } else {
            Err(Refusal::Forbidden(format!("signature in {} does not match the body", self.header)))
        }
    }
}

fn verify<M: Mac + KeyInit>(secret: &[u8], body: &[u8], signature: &[u8]) -> bool {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

/// Signs `body` the way a sender would (tests and examples).
#[cfg(test)]
pub fn sign(algorithm: Algorithm, secret: &[u8], body: &[u8]) -> Vec<u8> {
    fn sign_with<M: Mac + KeyInit>(secret: &[u8], body: &[u8]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(secret).expect("any key length");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha256 => sign_with::<hmac::Hmac<sha2::Sha256>>(secret, body),
        Algorithm::Sha1 => sign_with::<hmac::Hmac<sha1::Sha1>>(secret, body),
        Algorithm::Sha512 => sign_with::<hmac::Hmac<sha2::Sha512>>(secret, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(algorithm: Algorithm, encoding: Encoding) -> HmacCheck {
        let prefix = format!("{}=", algorithm.name());
        HmacCheck::new(
            b"It's a Secret to Everybody".to_vec(),
            algorithm,
            "x-hub-signature-256".into(),
            encoding,
            prefix,
        )
    }

    #[test]
    fn github_documented_example_verifies() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let c = check(Algorithm::Sha256, Encoding::Hex);
        assert_eq!(c.verify(Some(header), b"Hello, World!"), Ok(()));
        assert!(
            matches!(c.verify(Some(header), b"Hello, World?"), Err(Refusal::Forbidden(m)) if m.contains("does not match"))
        );
    }

    #[test]
    fn every_algorithm_and_encoding_round_trips() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha1, Algorithm::Sha512] {
            let sig = sign(algorithm, b"It's a Secret to Everybody", b"{}");
            let hex_check = check(algorithm, Encoding::Hex);
            assert_eq!(hex_check.verify(Some(&hex::encode(&sig)), b"{}"), Ok(()), "{algorithm:?} bare hex");
            assert_eq!(hex_check.verify(Some(&hex::encode_upper(&sig)), b"{}"), Ok(()), "{algorithm:?} upper hex");
            let b64 = base64::engine::general_purpose::STANDARD.encode(&sig);
            let b64_check = check(algorithm, Encoding::Base64);
            let prefixed = format!("{}={b64}", algorithm.name());
            assert_eq!(b64_check.verify(Some(&prefixed), b"{}"), Ok(()), "{algorithm:?} base64");
            assert!(b64_check.verify(Some(&b64), b"{ }").is_err());
        }
    }

    #[test]
    fn missing_and_malformed_signatures_are_refused_clearly() {
        let c = check(Algorithm::Sha256, Encoding::Hex);
        assert_eq!(
            c.verify(None, b"{}"),
            Err(Refusal::Unauthenticated("missing signature header x-hub-signature-256".into()))
        );
        assert_eq!(
            c.verify(Some("sha256=zz"), b"{}"),
            Err(Refusal::Forbidden("signature in x-hub-signature-256 is not hex".into()))
        );
        // A signature of the wrong length never matches (and does not panic).
        assert!(matches!(c.verify(Some("sha256=abcd"), b"{}"), Err(Refusal::Forbidden(_))));
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(check_bearer(Some("Bearer s3cret"), "s3cret"), Ok(()));
        assert_eq!(check_bearer(Some("bearer s3cret"), "s3cret"), Ok(()));
        assert!(
            matches!(check_bearer(Some("Bearer s3cret2"), "s3cret"), Err(Refusal::Unauthenticated(m)) if m == "invalid bearer token")
        );
        assert!(
            matches!(check_bearer(Some("Basic czNjcmV0"), "s3cret"), Err(Refusal::Unauthenticated(m)) if m.contains("not a bearer"))
        );
        assert!(matches!(check_bearer(None, "s3cret"), Err(Refusal::Unauthenticated(m)) if m.contains("missing")));
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let c = check(Algorithm::Sha256, Encoding::Hex);
        assert!(!format!("{c:?}").contains("Secret"));
    }
}
