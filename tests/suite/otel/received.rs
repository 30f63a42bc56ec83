//! What rotel's debug exporter printed, read back: spans and metrics with
//! their attributes ([`Received::parse`]).

use super::*;

/// Attribute key to value; the value without its type (`Str(a)` is `a`).
pub(crate) type Attrs = BTreeMap<String, String>;

#[derive(Debug, Default)]
pub(crate) struct Span {
    pub(crate) trace_id: String,
    pub(crate) id: String,
    pub(crate) parent_id: String,
    pub(crate) name: String,
    pub(crate) attrs: Attrs,
    pub(crate) resource: Attrs,
}

#[derive(Debug, Default)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) data_type: String,
    /// Each data point's attributes.
    pub(crate) points: Vec<Attrs>,
    /// Each data point's value (`Value:`; a histogram's `Count:`), in the
    /// same order.
    pub(crate) values: Vec<String>,
    pub(crate) resource: Attrs,
}

#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) spans: Vec<Span>,
    pub(crate) metrics: Vec<Metric>,
}

/// Where a `     -> key: value` line belongs.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Section {
    None,
    Resource,
    SpanAttrs,
    Descriptor,
    PointAttrs,
}

impl Received {
    /// Reads the debug exporter's text (detailed verbosity):
    ///
    /// ```text
    /// ResourceSpans #0
    /// Resource attributes:
    ///      -> service.name: Str(plughost-test)
    /// Span #0
    ///     Trace ID       : 5b8efff798038103d269b633813fc60c
    ///     Parent ID      : eee19b7ec3c1b174
    ///     ID             : eee19b7ec3c1b175
    ///     Name           : …
    /// Attributes:
    ///      -> plugin.name: Str(b)
    /// ResourceMetrics #0
    /// Metric #0
    /// Descriptor:
    ///      -> Name: plugin.messages
    ///      -> Unit: 1
    ///      -> DataType: Sum
    /// NumberDataPoints #0
    /// Data point attributes:
    ///      -> outcome: Str(ack)
    /// ```
    pub(crate) fn parse(text: &str) -> Received {
        let mut got = Received::default();
        let mut resource = Attrs::new();
        let mut section = Section::None;
        // Whether the last `Resource…`/`Span`/`Metric` header was a span's.
        let mut in_spans = true;
        for line in text.lines() {
            if let Some(attr) = line.strip_prefix("     -> ") {
                let Some((key, value)) = attr.split_once(": ").or_else(|| {
                    attr.strip_suffix(':').map(|k| (k, "")) // an empty value
                }) else {
                    continue;
                };
                let (key, value) = (key.to_owned(), untyped(value).to_owned());
                match section {
                    Section::Resource => {
                        resource.insert(key, value);
                    }
                    Section::SpanAttrs => {
                        if let Some(span) = got.spans.last_mut() {
                            span.attrs.insert(key, value);
                        }
                    }
                    Section::Descriptor => {
                        if let Some(metric) = got.metrics.last_mut() {
                            match key.as_str() {
                                "Name" => metric.name = value,
                                "Unit" => metric.unit = value,
                                "DataType" => metric.data_type = value,
                                _ => {}
                            }
                        }
                    }
                    Section::PointAttrs => {
                        if let Some(point) =
                            got.metrics.last_mut().and_then(|m| m.points.last_mut())
                        {
                            point.insert(key, value);
                        }
                    }
                    Section::None => {}
                }
                continue;
            }
            let trimmed = line.trim();
            if line.starts_with("ResourceSpans #") || line.starts_with("ResourceMetrics #") {
                in_spans = line.starts_with("ResourceSpans");
                resource.clear();
                section = Section::None;
            } else if line == "Resource attributes:" {
                section = Section::Resource;
            } else if line.starts_with("Span #") {
                in_spans = true;
                got.spans.push(Span {
                    resource: resource.clone(),
                    ..Span::default()
                });
                section = Section::None;
            } else if line.starts_with("Metric #") {
                in_spans = false;
                got.metrics.push(Metric {
                    resource: resource.clone(),
                    ..Metric::default()
                });
                section = Section::None;
            } else if line == "Descriptor:" {
                section = Section::Descriptor;
            } else if line == "Data point attributes:" {
                match got.metrics.last_mut() {
                    Some(metric) => {
                        metric.points.push(Attrs::new());
                        metric.values.push(String::new());
                    }
                    None => continue,
                }
                section = Section::PointAttrs;
            } else if let Some(value) = line
                .strip_prefix("Value: ")
                .or_else(|| line.strip_prefix("Count: "))
                .filter(|_| !in_spans)
            {
                if let Some(last) = got.metrics.last_mut().and_then(|m| m.values.last_mut()) {
                    *last = value.trim().to_owned();
                }
                section = Section::None;
            } else if line == "Attributes:" && in_spans {
                section = Section::SpanAttrs;
            } else if let Some((key, value)) = trimmed.split_once(':').filter(|_| in_spans) {
                if let Some(span) = got.spans.last_mut() {
                    let value = value.trim().to_owned();
                    match key.trim() {
                        "Trace ID" => span.trace_id = value,
                        "Parent ID" => span.parent_id = value,
                        "ID" => span.id = value,
                        "Name" => span.name = value,
                        _ => {}
                    }
                }
                section = Section::None;
            } else {
                section = Section::None;
            }
        }
        got
    }

