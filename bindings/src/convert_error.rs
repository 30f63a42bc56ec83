//! The error of a value that cannot become JSON, shared by every runtime.

/// A value that cannot be converted, with where it sits (`payload.items[2]`).
#[derive(Debug)]
pub(crate) struct ConvertError {
    what: String,
    path: Vec<String>,
}

impl ConvertError {
    /// A failure at the value being converted.
    pub(crate) fn new(what: impl Into<String>) -> Self {
        ConvertError {
            what: what.into(),
            path: Vec::new(),
        }
    }

    /// The failure sits under `segment` (`.key` or `[3]`) of the parent value.
    pub(crate) fn at(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }

    /// The message, naming the value's path under `root`.
    pub(crate) fn message(&self, root: &str) -> String {
        let mut path = root.to_owned();
        for seg in self.path.iter().rev() {
            path.push_str(seg);
        }
        format!("{} (at {path})", self.what)
    }
}
