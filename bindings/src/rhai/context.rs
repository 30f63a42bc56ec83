//! What every Rhai binding of one plugin shares.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, FnPtr, Position};

use crate::convert_error::ConvertError;
use crate::timers::TimerTable;
use crate::{Event, PluginInfo, SharedHost};

pub(crate) use crate::budget::Budget;

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
    /// Timers and their callbacks.
    pub timers: RefCell<TimerTable<FnPtr>>,
    /// Time limit of the hook call in progress.
    pub budget: Budget,
    /// `config`: a read-only object map.
    pub config: RefCell<Dynamic>,
    /// `state`: a shared object map that survives reloads.
    pub state: Dynamic,
}

/// Shared handle to the context.
pub(crate) type Ctx = Rc<Context>;

impl Context {
    /// The runtime-neutral core of the bindings, for this plugin.
    pub(crate) fn core(&self) -> crate::core::Core<'_> {
        crate::core::Core {
            info: &self.info,
            host: &self.host,
            current: &self.current,
        }
    }
}

/// A binding core's error, thrown at the calling statement.
pub(crate) fn refused(e: crate::core::BindingError, pos: Position) -> Box<EvalAltResult> {
    throw(e.to_string(), pos)
}

/// A binding's error, thrown at the calling statement (catchable with `try`).
pub(crate) fn throw(message: impl Into<String>, pos: Position) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(message.into()), pos).into()
}

/// A conversion failure as a thrown error.
pub(crate) fn convert_error(root: &str, e: ConvertError, pos: Position) -> Box<EvalAltResult> {
    throw(e.message(root), pos)
}
