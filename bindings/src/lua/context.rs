//! What every Lua binding of one plugin shares: who the plugin is, the host,
//! the event being handled, the timers and the time budget.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use mlua::{Function, Lua};

use super::convert::ConvertError;
use super::sandbox::Budget;
use crate::timers::TimerTable;
use crate::{Event, PluginInfo, SharedHost};

/// State shared by the bindings of one interpreter.
pub(crate) struct Context {
    /// The plugin's identity.
    pub info: Arc<PluginInfo>,
    /// The host services.
    pub host: SharedHost,
    /// The plugin folder, as given (for module chunk names).
    pub dir: PathBuf,
    /// The event whose `on_event` is running, if any.
    pub current: RefCell<Option<Arc<Event>>>,
    /// Timers and their callbacks.
    pub timers: RefCell<TimerTable<Function>>,
    /// Time limit of the hook call in progress.
    pub budget: Rc<Budget>,
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

/// Converts a JSON conversion failure into a Lua error at the calling line.
pub(crate) fn convert_error(lua: &Lua, root: &str, e: ConvertError) -> mlua::Error {
    super::error::raise(lua, e.message(root))
}
