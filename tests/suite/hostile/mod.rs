//! Hostile plugins and inputs (issue 12): each attack runs beside a
//! well-behaved plugin whose every event must still be handled, and every
//! input event is accounted for (handled, forwarded, dropped with a reason,
//! or dead-lettered).

mod admin;
mod bus;
mod inputs;
mod lua;
mod manifests;
mod native;
mod rhai;
