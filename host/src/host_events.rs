//! The host's own events (`plughost.*`, SPEC §3): every topic and its
//! payload, defined once, beside the rule that plugins may not publish there.
//!
//! The host announces what happens to plugins (started, stopped, reloaded,
//! suspended, …) and dead letters on these topics. Each is a variant of
//! `HostEvent`, so a payload's keys are written in one place and a topic
//! cannot be misspelt; the bus announces one.
//! Scripts, the embedding application and `--input` may subscribe to them;
//! only the host publishes there ([`is_reserved`]).

use serde_json::{Value, json};

/// Topics under this prefix are the host's own.
pub const HOST_TOPIC_PREFIX: &str = "plughost.";

/// The pattern of every plugin lifecycle event (`plughost.plugin.*`).
pub const PLUGIN_EVENTS: &str = "plughost.plugin.*";

/// The topic announcing the cluster's connection to NATS (SPEC §14).
pub const CLUSTER_CONNECTED: &str = "plughost.cluster.connected";

/// The topic announcing the cluster lost its connection to NATS.
pub const CLUSTER_DISCONNECTED: &str = "plughost.cluster.disconnected";

/// The topic dead letters are published on.
pub const DEAD_LETTER_TOPIC: &str = "plughost.dead_letter";

/// Whether `topic` is the host's own: plugins, the application and input
/// lines may not publish there.
pub fn is_reserved(topic: &str) -> bool {
    topic.starts_with(HOST_TOPIC_PREFIX)
}

/// Why a plugin was stopped for good or could not start
/// (`plughost.plugin.failed`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailReason {
    /// It could not be loaded or its `init` failed.
    Start,
    /// It crashed more than `supervision.max_restarts` times within
    /// `supervision.window_s`.
    Restarts,
}

impl FailReason {
    fn as_str(self) -> &'static str {
        match self {
            FailReason::Start => "start",
            FailReason::Restarts => "restarts",
        }
    }
}

/// One host event, with its payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HostEvent<'a> {
    /// An event a plugin failed to handle (SPEC §4), on [`DEAD_LETTER_TOPIC`].
    DeadLetter {
        /// The plugin.
        plugin: &'a str,
        /// The original event.
        event: &'a plughost_bindings::Event,
        /// Deliveries made.
        attempts: u32,
        /// The error or reason.
        error: &'a str,
    },
    /// A plugin was started (its `init` ran).
    Started {
        /// The plugin.
        plugin: &'a str,
    },
    /// A plugin was stopped (its `shutdown` ran).
    Stopped {
        /// The plugin.
        plugin: &'a str,
    },
    /// A new version took over, or the new config was taken.
    Reloaded {
        /// The plugin.
        plugin: &'a str,
        /// The version now running.
        version: &'a str,
        /// Whether `on_config` took a config change without a reload.
        config_only: bool,
    },
    /// A change was refused; the running version goes on.
    ReloadFailed {
        /// The plugin.
        plugin: &'a str,
        /// The error's text.
        error: &'a str,
    },
    /// A plugin could not start, or was stopped for good.
    Failed {
        /// The plugin (or its folder's name when it has none).
        plugin: &'a str,
        /// The error.
        error: &'a str,
        /// Why.
        reason: FailReason,
    },
    /// A plugin was suspended after errors in a row (SPEC §12).
    Suspended {
        /// The plugin.
        plugin: &'a str,
        /// The last error.
        error: &'a str,
        /// Errors in a row.
        errors: u32,
    },
    /// A suspended plugin takes events again.
    Resumed {
        /// The plugin.
        plugin: &'a str,
        /// What resumed it: `trial`, `reload` or `enable`.
        by: &'a str,
    },
    /// A plugin crashed and was started again in a fresh interpreter.
    Restarted {
        /// The plugin.
        plugin: &'a str,
        /// What the crash was.
        error: &'a str,
        /// Crashes within the window, this one included.
        restarts: u32,
    },
    /// A new version runs beside the running one (SPEC §13), its `init` done.
    RolloutStarted {
        /// The plugin.
        plugin: &'a str,
        /// `shadow` or `gradual`.
        strategy: &'a str,
        /// The running version.
        from: &'a str,
        /// The candidate's version.
        to: &'a str,
    },
    /// A shadow candidate did otherwise than the running version for one event.
    ShadowDiff {
        /// The plugin.
        plugin: &'a str,
        /// The event's id.
        event: &'a str,
        /// What the running version published and returned.
        live: &'a Value,
        /// What the candidate published and returned, or its error.
        candidate: &'a Value,
    },
    /// The candidate became the running version.
    Promoted {
        /// The plugin.
        plugin: &'a str,
        /// The version running now.
        version: &'a str,
        /// `operator` or `promote_after`.
        by: &'a str,
    },
    /// The candidate was discarded; the running version goes on.
    RolledBack {
        /// The plugin.
        plugin: &'a str,
        /// The discarded version.
        version: &'a str,
        /// `operator`, `candidate_errors`, `replaced` or the candidate's failure.
        reason: &'a str,
    },
    /// The cluster's NATS connection is up (at start, or again).
    ClusterConnected {
        /// This host's cluster name.
        name: &'a str,
        /// This process's instance id.
        instance: &'a str,
    },
    /// The cluster's NATS connection was lost; the client reconnects.
    ClusterDisconnected {
        /// This host's cluster name.
        name: &'a str,
        /// This process's instance id.
        instance: &'a str,
    },
}

