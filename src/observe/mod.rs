//! Observability: what operators see of a running robot.
//!
//! - [`status`]: the robot's status snapshot, kept current by the agent, shared read-only with
//!   the health endpoint and the tray, and written to `<data_dir>/status.json` for the
//!   `casare-robot status` command;
//! - [`metrics`]: the MetricsCollector (heartbeat summary, Prometheus text);
//! - [`health`]: `/health` and `/metrics` on 127.0.0.1.

pub mod health;
pub mod metrics;
pub mod status;