    pub(crate) fn metric_points(&self, name: &str) -> Vec<&Attrs> {
        self.metrics
            .iter()
            .filter(|m| m.name == name)
            .flat_map(|m| &m.points)
            .collect()
    }

    /// The value of metric `name`'s data point with exactly these
    /// attributes besides the plugin's (`plugin.*`).
    pub(crate) fn value(&self, name: &str, attrs: &[(&str, &str)]) -> Option<&str> {
        self.metrics
            .iter()
            .filter(|m| m.name == name)
            .flat_map(|m| m.points.iter().zip(&m.values))
            .find(|(point, _)| {
                attrs.iter().all(|(k, v)| attr(point, k) == Some(*v))
                    && point.keys().filter(|k| !k.starts_with("plugin.")).count()
                        == attrs
                            .iter()
                            .filter(|(k, _)| !k.starts_with("plugin."))
                            .count()
            })
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn metric_names(&self) -> BTreeSet<&str> {
        self.metrics.iter().map(|m| m.name.as_str()).collect()
    }

    /// Spans of `plugin` handling an event on `topic` (not the script's own).
    pub(crate) fn deliveries(&self, plugin: &str, topic: &str) -> Vec<&Span> {
        self.spans
            .iter()
            .filter(|s| s.name != SCRIPT_SPAN)
            .filter(|s| attr(&s.attrs, "plugin.name") == Some(plugin))
            .filter(|s| attr(&s.attrs, "message.topic") == Some(topic))
            .collect()
    }

    /// Whether `ancestor` is `span`'s parent, grand-parent, ….
    pub(crate) fn descends_from(&self, span: &Span, ancestor: &Span) -> bool {
        let mut parent = span.parent_id.as_str();
        for _ in 0..self.spans.len() {
            if parent.is_empty() {
                return false;
            }
            if parent == ancestor.id {
                return true;
            }
            match self.spans.iter().find(|s| s.id == parent) {
                Some(s) => parent = &s.parent_id,
                None => return false,
            }
        }
        false
    }

    /// Everything SPEC §6 says should have arrived, as a list of what is
    /// missing (empty when all arrived).
    pub(crate) fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        let plugin_attrs = |attrs: &Attrs, plugin: &str| -> Result<(), String> {
            for (key, want) in [
                ("plugin.name", plugin),
                ("plugin.version", "1.0.0"),
                ("plugin.runtime", "lua"),
            ] {
                if attr(attrs, key) != Some(want) {
                    return Err(format!("{key}={want} (got {attrs:?})"));
                }
            }
            Ok(())
        };

        // Host metrics: each of both plugins, with the plugin's attributes.
        for name in HOST_METRICS {
            let points = self.metric_points(name);
            for plugin in ["a", "b"] {
                let mine: Vec<&&Attrs> = points
                    .iter()
                    .filter(|p| attr(p, "plugin.name") == Some(plugin))
                    .collect();
                if mine.is_empty() {
                    missing.push(format!("metric {name} with plugin.name={plugin}"));
                }
                for point in mine {
                    if let Err(e) = plugin_attrs(point, plugin) {
                        missing.push(format!("metric {name}: {e}"));
                    }
                }
            }
        }
        for name in PER_EVENT_METRICS {
            for (plugin, topic) in [("a", "in"), ("b", "mid")] {
                let found = self.metric_points(name).into_iter().any(|p| {
                    attr(p, "plugin.name") == Some(plugin)
                        && attr(p, "message.topic") == Some(topic)
                });
                if !found {
                    missing.push(format!(
                        "metric {name} with plugin.name={plugin}, message.topic={topic}"
                    ));
                }
            }
            for point in self.metric_points(name) {
                if point.contains_key("message.id") {
                    missing.push(format!(
                        "metric {name} without message.id (one series per event): {point:?}"
                    ));
                }
            }
        }
        for (name, key) in [
            ("plugin.messages", "outcome"),
            ("plugin.lifecycle.events", "event"),
        ] {
            for point in self.metric_points(name) {
                if attr(point, key).is_none_or(str::is_empty) {
                    missing.push(format!("metric {name} with `{key}`: {point:?}"));
                }
            }
        }

        // One delivery each, one start and one stop each.
        for (plugin, topic) in [("a", "in"), ("b", "mid")] {
            let me = [("plugin.name", plugin), ("message.topic", topic)];
            let ack = [me[0], me[1], ("outcome", "ack")];
            for (name, attrs, want) in [
                ("plugin.messages", &ack[..], "1"),
                ("plugin.message.processing_time_ms", &me[..], "1"),
            ] {
                let got = self.value(name, attrs);
                if got != Some(want) {
                    missing.push(format!("metric {name} {attrs:?} = {want} (got {got:?})"));
                }
            }
            for event in ["started", "stopped"] {
                let attrs = [("plugin.name", plugin), ("event", event)];
                let got = self.value("plugin.lifecycle.events", &attrs);
                if got != Some("1") {
                    missing.push(format!(
                        "metric plugin.lifecycle.events {attrs:?} = 1 (got {got:?})"
                    ));
                }
            }
        }

        // The script's counter, with its own attribute and the plugin's.
        let words: Vec<&Metric> = self
            .metrics
            .iter()
            .filter(|m| m.name == SCRIPT_METRIC)
            .collect();
        let point = words
            .iter()
            .flat_map(|m| &m.points)
            .find(|p| attr(p, "kind") == Some("x"));
        match point {
            None => missing.push(format!(
                "script metric `{SCRIPT_METRIC}` with kind=x (metrics received: {:?})",
                self.metric_names()
            )),
            Some(point) => {
                if let Err(e) = plugin_attrs(point, "a") {
                    missing.push(format!("script metric `{SCRIPT_METRIC}`: {e}"));
                }
            }
        }
        let got = self.value(SCRIPT_METRIC, &[("plugin.name", "a"), ("kind", "x")]);
        if got != Some("3") {
            missing.push(format!("script metric `{SCRIPT_METRIC}` = 3 (got {got:?})"));
        }
        if let Some(m) = words.iter().find(|m| m.data_type != "Sum") {
            missing.push(format!(
                "script metric `{SCRIPT_METRIC}` as a Sum (counter), not {}",
                m.data_type
            ));
        }

        // Resource: the service name, on everything.
        for (what, resource) in self
            .spans
            .iter()
            .map(|s| ("span", &s.resource))
            .chain(self.metrics.iter().map(|m| ("metric", &m.resource)))
        {
            if attr(resource, "service.name") != Some(SERVICE) {
                missing.push(format!(
                    "{what} resource service.name={SERVICE}: {resource:?}"
                ));
                break;
            }
        }

        // Spans: one per delivery with the plugin's and the message's
        // attributes, and B's delivery in A's trace, below A's.
        let a = self.deliveries("a", "in");
        let b = self.deliveries("b", "mid");
        for (plugin, topic, spans) in [("a", "in", &a), ("b", "mid", &b)] {
            if spans.is_empty() {
                missing.push(format!(
                    "span with plugin.name={plugin}, message.topic={topic} (spans received: {:?})",
                    self.spans
                        .iter()
                        .map(|s| (&s.name, &s.attrs))
                        .collect::<Vec<_>>()
                ));
            }
            for span in spans.iter() {
                if let Err(e) = plugin_attrs(&span.attrs, plugin) {
                    missing.push(format!("span {}: {e}", span.name));
                }
                if attr(&span.attrs, "message.id").is_none_or(str::is_empty) {
                    missing.push(format!(
                        "span {} with message.id: {:?}",
                        span.name, span.attrs
                    ));
                }
            }
        }
        if !a.is_empty() && !b.is_empty() {
            let joined = b.iter().any(|b| {
                a.iter()
                    .any(|a| b.trace_id == a.trace_id && self.descends_from(b, a))
            });
            if !joined {
                missing.push(format!(
                    "B's delivery span in A's trace, a descendant of A's delivery span \
                     (A: {:?}; B: {:?})",
                    a.iter()
                        .map(|s| (&s.trace_id, &s.id, &s.parent_id))
                        .collect::<Vec<_>>(),
                    b.iter()
                        .map(|s| (&s.trace_id, &s.id, &s.parent_id))
                        .collect::<Vec<_>>()
                ));
            }
        }
        // The script's span: a child of B's delivery, with B's attributes.
        let script = self.spans.iter().find(|s| s.name == SCRIPT_SPAN);
        match script {
            None => missing.push(format!("the script's span `{SCRIPT_SPAN}`")),
            Some(span) => {
                if let Err(e) = plugin_attrs(&span.attrs, "b") {
                    missing.push(format!("span {SCRIPT_SPAN}: {e}"));
                }
                // Each script attribute its own span attribute.
                for (key, want) in [("step", "one"), ("n", "3"), ("ok", "true")] {
                    if attr(&span.attrs, key) != Some(want) {
                        missing.push(format!(
                            "span {SCRIPT_SPAN} with {key}: {want} ({:?})",
                            span.attrs
                        ));
                    }
                }
                if !b.iter().any(|b| self.descends_from(span, b)) {
                    missing.push(format!(
                        "span {SCRIPT_SPAN} below B's delivery span (parent {})",
                        span.parent_id
                    ));
                }
            }
        }
        missing
    }
}

pub(crate) fn attr<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a str> {
    attrs.get(key).map(String::as_str)
}

/// `Str(a)` → `a`, `Int(3)` → `3`; anything else as it is.
pub(crate) fn untyped(value: &str) -> &str {
    match (value.find('('), value.ends_with(')')) {
        (Some(open), true) if value[..open].chars().all(|c| c.is_ascii_alphabetic()) => {
            &value[open + 1..value.len() - 1]
        }
        _ => value,
    }
}
