//! The native runtime against a plugin type linked into the test binary:
//! the same `extern "C"` glue and host callbacks as a loaded library, without
//! building one. (`tests/suite/native.rs` builds real libraries.)

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use plughost_sdk::abi::PluginVTable;
use plughost_sdk::{ConfigChange, Host, Outcome as SdkOutcome, Plugin, TimerId};
use serde_json::{Value, json};

use super::NativePlugin;
use crate::test_host::Recorder;
use crate::{
    ErrorKind, Event, HookName, LogLevel, MetricKind, Outcome, PluginInfo, PluginInstance,
    PluginSpec, RuntimeKind, RuntimeLimits,
};

/// The plugin under test: what it does depends on the event's topic.
#[derive(Default)]
struct Probe {
    events: u64,
    applied: Option<Value>,
    /// What each timer this instance set is for.
    timers: HashMap<TimerId, &'static str>,
    ticks: u64,
}

impl Probe {
    fn set(&mut self, timer: TimerId, role: &'static str) {
        self.timers.insert(timer, role);
    }
}

impl Plugin for Probe {
    fn init(&mut self, host: &Host) -> Result<(), String> {
        if host.config()["fail_init"] == true {
            return Err("init refused".into());
        }
        if host.config()["tick_from_init"] == true {
            self.set(host.every(Duration::ZERO), "init");
        }
        let mut state = host.state();
        state["inits"] = json!(state["inits"].as_u64().unwrap_or(0) + 1);
        host.set_state(state)
    }

    fn on_event(&mut self, host: &Host, event: &plughost_sdk::Event) -> Result<SdkOutcome, String> {
        self.events += 1;
        match event.topic {
            "publish" => {
                let id = host.publish("out", json!({"events": self.events}))?;
                host.info(&format!("published {id}"));
                Ok(SdkOutcome::Ack)
            }
            "forbidden" => host
                .publish("plughost.x", json!(1))
                .map(|_| SdkOutcome::Ack),
            "forward" => Ok(SdkOutcome::forward("fwd", event.payload.clone())),
            "drop" => Ok(SdkOutcome::drop("unwanted")),
            "retry" => Ok(SdkOutcome::Retry(Some(7))),
            "error" => Err("nope".into()),
            "panic" => panic!("kaboom {}", self.events),
            "span" => host.span("work", &json!({"k": 1}), || {
                host.publish("out", json!("in span"))
                    .map(|_| SdkOutcome::Ack)
            }),
            "metric" => {
                host.counter("probe.events", 1.0)?;
                host.gauge("bad name", 1.0).map(|()| SdkOutcome::Ack)
            }
            "call" => {
                let n = host.call("double", &[json!(21)])?;
                host.publish("out", n).map(|_| SdkOutcome::Ack)
            }
            "events" => host
                .publish("out", json!(self.events))
                .map(|_| SdkOutcome::Ack),
            "applied" => host
                .publish("out", self.applied.clone().unwrap_or_default())
                .map(|_| SdkOutcome::Ack),
            "timers" => {
                self.set(host.after(Duration::ZERO), "once");
                self.set(host.every(Duration::from_micros(10)), "tick");
                let never = host.after(Duration::ZERO);
                self.set(never, "never");
                let cancels = (host.cancel_timer(never), host.cancel_timer(never));
                host.publish("cancels", json!([cancels.0, cancels.1]))
                    .map(|_| SdkOutcome::Ack)
            }
            "bad timers" => {
                self.set(host.after(Duration::ZERO), "error");
                self.set(host.after(Duration::from_millis(1)), "panic");
                Ok(SdkOutcome::Ack)
            }
            _ => Ok(SdkOutcome::Ack),
        }
    }

    fn on_config(&mut self, _: &Host, config: &Value) -> Result<ConfigChange, String> {
        if config["restart"] == true {
            return Ok(ConfigChange::Restart);
        }
        self.applied = Some(config.clone());
        Ok(ConfigChange::Applied)
    }

    fn on_timer(&mut self, host: &Host, timer: TimerId) -> Result<(), String> {
        match self.timers.get(&timer).copied() {
            Some("tick") => {
                self.ticks += 1;
                host.publish("fired", json!(["tick", self.ticks]))?;
                if self.ticks == 2 {
                    host.cancel_timer(timer);
                }
                Ok(())
            }
            Some("error") => Err("timer failed".into()),
            Some("panic") => panic!("timer panicked"),
            Some(role) => host.publish("fired", json!(role)).map(drop),
            None => Err(format!("not my timer: {timer:?}")),
        }
    }

