//! plughost's black-box suite: the real binary (and the library) against
//! plugin folders written into temp dirs.
//!
//! Behaviour modules are written once and run against every runtime.

mod admin;
mod authoring;
mod bindings;
mod cli;
mod cli_polish;
mod client;
mod cluster;
mod config;
mod dashboard;
mod dead_letters;
mod examples;
mod helpers;
mod hostile;
mod library;
mod lifecycle;
mod live;
mod native;
mod native_reload;
mod new;
mod newcomer;
mod otel;
mod outcomes;
mod prometheus;
mod reload;
mod request;
mod rollout;
mod rollout_cli;
mod rollout_live;
mod sandbox;
mod scale;
mod schema;
mod schema_cmd;
mod supervision;
mod support;
mod telemetry;
mod watch;
