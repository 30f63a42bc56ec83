//! The plugin actor: the thread that owns one plugin's interpreter.
//!
//! It loads the plugin, runs `init`, then takes one thing at a time: a due
//! retry, a due timer, a control message or the next queued event. Because
//! only this thread touches the interpreter, hooks never run concurrently
//! and events are handled in queue order. What the plugin returned is turned
//! into an action by [`crate::delivery::decide`] and carried out here.
//!
//! The thread is also where its plugin is supervised (SPEC §12): `run`
//! follows errors in a row (suspension, trials) and `crash` restarts the
//! plugin in a fresh interpreter after a crash. A call that ignores its time
//! limit cannot be stopped from inside; the supervisor's watch abandons it
//! through [`InHook`] and starts a new thread.
//!
//! - `run`: one interpreter's life, the loop, swaps and supervision of errors.
//! - `crash`: restarts after crashes, and giving up.
//! - `worker`: one delivery handled and its outcome carried out.
//! - `telemetry`: per-topic instruments and the delivery span.
//! - `in_hook`: the hook in progress, shared with the watch.
//! - `latency`: the histogram of hook processing times in [`Stats`].

mod crash;
mod in_hook;
pub(crate) mod latency;
mod run;
mod telemetry;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use plughost_bindings::ScriptError;
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::field::Empty;

pub(crate) use self::crash::stop_for_good;
pub(crate) use self::in_hook::{InHook, this_thread_abandoned};
use crate::bus::{Bus, Delivery, Queue};
use crate::catalog::PluginDef;
use crate::rollout::shadow::ShadowSlot;
use crate::services::Services;
use crate::supervisor::policy;

/// A lifecycle span (`plugin.init`, `plugin.reload`, `plugin.shutdown`) of `def`.
pub(super) fn lifecycle_span(name: &'static str, def: &PluginDef) -> tracing::Span {
    tracing::info_span!(
        target: "plughost::lifecycle",
        "plugin.lifecycle",
        otel.name = name,
        plugin.name = %def.manifest.name,
        plugin.version = %def.manifest.version,
        plugin.runtime = %def.runtime,
        error = Empty,
        otel.status_code = Empty,
    )
}

pub(super) fn record_error(span: &tracing::Span, error: &dyn std::fmt::Display) {
    if !span.is_disabled() {
        span.record("error", tracing::field::display(error));
        span.record("otel.status_code", "ERROR");
    }
}

/// Where a plugin stands with its supervisor (SPEC §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It takes events.
    Running,
    /// It takes no events after errors in a row; they wait in its queue.
    Suspended,
    /// It crashed too often and was stopped for good.
    Failed,
}

impl Health {
    /// The name `GET /plugins/{name}` answers: `running`, `suspended`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Running => "running",
            Health::Suspended => "suspended",
            Health::Failed => "failed",
        }
    }
}

/// Counts of what happened to a plugin's deliveries, kept across its
/// reloads, restarts and disable/enable for the host's life.
#[derive(Debug, Default)]
pub struct Stats {
    /// Acknowledged.
    pub acked: AtomicU64,
    /// Acknowledged with `outcome.forward`.
    pub forwarded: AtomicU64,
    /// Scheduled for redelivery.
    pub retried: AtomicU64,
    /// Dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Timer callbacks that raised an error.
    pub timer_errors: AtomicU64,
    /// Events that ended in an error (SPEC §12: raised, a value that is
    /// not an outcome, a refused forward).
    pub errors: AtomicU64,
    /// Errors in a row now.
    pub consecutive_errors: AtomicU64,
    /// Crash restarts.
    pub restarts: AtomicU64,
    /// [`Health`] as a number (see [`Stats::health`]).
    health: AtomicU8,
    /// The last event dead-lettered: its id and why (a script error's
    /// `file:line:col: message`, or a drop's reason).
    pub last_dead_letter: std::sync::Mutex<Option<(String, String)>>,
    /// The last error a timer callback raised.
    pub last_timer_error: std::sync::Mutex<Option<String>>,
    /// The last crash.
    pub last_crash: Mutex<Option<String>>,
    /// Recent crashes, for the restart intensity (shared by every thread
    /// the plugin runs on).
    crashes: Mutex<policy::Restarts>,
    /// How long each `on_event` call took (the admin endpoint's p50/p99).
    pub(crate) latency: latency::Histogram,
}

