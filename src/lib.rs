//! casare-robot: the Robot of the CasareRPA automation platform.
//!
//! The library holds all logic; `main.rs` only parses the command line and maps outcomes to exit
//! codes. See `ARCHITECTURE.md` for the code map.

pub mod agent;
pub mod app;
pub mod cli;
pub mod config;
pub mod engine;
pub mod interrupt;
pub mod link;
pub mod logging;
pub mod nodes;
pub mod observe;
pub mod output;
pub mod private_fs;
pub mod progress;
pub mod redact;
pub mod resilience;
pub mod store;
pub mod tray;
#[cfg(windows)]
pub mod winhost;
pub mod worker;
