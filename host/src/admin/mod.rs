//! The admin endpoint (SPEC §10, §15): a small HTTP API on the running host,
//! and the dashboard at `GET /`.
//!
//! `GET /health`, `GET /plugins`, `GET /plugins/{name}`,
//! `POST /plugins/{name}/enable|disable|reload` (`?persist=true` writes an
//! enable or disable into `plugin.yaml`), `POST /plugins/{name}/promote|rollback`
//! and `POST /plugins/{name}/rollout` (`{"percent": N}`, SPEC §13), `POST /events/{topic}`,
//! `GET /metrics` (Prometheus text). Errors are JSON `{"error": "..."}`. It listens on loopback by default; a non-loopback
//! address needs a bearer token (checked in constant time). The server stops
//! with the host, after it has drained; `/health` answers 503 meanwhile.
//!
//! Watching (SPEC §15): `GET /overview` and `GET /overview/stream` (`overview`,
//! fed by the `sampler` task this server runs), `GET /stream?topics=` (`stream`),
//! and the browser rules every route obeys (`guard`).

pub(crate) mod auth;
mod dashboard;
mod dead_letters;
mod errors;
mod extract;
mod guard;
mod overview;
mod rollout;
mod routes;
mod sampler;
mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::Host;

pub use errors::ApiError;

/// The largest request body accepted (`POST /events/{topic}`): 1 MiB.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The default environment variable holding the bearer token.
pub const DEFAULT_TOKEN_ENV: &str = "PLUGHOST_ADMIN_TOKEN";

/// How the admin endpoint is served.
#[derive(Clone)]
pub struct AdminSettings {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The bearer token requests must carry, if any.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why the admin endpoint's settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminSettingsError {
    /// The listen address does not parse.
    #[error("admin: `{0}` is not a socket address (write e.g. `127.0.0.1:9090`)")]
    Address(String),
    /// A non-loopback address without a token.
    #[error(
        "admin: refusing to listen on non-loopback address {listen} without a bearer token; \
         set the environment variable {var} (or listen on 127.0.0.1)"
    )]
    NoToken {
        /// The address.
        listen: SocketAddr,
        /// The variable the token is read from.
        var: String,
    },
}

impl AdminSettings {
    /// Settings for `listen`, with the token read from the environment
    /// variable `token_env` (default [`DEFAULT_TOKEN_ENV`]). A non-loopback
    /// address without a token is refused.
    pub fn resolve(
        listen: &str,
        token_env: Option<&str>,
    ) -> Result<AdminSettings, AdminSettingsError> {
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| AdminSettingsError::Address(listen.to_owned()))?;
        let var = token_env.unwrap_or(DEFAULT_TOKEN_ENV);
        let token = auth::token_from(std::env::var(var).ok());
        if token.is_none() && !listen.ip().is_loopback() {
            return Err(AdminSettingsError::NoToken {
                listen,
                var: var.to_owned(),
            });
        }
        Ok(AdminSettings { listen, token })
    }
}

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) host: Host,
    pub(crate) token: Option<String>,
    pub(crate) shutting_down: AtomicBool,
    /// The last error seen per plugin (start failures, failed reloads).
    pub(crate) last_errors: Mutex<HashMap<String, String>>,
    /// The address bound, for the browser rules.
    pub(crate) listen: SocketAddr,
    /// When the server started serving (the overview's uptime).
    pub(crate) started: std::time::Instant,
    /// Recent rates and processing times per plugin.
    pub(crate) sampler: sampler::Sampler,
    /// Events `/stream` clients lost because they read too slowly.
    pub(crate) stream_lost: AtomicU64,
    /// `/stream` clients connected now (at most `stream::MAX_CLIENTS`).
    pub(crate) stream_clients: AtomicUsize,
    /// `/overview/stream` clients connected now (at most `overview::MAX_CLIENTS`).
    pub(crate) overview_clients: AtomicUsize,
    /// The overview snapshot the sampler task shares each second, as JSON text.
    pub(crate) overview: tokio::sync::watch::Sender<Arc<str>>,
    /// Turns `true` when the server stops: the streams end.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
}

impl State {
    pub(crate) fn last_error(&self, name: &str) -> Option<String> {
        self.last_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub(crate) fn set_error(&self, name: &str, error: Option<String>) {
        let mut map = self.last_errors.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            Some(e) => map.insert(name.to_owned(), e),
            None => map.remove(name),
        };
    }
}

/// A bound admin endpoint, not serving yet.
#[derive(Debug)]
pub struct Bound {
    listener: tokio::net::TcpListener,
    listen: SocketAddr,
    token: Option<String>,
}

impl Bound {
    /// Binds `settings.listen`.
    pub async fn bind(settings: &AdminSettings) -> std::io::Result<Bound> {
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        Ok(Bound {
            listen: listener.local_addr()?,
            listener,
            token: settings.token.clone(),
        })
    }

    /// The address bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.listen)
    }

    /// Serves `host` until [`AdminServer::stop`]. `failed` are the start
    /// failures to report as the plugins' last errors.
    pub fn serve(self, host: Host, failed: &[(String, String)]) -> AdminServer {
        let state = Arc::new(State {
            host,
            token: self.token,
            shutting_down: AtomicBool::new(false),
            last_errors: Mutex::new(failed.iter().cloned().collect()),
            listen: self.listen,
            started: std::time::Instant::now(),
            sampler: sampler::Sampler::default(),
            stream_lost: AtomicU64::new(0),
            stream_clients: AtomicUsize::new(0),
            overview_clients: AtomicUsize::new(0),
            overview: overview::channel(),
            stopping: tokio::sync::watch::channel(false).0,
        });
        let sampling = tokio::spawn(sample(state.clone()));
        let app = routes::router(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(self.listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!("admin endpoint: {e}");
            }
        });
        AdminServer {
            state,
            stop: Some(stop),
            task,
            sampling,
        }
    }
}

/// The sampler task: samples every plugin each [`sampler::PERIOD`], then
/// shares the overview snapshot with the stream's clients, until aborted.
async fn sample(state: Arc<State>) {
    let mut every = tokio::time::interval(sampler::PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        state.sampler.tick(&state.host);
        overview::share(&state);
    }
}

/// A running admin endpoint.
#[derive(Debug)]
pub struct AdminServer {
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    sampling: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// From now on `/health` answers 503.
    pub fn shutting_down(&self) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Stops accepting connections and waits (a bounded time) for those in flight.
    pub async fn stop(mut self) {
        self.shutting_down();
        self.sampling.abort();
        // The streams end, so the graceful shutdown does not wait for them.
        self.state.stopping.send_replace(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }
}
