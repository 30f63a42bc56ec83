//! OTLP over `https://`: the exporters' HTTP client for a TLS endpoint,
//! rustls on ring (the provider the NATS client already brings), trusting
//! the system's roots and, when `OTEL_EXPORTER_OTLP_CERTIFICATE` names one,
//! the CA certificates of that PEM file.
//!
//! One HTTP/1.1 connection, kept between exports and opened again after an
//! error, driven by a small runtime of the client's own: the exporters call
//! it from their own threads, outside the host's runtime.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

/// Why an HTTPS client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read or holds no certificate.
    #[error("OTEL_EXPORTER_OTLP_CERTIFICATE {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The client's runtime could not start.
    #[error("the HTTPS client's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// An HTTP/1.1-over-TLS client for the OTLP exporters.
pub(crate) struct HttpsClient {
    runtime: Option<tokio::runtime::Runtime>,
    connector: TlsConnector,
    timeout: Duration,
    connection: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient").finish_non_exhaustive()
    }
}

impl HttpsClient {
    /// A client trusting the system's roots and the certificates of `ca`.
    pub(crate) fn new(ca: Option<&Path>, timeout: Duration) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = ca {
            let bad = |reason: String| TlsError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            for cert in certs {
                roots.add(cert)?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(HttpsClient {
            runtime: Some(runtime),
            connector: TlsConnector::from(Arc::new(config)),
            timeout,
            connection: Mutex::new(None),
        })
    }

    /// Sends `request` over the kept connection, and over a new one when
    /// the kept one fails (the collector may have closed it meanwhile).
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let kept = self
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|c| !c.is_closed());
        if let Some(sender) = kept
            && let Ok(response) = self.send_on(sender, copy(&request)).await
        {
            return Ok(response);
        }
        let sender = self.connect(request.uri()).await?;
        self.send_on(sender, request).await
    }

    /// Sends `request` on `sender`, kept for the next one on success.
    async fn send_on(
        &self,
        mut sender: SendRequest<Full<Bytes>>,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, HttpError> {
        sender.ready().await?;
        let (mut parts, body) = request.into_parts();
        // A connection of our own: origin-form target, `Host` from the URL.
        if let Some(authority) = parts.uri.authority()
            && !parts.headers.contains_key(hyper::header::HOST)
        {
            parts
                .headers
                .insert(hyper::header::HOST, authority.as_str().parse()?);
        }
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = target.parse()?;
        let response = sender
            .send_request(Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender);
        Ok(Response::from_parts(parts, body))
    }

    async fn connect(&self, uri: &hyper::Uri) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let host = uri.host().ok_or("the endpoint has no host")?;
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
        let tls = self.connector.connect(name, tcp).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// A copy of `request` (its body is shared, not copied).
fn copy(request: &Request<Bytes>) -> Request<Bytes> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

impl HttpClient for HttpsClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        // The exporters poll this on threads of their own, outside any
        // runtime: the request runs to its end on the client's runtime.
        let result = match &self.runtime {
            Some(rt) => rt.block_on(async {
                match tokio::time::timeout(self.timeout, self.send(request)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {:?}", self.timeout).into()),
                }
            }),
            None => Err("the HTTPS client is shut down".into()),
        };
        Box::pin(std::future::ready(result))
    }
}

impl Drop for HttpsClient {
    fn drop(&mut self) {
        // Dropped where blocking may be forbidden (inside the host's runtime).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
