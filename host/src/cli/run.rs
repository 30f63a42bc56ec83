//! `plughost run`: start the host, feed it input, tap the bus, stop cleanly.
//!
//! The order is the contract's: plugins start (every `init` done) before the
//! first input line is published; on Ctrl-C or SIGTERM input stops, queues
//! drain for up to the drain timeout, `shutdown` hooks run; with
//! `--exit-when-idle` the host exits once input is done and nothing is
//! pending.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::input::{self, InputStats};
use crate::Host;
use crate::admin::{AdminSettings, Bound};
use crate::telemetry::export::Export;

/// The read buffer of `--input`: large, so a file is read in few system calls.
const INPUT_BUFFER: usize = 256 * 1024;

/// How much tap output is gathered before it is written.
const TAP_BATCH_BYTES: usize = 64 * 1024;

/// Where `--input` reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// Standard input (`-`), read line by line as it arrives.
    Stdin,
    /// A file.
    File(PathBuf),
}

/// Options of `plughost run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Plugins directories.
    pub plugins: Vec<PathBuf>,
    /// Events to publish.
    pub input: Option<InputSource>,
    /// Patterns whose events are printed on stdout.
    pub taps: Vec<String>,
    /// Exit when input is done and the host is idle.
    pub exit_when_idle: bool,
    /// How long shutdown waits for queues to drain.
    pub drain_timeout: Duration,
    /// Watch the plugins directories and reload plugins live.
    pub watch: bool,
    /// OTLP export of traces and metrics, when configured.
    pub export: Option<Arc<Export>>,
    /// Serve the admin endpoint (SPEC §10).
    pub admin: Option<AdminSettings>,
}

/// Exit codes of the command line.
pub mod exit {
    /// Everything went fine.
    pub const OK: i32 = 0;
    /// A plugin or an input line had errors.
    pub const ERRORS: i32 = 1;
    /// Bad usage or configuration.
    pub const USAGE: i32 = 2;
}

/// Why `plughost run` could not run: a configuration or usage error, found
/// before any plugin started (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The host could not be built (a plugins directory is missing).
    #[error(transparent)]
    Host(#[from] crate::HostError),
    /// A `--tap` pattern is malformed.
    #[error("--tap: {0}")]
    Tap(crate::topic::TopicError),
    /// The `--input` file cannot be opened.
    #[error("--input {path}: {error}")]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The admin endpoint cannot listen.
    #[error("admin: cannot listen on {listen}: {error}")]
    Admin {
        /// The address.
        listen: String,
        /// Why.
        error: std::io::Error,
    },
}

/// What a run that went to its end met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Plugins that could not start, with the error.
    pub failed: Vec<(String, String)>,
    /// Input lines refused.
    pub input_errors: u64,
    /// Events still queued at the drain deadline.
    pub undelivered: usize,
}

impl RunReport {
    /// Whether a plugin, an input line or an undelivered event went wrong
    /// (exit code 1).
    pub fn had_errors(&self) -> bool {
        !self.failed.is_empty() || self.input_errors > 0 || self.undelivered > 0
    }
}

/// Runs the host until `shutdown` resolves (the binary passes
/// [`shutdown_signal`]: Ctrl-C or SIGTERM), or with `exit_when_idle` until
/// input is done and the host idle; drains, stops, and reports. The caller
/// picks the exit code.
pub async fn run(
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    run_with_cluster(opts, None, shutdown).await
}

/// [`run`], joining the cluster of `cluster` (SPEC §14, the host config's
/// `cluster:`) when given.
pub async fn run_with_cluster(
    opts: RunOptions,
    cluster: Option<crate::cluster::ClusterConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let settings = HostSettings {
        cluster,
        ..HostSettings::default()
    };
    run_with_settings(opts, settings, shutdown).await
}

/// What the host config sets for the host `plughost run` builds, beyond
/// [`RunOptions`].
#[derive(Debug, Clone, Default)]
pub struct HostSettings {
    /// The cluster to join (SPEC §14, `cluster:`), when given.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// The dead-letter store's bounds (`admin.dead_letters`,
    /// `admin.dead_letters_max_bytes`).
    pub dead_letters: crate::dead_letters::Limits,
}

impl HostSettings {
    /// The settings a host config gives.
    pub fn from_config(config: &crate::config::HostConfig) -> Self {
        HostSettings {
            cluster: config.cluster.clone(),
            dead_letters: config.dead_letter_limits(),
        }
    }
}

