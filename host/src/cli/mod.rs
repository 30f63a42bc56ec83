//! The command line's building blocks, one module per command; `main.rs`
//! only parses flags and calls these.

pub mod check;
pub mod client;
pub mod dead_letters;
pub mod expect;
pub mod input;
pub mod list;
pub mod logging;
pub mod new;
pub mod run;
pub mod schema;
pub mod table;
pub mod tap;
pub mod test;
pub mod top;
