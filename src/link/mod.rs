//! Orchestrator links: wire protocol (both dialects), the WebSocket I/O thread, and the REST
//! API v1 client (`rest`, groundwork for REST polling: not yet used by the daemon, issue #6).

pub mod bound;
pub mod protocol;
pub mod rest;
pub mod rest_io;
pub mod ws;
