//! TLS for `https://` targets: rustls with the ring provider (the one TLS
//! stack of the workspace), the system's roots plus a scenario's own CA, a
//! client certificate, session resumption on by default, and an insecure
//! mode that the report names loudly.

use std::sync::{Arc, OnceLock};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::safety::FeedAccess;
use crate::scenario::TlsSpec;
use crate::{Error, Result};

/// Largest PEM file (CA bundle, certificate or key) read for a scenario.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// What a run's TLS connections use.
#[derive(Clone)]
pub(crate) struct TlsClient {
    pub(crate) connector: tokio_rustls::TlsConnector,
    /// Certificates are not verified (`tls.insecure_skip_verify`).
    pub(crate) insecure: bool,
    /// Sessions are resumed (`tls.session_resumption`, default true).
    pub(crate) resumption: bool,
    /// SNI and verification name instead of the target's host.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("insecure", &self.insecure)
            .field("resumption", &self.resumption)
            .finish_non_exhaustive()
    }
}

/// The ring provider, offering AES-128-GCM first (as browsers do): the
/// server picks from our order, and the cheaper cipher leaves more of the
/// generator's CPU for load.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| {
        let mut p = rustls::crypto::ring::default_provider();
        p.cipher_suites.sort_by_key(|s| {
            let name = format!("{:?}", s.suite());
            (!name.contains("AES_128_GCM"), !name.starts_with("TLS13"))
        });
        Arc::new(p)
    }))
}

/// The system's trust anchors, read once per process (unreadable ones are skipped).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn invalid(key: &str, value: &str, allowed: impl Into<String>) -> Error {
    Error::Invalid {
        scenario: String::new(),
        key: key.to_owned(),
        value: value.to_owned(),
        allowed: allowed.into(),
    }
}

/// The inline key beside a file key: `ca_file` → `ca_pem`, `client_cert` → `client_cert_pem`.
fn pem_key(key: &str) -> String {
    format!("{}_pem", key.trim_end_matches("_file"))
}

/// The PEM text of `key`: inline (`*_pem`), or a file (on the command line
/// only: `FeedAccess::Any`), bounded, and never quoted back in an error.
fn pem_of(
    key: &str,
    file: Option<&str>,
    inline: Option<&str>,
    access: &FeedAccess,
) -> Result<Option<Vec<u8>>> {
    match (file, inline) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            "both a file and inline PEM",
            format!("one of tls.{key} or tls.{}", pem_key(key)),
        )),
        (None, Some(text)) => {
            if text.len() as u64 > MAX_PEM_BYTES {
                return Err(invalid(
                    &format!("tls.{}", pem_key(key)),
                    &format!("{} bytes", text.len()),
                    format!("at most {MAX_PEM_BYTES} bytes of PEM"),
                ));
            }
            Ok(Some(text.as_bytes().to_vec()))
        }
        (Some(file), None) => {
            // Through a service, TLS files are never read: a key in the
            // feeds directory could otherwise be named as `data.file` by any
            // caller and sent to a target as "data"; certificates and keys
            // come inline (`*_pem`) there.
            if !matches!(access, FeedAccess::Any) {
                return Err(invalid(
                    &format!("tls.{key}"),
                    &format!("{file:?}"),
                    format!(
                        "no TLS file paths through a service: give the PEM text as tls.{}",
                        pem_key(key)
                    ),
                ));
            }
            let path = access.resolve(file)?;
            let bytes = crate::request::read_bounded_with(file, &path, MAX_PEM_BYTES).map_err(
                |e| match e {
                    Error::Feeder { message, .. } => {
                        invalid(&format!("tls.{key}"), &format!("{file:?}"), message)
                    }
                    other => other,
                },
            )?;
            Ok(Some(bytes))
        }
        (None, None) => Ok(None),
    }
}

