//! SPEC §9: the embedding API, used as an application would, with plugins
//! of every runtime.

use std::time::Duration;

use futures::StreamExt;
use plughost::Host;
use serde_json::json;

use crate::behaviours;
use crate::support::{Fixture, Runtime, Src, tokio_rt};

const ECHO: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("out", { shout = host.shout(e.payload.text), n = e.payload.n })
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("out", #{ shout: host::shout(e.payload.text), n: e.payload.n });
}
"#,
    native: Some("shout"),
};

fn build_start_publish_subscribe_call_and_shut_down(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "echo", "subscriptions: [in]\n", ECHO.get(rt));
    tokio_rt().block_on(async {
        let host = Host::builder()
            .plugins_dir(fx.path())
            .function("shout", |args| {
                let text = args
                    .first()
                    .and_then(|a| a.as_str())
                    .ok_or("shout(text) needs a string")?;
                Ok(json!(text.to_uppercase()))
            })
            .build()
            .unwrap();
        let mut out = host.subscribe("out").unwrap();
        let report = host.start().await;
        assert_eq!(report.started, vec!["echo".to_owned()]);
        assert!(report.failed.is_empty());

        let id = host
            .publish("in", json!({"text": "hi", "n": 1}))
            .await
            .unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), out.next())
            .await
            .expect("an output within 5 s")
            .expect("stream open");
        assert_eq!(event.payload, json!({"shout": "HI", "n": 1}));
        assert_eq!(event.source, "echo");
        assert_eq!(event.correlation_id.as_deref(), Some(id.as_str()));

        // Shutdown drains every queue first: all 200 are handled.
        for n in 0..200 {
            host.publish("in", json!({"text": "x", "n": n}))
                .await
                .unwrap();
        }
        let report = host.shutdown(Duration::from_secs(10)).await;
        assert!(
            report.drained && report.undelivered.is_empty(),
            "{report:?}"
        );
        let mut seen = 0;
        while let Some(e) = out.next().await {
            assert_eq!(e.payload["n"], json!(seen));
            seen += 1;
        }
        assert_eq!(
            seen, 200,
            "the stream ends after shutdown, with every event"
        );
    });
}

const FAILING_CALL: Src = Src {
    lua: r#"
function on_event(e)
  local ok, err = pcall(host.shout, 42)
  bus.publish("out", { ok = ok, err = tostring(err) })
end
"#,
    rhai: r#"
fn on_event(e) {
  let ok = true;
  let error = ();
  try {
    host::shout(42);
  } catch (err) {
    ok = false;
    error = err;
  }
  bus::publish("out", #{ ok: ok, err: `${error}` });
}
"#,
    native: Some("failing_call"),
};

fn a_registered_function_error_is_a_script_error(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", FAILING_CALL.get(rt));
    tokio_rt().block_on(async {
        let host = Host::builder()
            .plugins_dir(fx.path())
            .function("shout", |args| {
                args.first()
                    .and_then(|a| a.as_str())
                    .map(|t| json!(t.to_uppercase()))
                    .ok_or_else(|| "shout(text) needs a string".to_owned())
            })
            .build()
            .unwrap();
        let mut out = host.subscribe("out").unwrap();
        host.start().await;
        host.publish("in", json!({})).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), out.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event.payload["ok"], json!(false));
        let err = event.payload["err"].as_str().unwrap();
        let message = || {
            format!(
                "{}: shout(text) needs a string",
                rt.binding("host", "shout")
            )
        };
        match rt {
            Runtime::Lua => assert!(err.contains(&format!("main.lua:3: {}", message())), "{err}"),
            // A caught Rhai error is the bare message.
            Runtime::Rhai => assert_eq!(err, message()),
            // The `Err` of `host.call`: the function's message, no position.
            Runtime::Native => assert!(err.ends_with("shout(text) needs a string"), "{err}"),
        }
        host.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn bad_input_to_the_builder_and_publish_is_refused() {
    let err = Host::builder()
        .function("not-an-identifier", |_| Ok(json!(null)))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("not-an-identifier"), "{err}");
    let err = Host::builder()
        .plugins_dir("/no/such/dir")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/dir"), "{err}");

    let fx = Fixture::new();
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        host.start().await;
        assert!(host.publish("a.*", json!(1)).await.is_err());
        assert!(
            host.publish("plughost.plugin.started", json!(1))
                .await
                .is_err()
        );
        assert!(host.subscribe("a.>.b").is_err());
        host.shutdown(Duration::from_secs(1)).await;
    });
}