/// [`run`], with the host built as `settings` say.
pub async fn run_with_settings(
    opts: RunOptions,
    settings: HostSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let signal = shutdown;
    let mut builder = Host::builder().plugins_dirs(opts.plugins.clone());
    if let Some(reader) = opts.export.as_ref().and_then(|e| e.take_metric_reader()) {
        builder = builder.metric_export(reader);
    }
    if let Some(cluster) = settings.cluster {
        builder = builder.cluster(cluster);
    }
    let host = builder.build()?;
    host.dead_letters().set_limits(settings.dead_letters);
    for e in host.catalog().errors() {
        tracing::error!("{e}");
    }
    let tap = if opts.taps.is_empty() {
        None
    } else {
        let patterns: Vec<&str> = opts.taps.iter().map(String::as_str).collect();
        let stream = host.subscribe_all(&patterns).map_err(RunError::Tap)?;
        Some(tokio::spawn(print_tap(stream)))
    };
    let reader = match &opts.input {
        None => None,
        Some(InputSource::Stdin) => Some((
            "<stdin>".to_owned(),
            Box::new(std::io::BufReader::with_capacity(
                INPUT_BUFFER,
                std::io::stdin(),
            )) as Box<dyn std::io::BufRead + Send>,
        )),
        Some(InputSource::File(path)) => match std::fs::File::open(path) {
            Ok(f) => Some((
                path.display().to_string(),
                Box::new(std::io::BufReader::with_capacity(INPUT_BUFFER, f)) as _,
            )),
            Err(error) => {
                return Err(RunError::Input {
                    path: path.clone(),
                    error,
                });
            }
        },
    };

    // Bound before plugins start: a taken port is a configuration error.
    let admin = match &opts.admin {
        None => None,
        Some(settings) => match Bound::bind(settings).await {
            Ok(bound) => Some(bound),
            Err(error) => {
                return Err(RunError::Admin {
                    listen: settings.listen.to_string(),
                    error,
                });
            }
        },
    };

    let report = host.start().await;
    let mut run_report = RunReport {
        failed: report.failed.clone(),
        ..RunReport::default()
    };
    // Errors of folders the catalog refused are in `failed` too.
    tracing::info!(
        started = report.started.len(),
        failed = report.failed.len(),
        "{}",
        running_line(opts.exit_when_idle, opts.input.is_some())
    );

    let admin = admin.map(|bound| {
        if let Ok(addr) = bound.local_addr() {
            tracing::info!("admin endpoint listening on http://{addr}");
        }
        bound.serve(host.clone(), &report.failed)
    });

    let watch = if opts.watch {
        match host.watch() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("live reload is off: cannot watch the plugins directories: {e}");
                None
            }
        }
    } else {
        None
    };
    let reading = match reader {
        None => None,
        Some((name, reader)) => match input::spawn_reader(host.clone(), name, reader) {
            Ok(reading) => Some(reading),
            Err(e) => {
                tracing::error!("cannot start reading the input: {e}");
                run_report.input_errors += 1;
                None
            }
        },
    };
    let stats = wait(&host, reading, opts.exit_when_idle, signal).await;
    run_report.input_errors += stats.errors;

    // No reload may start a plugin while the others are being stopped; one
    // under way finishes first.
    if let Some(watch) = watch {
        watch.stop().await;
    }
    if let Some(admin) = &admin {
        admin.shutting_down();
    }
    let shutdown = host.shutdown(opts.drain_timeout).await;
    if let Some(admin) = admin {
        admin.stop().await;
    }
    run_report.undelivered = shutdown.undelivered.len();
    // Pending telemetry leaves before the process does (metrics were
    // flushed by `shutdown`); the exporters' blocking HTTP clients run on
    // their own threads, so this does not stall the runtime for long.
    if let Some(export) = &opts.export {
        let export = export.clone();
        let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
    }
    if let Some(tap) = tap {
        let _ = tap.await;
    }
    Ok(run_report)
}

/// The line logged once plugins started: what will stop this run. With
/// `exit_when_idle` that is never only Ctrl-C: the end of the input, or (with
/// no input to wait for) the shutdown future alone, which the line says.
fn running_line(exit_when_idle: bool, has_input: bool) -> &'static str {
    match (exit_when_idle, has_input) {
        (true, true) => "plughost running until the input is done and every queue empty",
        (true, false) => {
            "plughost running until stopped: exit-when-idle waits for an input to finish, \
             and there is none"
        }
        (false, _) => "plughost running; Ctrl-C to stop",
    }
}

/// Waits for the reason to stop: a signal, or (with `exit_when_idle`) the
/// input done and the host idle. Input is stopped on a signal.
async fn wait(
    host: &Host,
    input: Option<input::Reading>,
    exit_when_idle: bool,
    signal: impl Future<Output = ()>,
) -> InputStats {
    tokio::pin!(signal);
    let Some(mut input) = input else {
        (&mut signal).await;
        return InputStats::default();
    };
    let stats = tokio::select! {
        s = input.finished() => s,
        () = &mut signal => {
            input.stop();
            tracing::info!("signal received: input stopped, draining queues");
            return InputStats::default();
        }
    };
    tracing::info!(
        published = stats.published,
        errors = stats.errors,
        "input done"
    );
    if exit_when_idle {
        tokio::select! {
            () = host.wait_idle() => {}
            () = &mut signal => tracing::info!("signal received: draining queues"),
        }
    } else {
        (&mut signal).await;
        tracing::info!("signal received: draining queues");
    }
    stats
}

/// Resolves on Ctrl-C or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is
/// first polled, so a signal arriving in between is not lost (nor does it
/// kill the process with the default action). Call it inside the runtime.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let int = signal(SignalKind::interrupt()).ok();
    let term = signal(SignalKind::terminate()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(int) => {}
            () = wait(term) => {}
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Prints tap events as JSON lines, written in batches: one write for
/// every event already waiting, so a busy tap costs a system call per batch,
/// not per event, and a quiet one still prints each event at once.
async fn print_tap(mut stream: crate::EventStream) {
    let mut out = Vec::with_capacity(TAP_BATCH_BYTES);
    while let Some(event) = stream.recv().await {
        out.clear();
        crate::json::write_event(&event, &mut out);
        out.push(b'\n');
        while out.len() < TAP_BATCH_BYTES
            && let Some(event) = stream.try_next()
        {
            crate::json::write_event(&event, &mut out);
            out.push(b'\n');
        }
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(&out)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // stdout closed (e.g. `| head`): stop printing, keep running.
            return;
        }
    }
}