/// A rustls client configuration (ring provider) for `spec`: the system's
/// roots plus `ca_file`/`ca_pem`, a client certificate, `insecure_skip_verify`,
/// `session_resumption`, offering `alpn`. Files are read as `access` allows;
/// errors name the `tls.*` key and never quote a file's content. What the
/// load engine uses for `https://` targets, and what other clients of the
/// toolkit (perf-server talking to its workers) can share.
///
/// ```
/// use perf_loadgen::{FeedAccess, TlsSpec, tls_client_config};
/// let config = tls_client_config(Some(&TlsSpec::default()), &FeedAccess::Any, vec![b"http/1.1".to_vec()])?;
/// assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
/// let bad = TlsSpec { ca_file: Some("/no/such.pem".into()), ..TlsSpec::default() };
/// let e = tls_client_config(Some(&bad), &FeedAccess::Any, vec![]).unwrap_err();
/// assert!(e.to_string().contains("tls.ca_file"));
/// # Ok::<(), perf_loadgen::Error>(())
/// ```
pub fn tls_client_config(
    spec: Option<&TlsSpec>,
    access: &FeedAccess,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ClientConfig>> {
    let default = TlsSpec::default();
    let spec = spec.unwrap_or(&default);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls", "the TLS provider", e.to_string()))?;
    let builder = if spec.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(system_roots().iter().cloned());
        if let Some(pem) = pem_of(
            "ca_file",
            spec.ca_file.as_deref(),
            spec.ca_pem.as_deref(),
            access,
        )? {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| {
                    invalid(
                        "tls.ca_file",
                        "its content",
                        "PEM certificates (-----BEGIN CERTIFICATE-----)",
                    )
                })?;
            if certs.is_empty() {
                return Err(invalid(
                    "tls.ca_file",
                    "its content",
                    "at least one PEM certificate",
                ));
            }
            let (_, refused) = roots.add_parsable_certificates(certs);
            if refused > 0 {
                return Err(invalid(
                    "tls.ca_file",
                    &format!("{refused} certificate(s)"),
                    "CA certificates that parse as X.509",
                ));
            }
        }
        builder.with_root_certificates(roots)
    };
    let cert = pem_of(
        "client_cert",
        spec.client_cert.as_deref(),
        spec.client_cert_pem.as_deref(),
        access,
    )?;
    let key = pem_of(
        "client_key",
        spec.client_key.as_deref(),
        spec.client_key_pem.as_deref(),
        access,
    )?;
    let mut config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
                .collect::<std::result::Result<_, _>>()
                .ok()
                .filter(|c: &Vec<_>| !c.is_empty())
                .ok_or_else(|| {
                    invalid("tls.client_cert", "its content", "a PEM certificate chain")
                })?;
            let key = PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
                invalid(
                    "tls.client_key",
                    "its content",
                    "a PEM private key (PKCS#8, PKCS#1 or SEC1)",
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                invalid(
                    "tls.client_key",
                    "the key",
                    format!("a key that matches tls.client_cert ({e})"),
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(invalid(
                "tls.client_cert",
                "only one of client_cert and client_key",
                "both tls.client_cert and tls.client_key, or neither",
            ));
        }
    };
    config.alpn_protocols = alpn;
    config.resumption = if spec.session_resumption.unwrap_or(true) {
        Resumption::in_memory_sessions(1024)
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

impl TlsSpec {
    /// `server_name` as the name TLS sends and verifies, when it is set.
    ///
    /// ```
    /// use perf_loadgen::TlsSpec;
    /// let spec = TlsSpec { server_name: Some("api.internal".into()), ..TlsSpec::default() };
    /// assert!(spec.verified_server_name().unwrap().is_some());
    /// let bad = TlsSpec { server_name: Some("not a name".into()), ..TlsSpec::default() };
    /// assert!(bad.verified_server_name().unwrap_err().to_string().contains("tls.server_name"));
    /// ```
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `tls.server_name` when it is neither a DNS
    /// name nor an IP address.
    pub fn verified_server_name(&self) -> Result<Option<ServerName<'static>>> {
        self.server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_owned()).map_err(|_| {
                    invalid(
                        "tls.server_name",
                        &format!("{name:?}"),
                        "a DNS name or an IP address",
                    )
                })
            })
            .transpose()
    }
}

impl TlsClient {
    /// Builds the client for `spec` (or the defaults), offering `alpn`.
    /// Errors name the `tls.*` key and never quote a file's content.
    pub(crate) fn build(
        spec: Option<&TlsSpec>,
        access: &FeedAccess,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Self> {
        let config = tls_client_config(spec, access, alpn)?;
        let default = TlsSpec::default();
        let spec = spec.unwrap_or(&default);
        let resumption = spec.session_resumption.unwrap_or(true);
        let server_name = spec.verified_server_name()?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(config),
            insecure: spec.insecure_skip_verify,
            resumption,
            server_name,
        })
    }

    /// The name sent (SNI) and verified for a target host (as written in its URL).
    pub(crate) fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(bare.to_owned())
            .map_err(|_| format!("{host:?} is not a DNS name or IP address TLS can verify"))
    }
}

/// `insecure_skip_verify`: any certificate is taken, but the handshake's
/// signatures are still checked (the peer holds the key it shows).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
