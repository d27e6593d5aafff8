//! TLS for the client and peer listeners and for peer dials, configured with etcd's
//! flags (`--cert-file`, `--peer-cert-file`, ...). [`TlsSpec`] is what the flags say, in
//! both builds; the real build turns it into rustls configurations ([`Tls::load`]). The
//! simulator runs without TLS: what TLS decides (who the client is) reaches the member as
//! a plain [`ConnInfo`].

use std::path::PathBuf;

/// One side's TLS flags (client or peer), as etcd's `TLSInfo` holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSpec {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    /// Connections must present a certificate signed by the trusted CA.
    pub client_cert_auth: bool,
    /// Generate a self-signed certificate when no files are given.
    pub auto_tls: bool,
    /// Only a certificate with this Common Name is accepted (`--peer-cert-allowed-cn`).
    pub allowed_cn: Option<String>,
    /// TLS 1.2 cipher suites by their IANA (Go) names; empty means rustls's defaults.
    pub cipher_suites: Vec<String>,
    /// `TLS1.2` or `TLS1.3`; `None` means TLS 1.2.
    pub min_version: Option<String>,
}

impl TlsSpec {
    /// Whether a certificate is configured or will be generated: without one an
    /// `https://` URL cannot be served.
    pub fn has_certificate(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some() || self.auto_tls
    }
}

/// Who is at the other end of an accepted connection, as TLS established it.
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    /// The Common Name of the verified client certificate, on a listener with
    /// `--client-cert-auth` (where etcd takes it for the auth user).
    pub common_name: Option<String>,
}

#[cfg(not(madsim))]
pub use real::Tls;

/// TLS is not simulated: the simulator's members never configure it.
#[cfg(madsim)]
#[derive(Clone, Debug)]
pub struct Tls(());

#[cfg(madsim)]
impl Tls {
    pub fn load(
        _spec: &TlsSpec,
        _flag: &str,
        _hosts: &[String],
        _read: &dyn Fn(&std::path::Path) -> std::io::Result<Vec<u8>>,
    ) -> Result<Tls, String> {
        Err("TLS is not available in the simulator".into())
    }
}

#[cfg(not(madsim))]
mod real {
    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

    use super::TlsSpec;

    /// ALPN of the client listener: gRPC and the JSON gateway over HTTP/2, and HTTP/1.1
    /// clients (curl, Python) of /health, /version, /metrics and the gateway.
    const SERVER_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

    /// One side's TLS: the listener's configuration and, for peers, the dialer's (a member
    /// presents its peer certificate both ways, as etcd does).
    #[derive(Clone, Debug)]
    pub struct Tls {
        pub server: Arc<rustls::ServerConfig>,
        pub client: Arc<rustls::ClientConfig>,
        /// `--client-cert-auth`: a client certificate names the auth user.
        pub client_cert_auth: bool,
    }

