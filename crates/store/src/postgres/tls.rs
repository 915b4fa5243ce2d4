//! TLS to PostgreSQL with libpq's `sslmode` meanings, over rustls.
//!
//! `CHARTER_DATABASE_URL` takes the parameters libpq users know:
//!
//! | `sslmode`     | encrypted            | server checked                     |
//! |---------------|----------------------|------------------------------------|
//! | `disable`     | never                | no                                 |
//! | `prefer` (default) | if the server offers | no                           |
//! | `require`     | always               | no; the CA when `sslrootcert` is set |
//! | `verify-ca`   | always               | certificate signed by a trusted CA |
//! | `verify-full` | always               | that, and issued to the host name  |
//!
//! `sslrootcert` is a PEM file of trusted CAs, or `system` for the
//! operating system's bundle (also the default for `verify-ca` and
//! `verify-full`). Client certificates (`sslcert`, `sslkey`) are refused
//! with a message rather than ignored.

use crate::StoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(v: &str) -> Result<SslMode, StoreError> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(StoreError::Config(
                    "sslmode=allow is not supported: use `prefer` (TLS when the server offers it) or `require`".into(),
                ))
            }
            other => {
                return Err(StoreError::Config(format!(
                    "invalid sslmode `{other}` in the PostgreSQL URL: use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }
}

/// The TLS part of a connection URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// The CA file to trust (already resolved from `system`), when the
    /// server's certificate is checked.
    pub root_cert: Option<PathBuf>,
}

/// Where Debian, Ubuntu, Alpine, Fedora/RHEL and macOS keep the system's
/// trusted CAs as one PEM file.
const SYSTEM_BUNDLES: [&str; 4] =
    ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem", "/etc/pki/tls/cacert.pem"];

fn system_bundle() -> Result<PathBuf, StoreError> {
    SYSTEM_BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file()).ok_or_else(|| {
        StoreError::Config(
            "no system CA bundle was found to check the PostgreSQL server's certificate; set sslrootcert=/path/to/ca.pem in the URL".into(),
        )
    })
}

/// Splits `url` into what tokio-postgres parses and the TLS settings it
/// does not know (`verify-ca`, `verify-full`, `sslrootcert`).
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, TlsSettings), StoreError> {
    let mut mode = None;
    let mut root: Option<String> = None;
    let rest = match url.split_once('?') {
        Some((base, query)) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                match k {
                    "sslmode" => mode = Some(SslMode::parse(&percent_decode(v)?)?),
                    "sslrootcert" => root = Some(percent_decode(v)?),
                    "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                        return Err(StoreError::Config(format!(
                            "`{k}` in the PostgreSQL URL is not supported: charter does not send client certificates; use password authentication over sslmode=verify-full"
                        )))
                    }
                    _ => kept.push(pair),
                }
            }
            if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
        _ => url.to_string(),
    };
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::Config(format!("invalid PostgreSQL URL: {}", super::pg_error_text(&e))))?;
    let mode = match mode {
        Some(m) => m,
        // A key=value connection string: tokio-postgres read its sslmode.
        None => match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        },
    };
    // libpq: `require` with a CA file given checks the chain like verify-ca.
    let mode = if mode == SslMode::Require && root.is_some() { SslMode::VerifyCa } else { mode };
    let root_cert = match (mode, root.as_deref()) {
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, _) => None,
        (_, None | Some("system")) => Some(system_bundle()?),
        (_, Some(path)) => Some(PathBuf::from(path)),
    };
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    Ok((config, TlsSettings { mode, root_cert }))
}

fn percent_decode(v: &str) -> Result<String, StoreError> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return Err(StoreError::Config("invalid percent-encoding in the PostgreSQL URL".into()));
            };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| StoreError::Config("the PostgreSQL URL is not UTF-8 once decoded".into()))
}

/// The connector handed to the pool: one rustls configuration for every
/// connection, checking the server as the settings say.
#[derive(Clone)]
pub struct PgTls {
    config: Arc<ClientConfig>,
}

