//! HTTPS identity made at start: a self-signed CA and a loopback serving certificate it signs, private keys in memory only.
//!
//! [`TlsIdentity::generate`] makes a fresh ECDSA P-256 CA and a serving certificate for
//! `127.0.0.1`, `::1`, `localhost` and any extra hosts, signs the one with the other, builds a
//! rustls `ServerConfig` (ring provider, the one kube-rs already pulls in; ALPN `http/1.1`, the
//! only protocol served) and then drops both private keys' serialised forms. Only the CA's
//! certificate leaves this module, as PEM, for the kubeconfig's `certificate-authority-data`.
//! Nothing here logs or formats a key: `Debug` shows the hosts and nothing else.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::SimError;

/// The hosts every serving certificate names.
pub const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// A CA certificate and a rustls server configuration whose certificate it signed.
#[derive(Clone)]
pub struct TlsIdentity {
    ca_pem: String,
    hosts: Vec<String>,
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> SimError {
    SimError::Internal(format!("{what}: {e}"))
}

impl TlsIdentity {
    /// A new CA and serving certificate for the loopback names plus `extra_hosts` (IP addresses
    /// or DNS names; duplicates ignored).
    pub fn generate(extra_hosts: &[String]) -> Result<Self, SimError> {
        let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        for h in extra_hosts {
            if !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }

        let ca_key = KeyPair::generate().map_err(|e| tls_error("generating the CA key", e))?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "podgrant-sim CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params
            .self_signed(&ca_key)
            .map_err(|e| tls_error("signing the CA certificate", e))?;

        let key = KeyPair::generate().map_err(|e| tls_error("generating the server key", e))?;
        let mut params = CertificateParams::new(hosts.clone())
            .map_err(|e| SimError::BadRequest(format!("a serving certificate host: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "podgrant-sim");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // OpenSSL 3's strict verification (Python 3.13's default) wants the AKI on the leaf.
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .map_err(|e| tls_error("signing the serving certificate", e))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS protocol versions", e))?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone(), ca.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| tls_error("the serving key pair", e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca.pem(),
            hosts,
            config: Arc::new(config),
        })
    }

    /// The CA certificate, PEM (public; what clients trust).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The names and addresses the serving certificate is valid for.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_names_the_loopback_hosts_once_and_debug_shows_no_key() {
        let id = TlsIdentity::generate(&["127.0.0.2".into(), "localhost".into()]).unwrap();
        assert_eq!(id.hosts(), ["127.0.0.1", "::1", "localhost", "127.0.0.2"]);
        assert!(id.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let dbg = format!("{id:?}");
        assert!(!dbg.contains("PRIVATE") && !dbg.contains("BEGIN"), "{dbg}");
    }

    #[test]
    fn a_host_that_is_not_ascii_is_refused() {
        let e = TlsIdentity::generate(&["hóst".into()]).unwrap_err();
        assert_eq!(e.code(), 400, "{e}");
    }
}
