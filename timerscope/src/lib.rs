//! The `timerscope` command: clap definitions ([`cli`]), one module per subcommand
//! ([`commands`]), text and JSON output ([`render`]), the HTML report ([`report`]), log output ([`logging`]) and every exit
//! status ([`exit`]). The work itself is done by the capture, analyzer and inspect crates.
// Dev-dependencies serve the integration tests and examples, not the unit tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod cli;
pub mod commands;
pub mod exit;
pub mod logging;
pub mod render;
pub mod report;
mod status;
mod summary;