impl HostEvent<'_> {
    /// The event's topic.
    pub(crate) fn topic(&self) -> &'static str {
        match self {
            HostEvent::DeadLetter { .. } => DEAD_LETTER_TOPIC,
            HostEvent::Started { .. } => "plughost.plugin.started",
            HostEvent::Stopped { .. } => "plughost.plugin.stopped",
            HostEvent::Reloaded { .. } => "plughost.plugin.reloaded",
            HostEvent::ReloadFailed { .. } => "plughost.plugin.reload_failed",
            HostEvent::Failed { .. } => "plughost.plugin.failed",
            HostEvent::Suspended { .. } => "plughost.plugin.suspended",
            HostEvent::Resumed { .. } => "plughost.plugin.resumed",
            HostEvent::Restarted { .. } => "plughost.plugin.restarted",
            HostEvent::RolloutStarted { .. } => "plughost.plugin.rollout_started",
            HostEvent::ShadowDiff { .. } => "plughost.plugin.shadow_diff",
            HostEvent::Promoted { .. } => "plughost.plugin.promoted",
            HostEvent::RolledBack { .. } => "plughost.plugin.rolled_back",
            HostEvent::ClusterConnected { .. } => CLUSTER_CONNECTED,
            HostEvent::ClusterDisconnected { .. } => CLUSTER_DISCONNECTED,
        }
    }

    /// The event's payload.
    pub(crate) fn payload(&self) -> Value {
        match *self {
            HostEvent::DeadLetter {
                plugin,
                event,
                attempts,
                error,
            } => json!({
                "event": event.to_value(),
                "plugin": plugin,
                "attempts": attempts,
                "error": error,
            }),
            HostEvent::Started { plugin } | HostEvent::Stopped { plugin } => {
                json!({"plugin": plugin})
            }
            HostEvent::Reloaded {
                plugin,
                version,
                config_only,
            } => json!({"plugin": plugin, "version": version, "config_only": config_only}),
            HostEvent::ReloadFailed { plugin, error } => {
                let first = error.lines().next().unwrap_or_default();
                json!({"plugin": plugin, "error": first, "detail": error})
            }
            HostEvent::Failed {
                plugin,
                error,
                reason,
            } => json!({"plugin": plugin, "error": error, "reason": reason.as_str()}),
            HostEvent::Suspended {
                plugin,
                error,
                errors,
            } => json!({"plugin": plugin, "error": error, "errors": errors}),
            HostEvent::Resumed { plugin, by } => json!({"plugin": plugin, "by": by}),
            HostEvent::Restarted {
                plugin,
                error,
                restarts,
            } => json!({"plugin": plugin, "error": error, "restarts": restarts}),
            HostEvent::RolloutStarted {
                plugin,
                strategy,
                from,
                to,
            } => json!({"plugin": plugin, "strategy": strategy, "from": from, "to": to}),
            HostEvent::ShadowDiff {
                plugin,
                event,
                live,
                candidate,
            } => json!({"plugin": plugin, "event": event, "live": live, "candidate": candidate}),
            HostEvent::Promoted {
                plugin,
                version,
                by,
            } => json!({"plugin": plugin, "version": version, "by": by}),
            HostEvent::RolledBack {
                plugin,
                version,
                reason,
            } => json!({"plugin": plugin, "version": version, "reason": reason}),
            HostEvent::ClusterConnected { name, instance }
            | HostEvent::ClusterDisconnected { name, instance } => {
                json!({"name": name, "instance": instance})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_is_reserved_and_under_plugin() {
        let events = [
            HostEvent::Started { plugin: "a" },
            HostEvent::Stopped { plugin: "a" },
            HostEvent::Reloaded {
                plugin: "a",
                version: "1.0.0",
                config_only: false,
            },
            HostEvent::ReloadFailed {
                plugin: "a",
                error: "x",
            },
            HostEvent::Failed {
                plugin: "a",
                error: "x",
                reason: FailReason::Start,
            },
            HostEvent::Suspended {
                plugin: "a",
                error: "x",
                errors: 3,
            },
            HostEvent::Resumed {
                plugin: "a",
                by: "trial",
            },
            HostEvent::Restarted {
                plugin: "a",
                error: "x",
                restarts: 1,
            },
            HostEvent::RolloutStarted {
                plugin: "a",
                strategy: "shadow",
                from: "1.0.0",
                to: "1.1.0",
            },
            HostEvent::ShadowDiff {
                plugin: "a",
                event: "01E",
                live: &Value::Null,
                candidate: &Value::Null,
            },
            HostEvent::Promoted {
                plugin: "a",
                version: "1.1.0",
                by: "operator",
            },
            HostEvent::RolledBack {
                plugin: "a",
                version: "1.1.0",
                reason: "operator",
            },
        ];
        for e in &events {
            assert!(is_reserved(e.topic()), "{}", e.topic());
            assert!(e.topic().starts_with("plughost.plugin."));
            assert_eq!(e.payload()["plugin"], "a");
        }
        assert!(is_reserved(DEAD_LETTER_TOPIC));
        let original = plughost_bindings::Event::new("in", serde_json::json!({"n": 1}), "host");
        let letter = HostEvent::DeadLetter {
            plugin: "a",
            event: &original,
            attempts: 3,
            error: "boom",
        };
        assert_eq!(letter.topic(), DEAD_LETTER_TOPIC);
        assert_eq!(letter.payload()["event"]["payload"]["n"], 1);
        assert_eq!(letter.payload()["attempts"], 3);
        assert!(!is_reserved("plughostx.a"));
    }

    #[test]
    fn cluster_events_name_the_host_and_its_instance() {
        for (e, topic) in [
            (
                HostEvent::ClusterConnected {
                    name: "edge-1",
                    instance: "01I",
                },
                "plughost.cluster.connected",
            ),
            (
                HostEvent::ClusterDisconnected {
                    name: "edge-1",
                    instance: "01I",
                },
                "plughost.cluster.disconnected",
            ),
        ] {
            assert_eq!(e.topic(), topic);
            assert!(is_reserved(e.topic()));
            assert_eq!(e.payload(), json!({"name": "edge-1", "instance": "01I"}));
        }
    }

    #[test]
    fn a_failed_reload_carries_its_first_line_and_the_detail() {
        let p = HostEvent::ReloadFailed {
            plugin: "a",
            error: "main.lua:3: boom\nstack traceback:",
        }
        .payload();
        assert_eq!(p["error"], "main.lua:3: boom");
        assert_eq!(p["detail"], "main.lua:3: boom\nstack traceback:");
    }

    #[test]
    fn suspension_names_its_last_error_and_count() {
        let p = HostEvent::Suspended {
            plugin: "a",
            error: "main.lua:1: no",
            errors: 10,
        }
        .payload();
        assert_eq!(
            p,
            json!({"plugin": "a", "error": "main.lua:1: no", "errors": 10})
        );
    }
}