    impl Tls {
        /// Builds `spec`'s configurations, reading files with `read`. `flag` is the
        /// flags' prefix (`""` or `"peer-"`) for error messages; `hosts` name the
        /// certificate that `auto_tls` generates when no files are given.
        pub fn load(
            spec: &TlsSpec,
            flag: &str,
            hosts: &[String],
            read: &dyn Fn(&Path) -> io::Result<Vec<u8>>,
        ) -> Result<Tls, String> {
            let provider = Arc::new(provider(spec)?);
            let versions: &[&rustls::SupportedProtocolVersion] = match spec.min_version.as_deref() {
                None | Some("TLS1.2") => &[&rustls::version::TLS12, &rustls::version::TLS13],
                Some("TLS1.3") => &[&rustls::version::TLS13],
                Some(v @ ("TLS1.0" | "TLS1.1")) => {
                    return Err(format!(
                        "--tls-min-version {v} is not supported (TLS1.2 or TLS1.3)"
                    ))
                }
                Some(v) => return Err(format!("unknown --tls-min-version {v:?}")),
            };
            let file = |name: &str, path: &Path| {
                read(path).map_err(|e| format!("--{flag}{name} {}: {e}", path.display()))
            };
            let (certs, key) = match (&spec.cert_file, &spec.key_file) {
                (Some(cert), Some(key)) => {
                    let certs = CertificateDer::pem_slice_iter(&file("cert-file", cert)?)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("--{flag}cert-file {}: {e}", cert.display()))?;
                    if certs.is_empty() {
                        return Err(format!(
                            "--{flag}cert-file {}: no certificate",
                            cert.display()
                        ));
                    }
                    let key = PrivateKeyDer::from_pem_slice(&file("key-file", key)?)
                        .map_err(|e| format!("--{flag}key-file {}: {e}", key.display()))?;
                    (certs, key)
                }
                _ if spec.auto_tls => self_signed(hosts)?,
                _ => {
                    return Err(format!(
                        "TLS key/cert (--{flag}cert-file, --{flag}key-file) must be provided"
                    ))
                }
            };
            let roots = match &spec.trusted_ca_file {
                Some(ca) => {
                    let mut roots = RootCertStore::empty();
                    for cert in CertificateDer::pem_slice_iter(&file("trusted-ca-file", ca)?) {
                        let cert = cert.map_err(|e| {
                            format!("--{flag}trusted-ca-file {}: {e}", ca.display())
                        })?;
                        roots.add(cert).map_err(|e| {
                            format!("--{flag}trusted-ca-file {}: {e}", ca.display())
                        })?;
                    }
                    Some(Arc::new(roots))
                }
                None => None,
            };
            let mismatch = |e: rustls::Error| {
                format!("--{flag}cert-file and --{flag}key-file do not make a key pair: {e}")
            };
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| e.to_string())?;
            // As etcd: a trusted CA alone also makes client certificates mandatory.
            let builder = match (&roots, spec.client_cert_auth) {
                (Some(roots), _) => {
                    let webpki = WebPkiClientVerifier::builder_with_provider(
                        roots.clone(),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| format!("--{flag}trusted-ca-file: {e}"))?;
                    builder.with_client_cert_verifier(Arc::new(AllowedCn {
                        webpki,
                        allowed_cn: spec.allowed_cn.clone(),
                    }))
                }
                (None, true) => {
                    return Err(format!(
                        "--{flag}client-cert-auth needs --{flag}trusted-ca-file"
                    ))
                }
                (None, false) => builder.with_no_client_auth(),
            };
            let mut server = builder
                .with_single_cert(certs.clone(), key.clone_key())
                .map_err(mismatch)?;
            server.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| e.to_string())?;
            // Without a CA (auto TLS) a peer's self-signed certificate cannot be checked:
            // etcd skips verification then, and so does detcd.
            let builder = match roots {
                Some(roots) => builder.with_root_certificates(roots),
                None => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Unverified(
                        provider.signature_verification_algorithms,
                    ))),
            };
            let mut client = builder
                .with_client_auth_cert(certs, key)
                .map_err(mismatch)?;
            client.alpn_protocols = vec![b"h2".to_vec()];
            Ok(Tls {
                server: Arc::new(server),
                client: Arc::new(client),
                client_cert_auth: spec.client_cert_auth,
            })
        }
    }

    /// ring's suites, the TLS 1.2 ones narrowed to `--cipher-suites` (TLS 1.3's are not
    /// configurable, as in Go).
    fn provider(spec: &TlsSpec) -> Result<CryptoProvider, String> {
        // ring, as tonic's `tls-ring`: no C toolchain needed. Its lack of post-quantum key
        // exchange is why rustls deprecates it; etcd 3.4/3.5 (Go 1.19-1.22) offer none either.
        #[allow(deprecated)]
        let mut provider = rustls::crypto::ring::default_provider();
        if spec.cipher_suites.is_empty() {
            return Ok(provider);
        }
        let name = |s: &rustls::SupportedCipherSuite| s.suite().as_str().unwrap_or("");
        for wanted in &spec.cipher_suites {
            // Go also spells the ChaCha20 suites without their hash.
            let known = provider.cipher_suites.iter().any(|s| {
                name(s) == wanted || name(s).strip_suffix("_SHA256") == Some(wanted.as_str())
            });
            if !known {
                return Err(format!(
                    "--cipher-suites: unexpected TLS cipher suite {wanted:?}"
                ));
            }
        }
        provider.cipher_suites.retain(|s| {
            matches!(s, rustls::SupportedCipherSuite::Tls13(_))
                || spec
                    .cipher_suites
                    .iter()
                    .any(|w| name(s) == w || name(s).strip_suffix("_SHA256") == Some(w.as_str()))
        });
        Ok(provider)
    }

    /// A self-signed certificate for `hosts`, as etcd's `--auto-tls` makes one.
    fn self_signed(
        hosts: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let generated = rcgen::generate_simple_self_signed(hosts.to_vec())
            .map_err(|e| format!("generating a self-signed certificate: {e}"))?;
        let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
            .map_err(|e| format!("generating a self-signed certificate: {e}"))?;
        Ok((vec![generated.cert.der().clone()], key))
    }

    /// The Common Name of a certificate's subject.
    pub(crate) fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let cn = parsed.subject().iter_common_name().next()?;
        cn.as_str().ok().map(str::to_string)
    }

    /// Client certificates checked against the trusted CA, then, if
    /// `--peer-cert-allowed-cn` is given, their Common Name: a handshake with any other
    /// certificate fails, as etcd's does.
    #[derive(Debug)]
    struct AllowedCn {
        webpki: Arc<dyn ClientCertVerifier>,
        allowed_cn: Option<String>,
    }

    impl ClientCertVerifier for AllowedCn {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            self.webpki.root_hint_subjects()
        }

        fn verify_client_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            now: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            let verified = self
                .webpki
                .verify_client_cert(end_entity, intermediates, now)?;
            match &self.allowed_cn {
                Some(allowed) if common_name(end_entity).as_ref() != Some(allowed) => Err(
                    rustls::Error::General("client certificate authentication failed".into()),
                ),
                _ => Ok(verified),
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.webpki.supported_verify_schemes()
        }
    }

    /// Accepts any server certificate (but still checks the handshake's signatures).
    #[derive(Debug)]
    struct Unverified(WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for Unverified {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }
}

#[cfg(not(madsim))]
pub(crate) use real::common_name;
