//! A host for the runtimes' unit tests: it records what a plugin asked
//! for (publications, requests, log lines, metrics, open spans) and offers
//! one application function, `host::double(n)`. A request on `echo` is
//! answered at once with its payload; any other waits out its time and
//! times out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::{
    Event, HostApi, HostCall, HostCallError, LogLevel, LogRecord, MetricKind, Payload, PluginInfo,
    SpanGuard,
};

/// One recorded log line: level, message, file, line.
pub(crate) type Logged = (LogLevel, String, Option<String>, Option<usize>);

/// A host that records what the plugin asked for.
#[derive(Default)]
pub(crate) struct Recorder {
    /// (topic, payload, id of the cause)
    pub(crate) published: Mutex<Vec<(String, Value, Option<String>)>>,
    pub(crate) logs: Mutex<Vec<Logged>>,
    pub(crate) metrics: Mutex<Vec<(MetricKind, String, f64)>>,
    pub(crate) open_spans: Arc<AtomicUsize>,
    /// (topic, how long the host was allowed to wait)
    pub(crate) requests: Mutex<Vec<(String, std::time::Duration)>>,
}

struct Span(Arc<AtomicUsize>);

impl Drop for Span {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HostApi for Recorder {
    fn publish(
        &self,
        _: &PluginInfo,
        topic: &str,
        payload: Payload,
        cause: Option<&Event>,
    ) -> Result<String, HostCallError> {
        if topic.starts_with("plughost.") {
            return Err(HostCallError::new(
                HostCall::Publish,
                format!("`{topic}` is the host's"),
            ));
        }
        let mut p = self.published.lock().unwrap();
        p.push((
            topic.to_owned(),
            payload.into_value(),
            cause.map(|c| c.id.clone()),
        ));
        Ok(format!("id-{}", p.len()))
    }

    fn request(
        &self,
        _: &PluginInfo,
        topic: &str,
        payload: Payload,
        _: Option<&Event>,
        wait: std::time::Duration,
    ) -> Result<Payload, HostCallError> {
        self.requests.lock().unwrap().push((topic.to_owned(), wait));
        if topic == "echo" {
            return Ok(payload);
        }
        std::thread::sleep(wait);
        Err(HostCallError::new(
            HostCall::Request,
            format!("no reply on `{topic}` within {} ms", wait.as_millis()),
        ))
    }

    fn log(&self, _: &PluginInfo, r: LogRecord<'_>) {
        self.logs.lock().unwrap().push((
            r.level,
            r.message.to_owned(),
            r.file.map(str::to_owned),
            r.line,
        ));
    }

    fn metric(
        &self,
        _: &PluginInfo,
        kind: MetricKind,
        name: &str,
        value: f64,
        _: &Map<String, Value>,
    ) -> Result<(), HostCallError> {
        if name.contains(' ') {
            return Err(HostCallError::new(
                HostCall::Metric,
                format!("metric name `{name}`"),
            ));
        }
        self.metrics
            .lock()
            .unwrap()
            .push((kind, name.to_owned(), value));
        Ok(())
    }

    fn span(
        &self,
        _: &PluginInfo,
        _: &str,
        _: &Map<String, Value>,
        _: Option<&Event>,
    ) -> SpanGuard {
        self.open_spans.fetch_add(1, Ordering::SeqCst);
        Box::new(Span(self.open_spans.clone()))
    }

    fn function_names(&self) -> Vec<String> {
        vec!["double".into()]
    }

    fn call_function(
        &self,
        _: &PluginInfo,
        name: &str,
        args: Vec<Value>,
    ) -> Result<Value, HostCallError> {
        match (name, args.as_slice()) {
            ("double", [n]) => Ok(json!(n.as_i64().unwrap_or(0) * 2)),
            _ => Err(HostCallError::new(HostCall::Function, "no such function")),
        }
    }
}
