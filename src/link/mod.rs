//! Orchestrator links: wire protocol (both dialects) and the WebSocket I/O thread.

pub mod protocol;
pub mod ws;