    fn shutdown(&mut self, host: &Host) -> Result<(), String> {
        host.info("bye");
        // Must never fire: the instance is about to go.
        self.set(host.after(Duration::ZERO), "from shutdown");
        Ok(())
    }
}

/// The probe's hook table, as `export_plugin!` would export it.
pub(super) static PROBE: PluginVTable = plughost_sdk::export::vtable::<Probe>();

fn spec(config: Value, state: Value) -> PluginSpec {
    PluginSpec {
        info: Arc::new(PluginInfo {
            name: "probe".into(),
            version: "1.0.0".into(),
            runtime: RuntimeKind::Native,
        }),
        dir: PathBuf::from("probe"),
        entry: PathBuf::from("probe/libprobe.so"),
        config,
        state,
        limits: RuntimeLimits::default(),
    }
}

fn load(config: Value, state: Value) -> (NativePlugin, Arc<Recorder>) {
    let host = Arc::new(Recorder::default());
    let plugin =
        NativePlugin::with_table(&spec(config, state), host.clone(), &PROBE, None).expect("loads");
    (plugin, host)
}

fn event(topic: &str) -> Arc<Event> {
    Arc::new(Event::new(topic, json!({"x": 1}), "host"))
}

#[test]
fn a_publish_carries_the_event_being_handled() {
    let (mut p, host) = load(json!({}), Value::Null);
    p.init().unwrap();
    let e = event("publish");
    assert_eq!(p.on_event(&e).unwrap(), Outcome::Ack);
    let published = host.published.lock().unwrap();
    assert_eq!(
        published[0],
        ("out".into(), json!({"events": 1}), Some(e.id.clone()))
    );
    let logs = host.logs.lock().unwrap();
    let (level, message, file, line) = &logs[0];
    assert_eq!(
        (*level, message.as_str()),
        (LogLevel::Info, "published id-1")
    );
    assert!(file.as_deref().unwrap().ends_with("tests.rs"), "{file:?}");
    assert!(line.is_some());
}

#[test]
fn outcomes_cross_the_boundary() {
    let (mut p, _) = load(json!({}), Value::Null);
    assert_eq!(
        p.on_event(&event("forward")).unwrap(),
        Outcome::Forward {
            topic: "fwd".into(),
            payload: json!({"x": 1}).into()
        }
    );
    assert_eq!(
        p.on_event(&event("drop")).unwrap(),
        Outcome::Drop {
            reason: "unwanted".into()
        }
    );
    assert_eq!(
        p.on_event(&event("retry")).unwrap(),
        Outcome::Retry { delay_ms: Some(7) }
    );
    assert_eq!(p.on_event(&event("other")).unwrap(), Outcome::Ack);
}

#[test]
fn a_panic_is_the_events_error_and_the_plugin_carries_on() {
    let (mut p, host) = load(json!({}), Value::Null);
    let e = p.on_event(&event("panic")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Runtime);
    assert_eq!(e.hook, Some(HookName::OnEvent));
    assert_eq!(e.message, "panicked: kaboom 1");
    assert!(e.file.as_deref().unwrap().ends_with("tests.rs"), "{e}");
    assert!(e.line.is_some());
    assert_eq!(
        e.traceback.as_deref(),
        Some("in native library probe/libprobe.so")
    );

    p.on_event(&event("events")).unwrap();
    assert_eq!(host.published.lock().unwrap()[0].1, json!(2));
}

#[test]
fn errors_name_the_library_and_the_hook() {
    let (mut p, _) = load(json!({}), Value::Null);
    let e = p.on_event(&event("error")).unwrap_err();
    assert_eq!(e.to_string(), "probe/libprobe.so: nope (in on_event)");
    let e = p.on_event(&event("forbidden")).unwrap_err();
    assert_eq!(e.message, "`plughost.x` is the host's");

    let (mut p, _) = load(json!({"fail_init": true}), Value::Null);
    let e = p.init().unwrap_err();
    assert_eq!(e.to_string(), "probe/libprobe.so: init refused (in init)");
}