impl Stats {
    pub(crate) fn dead_lettered(&self, event: &str, error: &str) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        *self
            .last_dead_letter
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((event.to_owned(), error.to_owned()));
    }

    /// Where the plugin stands with its supervisor.
    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            1 => Health::Suspended,
            2 => Health::Failed,
            _ => Health::Running,
        }
    }

    pub(crate) fn set_health(&self, health: Health) {
        self.health.store(health as u8, Ordering::Relaxed);
    }

    /// Records a crash at `now` and says what to do about it.
    pub(crate) fn crashed(
        &self,
        now: std::time::Instant,
        config: &crate::manifest::Supervision,
    ) -> policy::Verdict {
        self.crashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .crashed(now, config)
    }

    /// Records a crash: its text, and one more restart unless it gives up.
    pub(crate) fn record_crash(&self, error: &str, restarting: bool) {
        *self.last_crash.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_owned());
        if restarting {
            self.restarts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a plugin thread left behind when it stopped.
#[derive(Debug, Default)]
pub struct Exit {
    /// Events it did not handle: still queued, or waiting for a retry.
    pub undelivered: Vec<Delivery>,
    /// The error `shutdown` raised, if any.
    pub shutdown_error: Option<ScriptError>,
    /// Its `state` when it stopped, to start from next time.
    pub state: Option<Value>,
    /// It was stopped for good after too many crashes (already announced).
    pub failed: bool,
}

/// A started plugin thread.
#[derive(Debug)]
pub struct Actor {
    /// The thread.
    pub thread: JoinHandle<()>,
    /// Resolves once the plugin is loaded and `init` has run.
    pub ready: oneshot::Receiver<Result<(), ScriptError>>,
    /// Resolves when the thread has stopped.
    pub exited: oneshot::Receiver<Exit>,
    /// The hook it is in, for the supervisor's watch.
    pub(crate) in_hook: Arc<InHook>,
}

/// How a thread starts its plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// The plugin's first start (or a start after a disable): a failed
    /// load or `init` is a failed start.
    First,
    /// A restart after a call was abandoned: after this wait, and a failed
    /// load or `init` is one more crash.
    Restart(Duration),
}

/// What a plugin thread works with.
pub(super) struct Ctx<'a> {
    pub(super) bus: &'a Arc<Bus>,
    pub(super) services: &'a Arc<Services>,
    pub(super) queue: &'a Queue,
    pub(super) stats: &'a Stats,
    pub(super) in_hook: &'a InHook,
    /// Where handled events go to a shadow candidate, while one runs.
    pub(super) shadow: &'a ShadowSlot,
    /// Whether this thread runs a gradual rollout's candidate now: after
    /// too many crashes it ends without taking the plugin off the bus.
    pub(super) candidate: &'a AtomicBool,
}

/// What a plugin thread is wired to: the host's bus and services, and the
/// plugin's own queue, counts, shadow slot and role.
pub(crate) struct Wiring {
    /// The bus.
    pub(crate) bus: Arc<Bus>,
    /// The host services.
    pub(crate) services: Arc<Services>,
    /// The queue it consumes.
    pub(crate) queue: Arc<Queue>,
    /// Its counts.
    pub(crate) stats: Arc<Stats>,
    /// Where it offers what it handles while a shadow candidate runs.
    pub(crate) shadow: Arc<ShadowSlot>,
    /// Whether it runs a gradual rollout's candidate (cleared at promotion).
    pub(crate) candidate: Arc<AtomicBool>,
}

/// Starts the thread of plugin `def` wired as `w`, with `state` to start
/// from (what it left when it last stopped).
pub(crate) fn spawn(
    def: &PluginDef,
    w: Wiring,
    state: Option<Value>,
    start: Start,
) -> std::io::Result<Actor> {
    let Wiring {
        bus,
        services,
        queue,
        stats,
        shadow,
        candidate,
    } = w;
    let (ready_tx, ready) = oneshot::channel();
    let (exit_tx, exited) = oneshot::channel();
    let def = def.clone();
    let in_hook = Arc::new(InHook::default());
    let hook = in_hook.clone();
    let script = def.runtime != plughost_bindings::RuntimeKind::Native;
    let thread = std::thread::Builder::new()
        .name(if candidate.load(Ordering::Relaxed) {
            format!("candidate:{}", def.manifest.name)
        } else {
            format!("plugin:{}", def.manifest.name)
        })
        .spawn(move || {
            // A script plugin's interpreter is built on the system
            // allocator: what loading frees is reused by the next plugin's
            // load instead of staying resident on this thread; its first
            // event or timer switches back.
            plughost_bindings::system_alloc::use_system_allocator(script);
            in_hook::set_current(hook.clone());
            let ctx = Ctx {
                bus: &bus,
                services: &services,
                queue: &queue,
                stats: &stats,
                in_hook: &hook,
                shadow: &shadow,
                candidate: &candidate,
            };
            let exit = crash::supervise(def, &ctx, state.unwrap_or(Value::Null), ready_tx, start);
            let _ = exit_tx.send(exit);
        })?;
    Ok(Actor {
        thread,
        ready,
        exited,
        in_hook,
    })
}

/// How one run of the plugin (one interpreter) ended.
pub(super) enum End {
    /// Asked to stop, or its first `init` failed.
    Exit(Exit),
    /// A crash: a hook said the plugin cannot go on, or a restarted
    /// interpreter could not load or `init`.
    Failed(ScriptError),
    /// A call ran past its limit and was abandoned by the supervisor's
    /// watch: this thread ends at once, another runs the plugin.
    Abandoned,
}
