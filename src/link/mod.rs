//! Orchestrator links: the wire protocol of both WebSocket dialects (`protocol`), the ws-io thread
//! that owns the socket (`ws`), the REST API v1 client (`rest`) and the rest-io thread (`rest_io`)
//! that claims jobs by polling, renews leases and delivers results. The daemon uses the WebSocket
//! link when `orchestrator_url` is set and REST polling when `api_url` is set (both at once: a
//! job id arriving on both runs once). `trigger_fields` turns the trigger event a job carries into
//! its `trigger_payload` / `trigger_metadata` variables.

pub mod bound;
pub mod protocol;
pub mod rest;
pub mod rest_io;
pub mod trigger_fields;
pub mod ws;