/// An application enables and disables plugins through the library, as
/// the admin endpoint does; once the host shuts down, no change applies.
#[test]
fn plugins_are_enabled_and_disabled_and_shutdown_ends_changes() {
    use plughost::reload::{ReloadOutcome, ToggleError};
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "p",
        "subscriptions: [in]\nenabled: false\n",
        "function on_event(e) bus.publish('out', e.payload) end\n",
    );
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        assert!(host.start().await.started.is_empty());
        assert_eq!(host.is_enabled("p"), Some(false));
        assert_eq!(
            host.set_enabled("p", true, false).await,
            Ok(ReloadOutcome::Started)
        );
        assert_eq!(host.running(), ["p"]);
        assert_eq!(host.is_enabled("p"), Some(true));
        assert_eq!(
            host.set_enabled("p", true, false).await,
            Ok(ReloadOutcome::Unchanged)
        );
        assert_eq!(
            host.set_enabled("p", false, false).await,
            Ok(ReloadOutcome::Stopped)
        );
        assert!(host.running().is_empty());
        assert_eq!(
            host.set_enabled("p", true, false).await,
            Ok(ReloadOutcome::Started)
        );
        assert_eq!(
            host.set_enabled("nope", true, false).await,
            Err(ToggleError::Unknown("nope".into()))
        );
        host.shutdown(Duration::from_secs(1)).await;
        assert!(host.running().is_empty());
        assert_eq!(
            host.set_enabled("p", true, false).await,
            Err(ToggleError::ShuttingDown)
        );
        let dir = host.plugin_folder("p").expect("its folder");
        assert_eq!(
            host.reload_folder(&dir, true).await,
            ReloadOutcome::Failed("the host is shutting down".into())
        );
        assert!(host.running().is_empty(), "nothing started after shutdown");
    });
}

/// `plughost run` as a library function: the shutdown signal is passed in,
/// so a test (or an application) stops it without a process signal, and
/// the report, not an exit code, says how it went.
#[test]
fn run_stops_when_its_shutdown_future_resolves() {
    use plughost::cli::run::{RunOptions, run};
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "p",
        "subscriptions: [in]\n",
        "function init() state.up = true end",
    );
    fx.plugin(Runtime::Lua, "broken", "", "function init( end");
    tokio_rt().block_on(async {
        let opts = |dir: &std::path::Path| RunOptions {
            plugins: vec![dir.to_owned()],
            input: None,
            taps: Vec::new(),
            exit_when_idle: false,
            drain_timeout: Duration::from_secs(1),
            watch: false,
            export: None,
            admin: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(run(opts(fx.path()), async {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!running.is_finished(), "it runs until told to stop");
        stop.send(()).unwrap();
        let report = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("it stops once the future resolves")
            .unwrap()
            .expect("a run that went to its end");
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].0, "broken");
        assert!(report.had_errors());
        // A missing plugins directory is a usage error, as a value.
        let missing = opts(&fx.path().join("nowhere"));
        let e = run(missing, std::future::ready(())).await.unwrap_err();
        assert!(e.to_string().contains("nowhere"), "{e}");
    });
}

// `[Native]`: also run against the native fixture crate.
behaviours!(
    build_start_publish_subscribe_call_and_shut_down[Native],
    a_registered_function_error_is_a_script_error[Native],
);
