//! Certificates made for one run: a CA of its own, the server
//! certificates it signs, and one it does not sign, for a listener that
//! a client which checks certificates must refuse.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A certificate and its private key, in PEM.
pub(crate) struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that lives as long as its run.
pub(crate) struct RunCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn failed(e: rcgen::Error) -> String {
    format!("cannot make the run's certificates: {e}")
}

fn server_params(hosts: Vec<String>) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(hosts).map_err(failed)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    Ok(params)
}

impl RunCa {
    /// A new CA, named `name`.
    pub(crate) fn new(name: &str) -> Result<Self, String> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().map_err(failed)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(failed)?;
        Ok(RunCa { issuer })
    }

    /// The CA's certificate, for clients to trust.
    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `hosts`, signed by this CA.
    pub(crate) fn issue(&self, hosts: Vec<String>) -> Result<Issued, String> {
        let key = KeyPair::generate().map_err(failed)?;
        let cert = server_params(hosts)?
            .signed_by(&key, &self.issuer)
            .map_err(failed)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A server certificate for `hosts` that no CA signed.
pub(crate) fn self_signed(hosts: Vec<String>) -> Result<Issued, String> {
    let key = KeyPair::generate().map_err(failed)?;
    let cert = server_params(hosts)?.self_signed(&key).map_err(failed)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A TLS server configuration that presents `issued`.
pub(crate) fn server_config(issued: &Issued) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|e| format!("the key is not PEM: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate does not fit its key: {e}"))?;
    Ok(Arc::new(config))
}
