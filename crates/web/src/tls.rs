//! HTTPS served directly (`CHARTER_TLS_CERT`, `CHARTER_TLS_KEY`): rustls
//! (ring) in front of the same router `serve` runs, HTTP/1.1.
//!
//! The certificate files are looked at again at most once a second when a
//! connection arrives, and re-read when they change: a renewed
//! certificate (certbot, acme.sh) is used without a restart. A renewal that
//! cannot be read keeps the certificate in use and logs why.

use crate::{background, router, SharedApp};
use axum::extract::ConnectInfo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The files are checked for a renewal at most this often.
const RECHECK: Duration = Duration::from_secs(1);

/// The certificate chain and private key, from PEM files.
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl std::fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFiles").field("cert", &self.cert).field("key", &self.key).finish_non_exhaustive()
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl CertFiles {
    /// Reads both files now; an unreadable or mismatched pair is an error
    /// naming the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertFiles>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamp = (modified(cert), modified(key));
        let certified = read_pair(cert, key, &provider)?;
        Ok(Arc::new(CertFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(Loaded { key: certified, stamp, checked: Instant::now() }),
            provider,
        }))
    }

    /// The rustls configuration that serves these files.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let stamp = (modified(&self.cert), modified(&self.key));
            if stamp != state.stamp {
                match read_pair(&self.cert, &self.key, &self.provider) {
                    Ok(key) => {
                        state.key = key;
                        state.stamp = stamp;
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    }
                    // Half-written during a renewal, say: keep serving the
                    // old one and look again next time.
                    Err(e) => tracing::warn!(error = %e, "the changed TLS certificate cannot be used yet; keeping the current one"),
                }
            }
        }
        state.key.clone()
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn read_pair(cert: &Path, key: &Path, provider: &rustls::crypto::CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("CHARTER_TLS_CERT {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("CHARTER_TLS_CERT {}: no PEM certificate in it", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("CHARTER_TLS_KEY {}: {e}", key.display()))?;
    let certified = CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| format!("CHARTER_TLS_KEY {} does not go with CHARTER_TLS_CERT {}: {e}", key.display(), cert.display()))?;
    Ok(Arc::new(certified))
}

/// Serves HTTPS until `shutdown` resolves, then lets open requests finish
/// (up to 30 seconds).
pub async fn serve_tls(
    app: SharedApp,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(app.clone());
    let tasks = background(app);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let (acceptor, router, watcher) = (acceptor.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = tower::ServiceExt::map_request(router, move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
            let service = hyper_util::service::TowerToHyperService::new(service);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after 30 s; closing them");
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}