#[test]
fn state_lives_on_the_host_side_and_is_carried_over() {
    let (mut p, _) = load(json!({}), Value::Null);
    p.init().unwrap();
    assert_eq!(p.state().unwrap(), json!({"inits": 1}));
    let (mut p, _) = load(json!({}), json!({"inits": 5, "kept": [1]}));
    p.init().unwrap();
    assert_eq!(p.state().unwrap(), json!({"inits": 6, "kept": [1]}));
}

#[test]
fn there_is_no_on_promote_hook_and_the_state_stays_as_it_is() {
    let (mut p, _) = load(json!({}), json!({"inits": 5}));
    p.init().unwrap();
    assert_eq!(p.on_promote(&json!({"inits": 40})), Ok(false));
    assert_eq!(p.state().unwrap(), json!({"inits": 6}));
}

#[test]
fn on_config_applied_keeps_the_instance() {
    let (mut p, host) = load(json!({"a": 1}), Value::Null);
    p.init().unwrap();
    p.on_event(&event("x")).unwrap();
    assert!(p.has_on_config());
    p.on_config(&json!({"a": 2})).unwrap();
    p.on_event(&event("applied")).unwrap();
    p.on_event(&event("events")).unwrap();
    let published = host.published.lock().unwrap();
    assert_eq!(published[0].1, json!({"a": 2}));
    assert_eq!(published[1].1, json!(3), "the same instance counts on");
}

#[test]
fn on_config_restart_makes_a_fresh_instance_with_the_state() {
    let (mut p, host) = load(json!({}), Value::Null);
    p.init().unwrap();
    p.on_event(&event("x")).unwrap();
    p.on_config(&json!({"restart": true})).unwrap();
    assert_eq!(p.state().unwrap(), json!({"inits": 2}));
    p.on_event(&event("events")).unwrap();
    assert_eq!(
        host.published.lock().unwrap()[0].1,
        json!(1),
        "a fresh instance"
    );
    assert!(
        host.logs.lock().unwrap().iter().any(|l| l.1 == "bye"),
        "the old instance was shut down"
    );
}

#[test]
fn a_failed_restart_keeps_the_old_instance() {
    let (mut p, host) = load(json!({}), Value::Null);
    p.init().unwrap();
    p.on_event(&event("x")).unwrap();
    let e = p
        .on_config(&json!({"restart": true, "fail_init": true}))
        .unwrap_err();
    assert_eq!(e.hook, Some(HookName::Init));
    assert_eq!(p.state().unwrap(), json!({"inits": 1}));
    p.on_event(&event("events")).unwrap();
    assert_eq!(
        host.published.lock().unwrap()[0].1,
        json!(2),
        "the old instance"
    );
}

#[test]
fn spans_metrics_and_functions() {
    let (mut p, host) = load(json!({}), Value::Null);
    p.on_event(&event("span")).unwrap();
    assert_eq!(host.open_spans.load(Ordering::SeqCst), 0);
    assert_eq!(host.published.lock().unwrap()[0].1, json!("in span"));

    let e = p.on_event(&event("metric")).unwrap_err();
    assert_eq!(e.message, "metric name `bad name`");
    assert_eq!(
        host.metrics.lock().unwrap()[0],
        (MetricKind::Counter, "probe.events".into(), 1.0)
    );

    p.on_event(&event("call")).unwrap();
    assert_eq!(host.published.lock().unwrap()[1].1, json!(42));
}

/// Runs every timer due over `rounds` steps of 5 ms past now, and returns
/// each `on_timer` result.
fn run_timers(p: &mut NativePlugin, rounds: u32) -> Vec<Result<(), crate::ScriptError>> {
    let mut results = Vec::new();
    let start = Instant::now();
    for round in 1..=rounds {
        let now = start + Duration::from_millis(5) * round;
        while let Some(r) = p.run_due_timer(now) {
            results.push(r);
        }
    }
    results
}

fn fired(host: &Recorder) -> Vec<Value> {
    let published = host.published.lock().unwrap();
    published
        .iter()
        .filter(|(topic, ..)| topic == "fired")
        .map(|(_, payload, _)| payload.clone())
        .collect()
}

#[test]
fn no_timers_until_the_plugin_sets_one() {
    let (mut p, _) = load(json!({}), Value::Null);
    p.init().unwrap();
    assert_eq!(p.next_timer(), None);
    assert!(p.run_due_timer(Instant::now()).is_none());
}

