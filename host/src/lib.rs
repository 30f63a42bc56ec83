//! plughost
pub mod actor;
pub mod bus;
pub mod catalog;
pub mod cli;
pub mod delivery;
pub mod deps;
pub mod discovery;
pub mod functions;
pub mod host;
pub mod manifest;
pub mod services;
pub mod topic;

pub use host::{
    EventStream, Host, HostBuilder, HostError, PublishError, ShutdownReport, StartReport,
};
pub use plughost_bindings::{Event, Outcome, RuntimeKind, ScriptError};
