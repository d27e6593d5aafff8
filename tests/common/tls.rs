//! Test certificates, made fresh by each test (rcgen) and written under its temporary
//! directory: a CA, and certificates it signs for servers and clients; and etcdctl with
//! them.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A certificate and its key, as PEM files.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA that signs certificates for 127.0.0.1 and localhost.
pub struct TestCa {
    pub cert: PathBuf,
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        TestCa {
            cert: path,
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate with Common Name `cn`, valid for servers and clients on loopback.
    pub fn issue(&self, cn: &str) -> CertFiles {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = CertFiles {
            cert: self.dir.join(format!("{cn}.crt")),
            key: self.dir.join(format!("{cn}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// A TLS connection to 127.0.0.1:`port` that trusts this CA and presents `client`.
    /// The handshake happens on first use.
    pub fn connect(
        &self,
        port: u16,
        client: &CertFiles,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&self.cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let certs: Vec<_> = CertificateDer::pem_file_iter(&client.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&client.key).unwrap();
        #[allow(deprecated)] // the provider the server uses (src/net/tls.rs)
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .unwrap();
        let name = "127.0.0.1".try_into().unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        rustls::StreamOwned::new(conn, TcpStream::connect(("127.0.0.1", port)).unwrap())
    }
}

/// etcdctl against `endpoint`, with `tls` as `--cacert --cert --key` arguments.
pub fn etcdctl(endpoint: &str, tls: &[&str], args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            endpoint,
            "--command-timeout",
            "3s",
            "--dial-timeout",
            "2s",
        ])
        .args(tls)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs etcdctl until it succeeds (a leader is elected first), for up to 30 s.
pub fn until_ok(endpoint: &str, tls: &[&str], args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = etcdctl(endpoint, tls, args);
        if out.status.success() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} kept failing: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn tls_args(ca: &TestCa, client: &CertFiles) -> Vec<String> {
    vec![
        format!("--cacert={}", ca.cert.display()),
        format!("--cert={}", client.cert.display()),
        format!("--key={}", client.key.display()),
    ]
}