impl PgTls {
    pub fn new(settings: &TlsSettings) -> Result<PgTls, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Internal(format!("TLS setup: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match &settings.root_cert {
            None => Arc::new(Unchecked(provider)),
            Some(path) => {
                let roots = Arc::new(load_roots(path)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| StoreError::Config(format!("cannot use the CAs in {}: {e}", path.display())))?;
                if settings.mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(AnyName(webpki))
                }
            }
        };
        let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
        Ok(PgTls { config: Arc::new(config) })
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore, StoreError> {
    let unreadable = |e: &dyn std::fmt::Display| StoreError::Config(format!("cannot read sslrootcert {}: {e}", path.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        let cert = cert.map_err(|e| unreadable(&e))?;
        roots.add(cert).map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(StoreError::Config(format!("sslrootcert {} holds no PEM certificate", path.display())));
    }
    Ok(roots)
}

/// `prefer` and `require`: encrypted, but any certificate is accepted (the
/// handshake's signatures are still checked against it), as in libpq.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name on the
/// certificate is not compared with the host.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, Self::Error> {
        let name = ServerName::try_from(domain.to_string())?;
        Ok(PgTlsConnect { connector: tokio_rustls::TlsConnector::from(self.config.clone()), name })
    }
}

pub struct PgTlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move { self.connector.connect(self.name, stream).await.map(|s| PgTlsStream(Box::new(s))) })
    }
}

pub struct PgTlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S> TlsStream for PgTlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // SCRAM without channel binding (what libpq does with
    // channel_binding=prefer when the binding cannot be computed).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_are_taken_out_of_the_url() {
        let (config, tls) =
            parse_url("postgres://u:p@db.example:5433/app?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca%20x.pem&application_name=a").unwrap();
        assert_eq!(tls, TlsSettings { mode: SslMode::VerifyFull, root_cert: Some(PathBuf::from("/tmp/ca x.pem")) });
        assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(config.get_application_name(), Some("a"));
        assert_eq!(config.get_dbname(), Some("app"));

        let (config, tls) = parse_url("postgres://u@h/app").unwrap();
        assert_eq!((tls.mode, tls.root_cert), (SslMode::Prefer, None));
        assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);

        let (config, tls) = parse_url("postgres://u@h/app?sslmode=disable").unwrap();
        assert_eq!(tls.mode, SslMode::Disable);
        assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);

        // libpq: require with a CA file checks the chain.
        let (_, tls) = parse_url("postgres://u@h/app?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!(tls, TlsSettings { mode: SslMode::VerifyCa, root_cert: Some(PathBuf::from("/ca.pem")) });
        let (_, tls) = parse_url("postgres://u@h/app?sslmode=require").unwrap();
        assert_eq!(tls, TlsSettings { mode: SslMode::Require, root_cert: None });

        // A key=value string keeps tokio-postgres's own sslmode.
        let (_, tls) = parse_url("host=h user=u dbname=app sslmode=require").unwrap();
        assert_eq!(tls.mode, SslMode::Require);
    }

    #[test]
    fn bad_tls_parameters_are_refused_with_a_reason() {
        let err = |url: &str| match parse_url(url) {
            Err(StoreError::Config(m)) => m,
            other => panic!("{url}: {other:?}"),
        };
        assert!(err("postgres://u@h/app?sslmode=verify").contains("disable, prefer, require, verify-ca or verify-full"));
        assert!(err("postgres://u@h/app?sslmode=allow").contains("not supported"));
        assert!(err("postgres://u@h/app?sslcert=/c.pem").contains("client certificates"));
        assert!(err("postgres://u@h/app?sslrootcert=%zz").contains("percent-encoding"));
        let missing = PgTls::new(&TlsSettings { mode: SslMode::VerifyFull, root_cert: Some("/nonexistent/ca.pem".into()) });
        assert!(matches!(missing, Err(StoreError::Config(m)) if m.contains("/nonexistent/ca.pem")));
    }
}
