//! What every Rhai binding of one plugin shares.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult, FnPtr, Position};

use crate::convert_error::ConvertError;
use crate::timers::{TimerId, Timers};
use crate::{Event, PluginInfo, SharedHost};

/// The deadline of the hook call in progress.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    deadline: Cell<Option<Instant>>,
}

impl Budget {
    /// Starts the clock for one hook call.
    pub(crate) fn start(&self, timeout: Duration) {
        self.deadline.set(Some(Instant::now() + timeout));
    }

    /// Stops the clock.
    pub(crate) fn stop(&self) {
        self.deadline.set(None);
    }

    /// Whether the running call is past its deadline.
    pub(crate) fn exceeded(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= d)
    }
}

/// State shared by the bindings of one engine.
pub(crate) struct Context {
    /// The plugin's identity.
    pub info: Arc<PluginInfo>,
    /// The host services.
    pub host: SharedHost,
    /// The entry script as displayed, for positions without a source.
    pub entry: String,
    /// The event whose `on_event` is running, if any.
    pub current: RefCell<Option<Arc<Event>>>,
    /// Timer deadlines.
    pub timers: RefCell<Timers>,
    /// Timer callbacks by id.
    pub callbacks: RefCell<HashMap<TimerId, FnPtr>>,
    /// Time limit of the hook call in progress.
    pub budget: Budget,
    /// `config`: a read-only, shared object map.
    pub config: RefCell<Dynamic>,
    /// `state`: a shared object map that survives reloads.
    pub state: Dynamic,
}

/// Shared handle to the context.
pub(crate) type Ctx = Rc<Context>;

/// A binding's error, thrown at the calling statement (catchable with `try`).
pub(crate) fn throw(message: impl Into<String>, pos: Position) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(message.into()), pos).into()
}

/// A conversion failure as a thrown error.
pub(crate) fn convert_error(root: &str, e: ConvertError, pos: Position) -> Box<EvalAltResult> {
    throw(e.message(root), pos)
}
