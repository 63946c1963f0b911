//! The TLS client configuration of one endpoint, on rustls (with ring): the
//! system's roots or the endpoint's `ca_file`, and an optional client
//! certificate. Shared by every connection of the endpoint's pool.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::EgressError;
use crate::config::EndpointConfig;

/// The rustls configuration for `e`.
///
/// # Errors
/// [`EgressError::Tls`] naming the file or what is wrong.
pub fn client_config(e: &EndpointConfig) -> Result<rustls::ClientConfig, EgressError> {
    let tls = |what: String| EgressError::Tls {
        endpoint: e.name.clone(),
        what,
    };
    let mut roots = RootCertStore::empty();
    match &e.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|err| tls(format!("cannot read ca_file {}: {err}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|err| tls(format!("ca_file {}: {err}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|err| tls(format!("ca_file {}: {err}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(tls(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() && e.resolved_url.starts_with("https:") {
                return Err(tls(
                    "no CA certificate in the system's store; set ca_file".into()
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| tls(err.to_string()))?
        .with_root_certificates(roots);
    match (&e.client_cert_file, &e.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|err| {
                    tls(format!(
                        "cannot read client_cert_file {}: {err}",
                        cert.display()
                    ))
                })?
                .collect::<Result<_, _>>()
                .map_err(|err| tls(format!("client_cert_file {}: {err}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|err| tls(format!("client_key_file {}: {err}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| tls(format!("client certificate: {err}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}