#[test]
fn timers_fire_repeat_and_cancel_outside_any_event() {
    let (mut p, host) = load(json!({}), Value::Null);
    p.init().unwrap();
    p.on_event(&event("timers")).unwrap();
    assert_eq!(
        host.published.lock().unwrap()[0].1,
        json!([true, false]),
        "cancel says whether the timer was live"
    );
    assert!(p.next_timer().is_some());
    for r in run_timers(&mut p, 10) {
        r.unwrap();
    }
    assert_eq!(
        fired(&host),
        [json!("once"), json!(["tick", 1]), json!(["tick", 2])]
    );
    assert_eq!(p.next_timer(), None, "the tick cancelled itself");
    let published = host.published.lock().unwrap();
    assert!(
        published.iter().skip(1).all(|(.., cause)| cause.is_none()),
        "no correlation id outside an event: {published:?}"
    );
}

#[test]
fn a_timers_error_or_panic_is_a_timer_error_and_the_plugin_carries_on() {
    let (mut p, host) = load(json!({}), Value::Null);
    p.on_event(&event("bad timers")).unwrap();
    let errors: Vec<crate::ScriptError> = run_timers(&mut p, 2)
        .into_iter()
        .map(Result::unwrap_err)
        .collect();
    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors[0].to_string(),
        "probe/libprobe.so: timer failed (in timer)"
    );
    let panicked = &errors[1];
    assert_eq!(panicked.hook, Some(HookName::Timer));
    assert_eq!(panicked.message, "panicked: timer panicked");
    assert!(
        panicked.file.as_deref().unwrap().ends_with("tests.rs"),
        "{panicked}"
    );
    assert!(panicked.line.is_some() && panicked.column.is_some());
    p.on_event(&event("events")).unwrap();
    assert_eq!(host.published.lock().unwrap()[0].1, json!(2));
}

#[test]
fn clear_timers_stops_them_all() {
    let (mut p, host) = load(json!({}), Value::Null);
    p.on_event(&event("timers")).unwrap();
    p.clear_timers();
    assert_eq!(p.next_timer(), None);
    assert!(run_timers(&mut p, 3).is_empty());
    assert!(fired(&host).is_empty());
}

#[test]
fn a_restart_stops_the_old_timers_only_once_the_new_init_succeeded() {
    let (mut p, host) = load(json!({}), Value::Null);
    p.init().unwrap();
    p.on_event(&event("timers")).unwrap();

    // A restart whose `init` fails: the old instance's timers run on.
    p.on_config(&json!({"restart": true, "fail_init": true, "tick_from_init": true}))
        .unwrap_err();
    for r in run_timers(&mut p, 10) {
        r.unwrap();
    }
    assert_eq!(
        fired(&host),
        [json!("once"), json!(["tick", 1]), json!(["tick", 2])]
    );

    // One that succeeds: only the fresh instance's timers fire on it, none
    // of the old one's (its pending `every` nor the one its `shutdown` set).
    p.on_event(&event("timers")).unwrap();
    p.on_config(&json!({"restart": true, "tick_from_init": true}))
        .unwrap();
    host.published.lock().unwrap().clear();
    let results = run_timers(&mut p, 3);
    assert_eq!(results.len(), 3, "{results:?}");
    for r in results {
        r.unwrap();
    }
    assert_eq!(fired(&host), vec![json!("init"); 3]);
}

#[test]
fn timer_ids_are_never_zero_and_a_huge_delay_never_comes() {
    let (mut p, _) = load(json!({}), Value::Null);
    let host = super::callbacks::vtable(p.ctx);
    // SAFETY: the host's own callbacks with the plugin's live context.
    let (a, b) = unsafe {
        (
            (host.timer_add)(host.ctx, u64::MAX, 1),
            (host.timer_add)(host.ctx, 0, 0),
        )
    };
    assert!(a != 0 && b != 0 && a != b);
    assert_eq!(run_timers(&mut p, 1).len(), 1, "only the 0 ms one");
    // SAFETY: as above.
    let cancelled = unsafe {
        (
            (host.timer_cancel)(host.ctx, a),
            (host.timer_cancel)(host.ctx, b),
            (host.timer_cancel)(host.ctx, 0),
        )
    };
    assert_eq!(cancelled, (1, 0, 0));
}
