//! Observability: what operators see of a running robot.
//!
//! - [`status`]: the robot's status snapshot, kept current by the agent, shared read-only with
//!   the health endpoint and the tray, and written to `<data_dir>/status.json` for the
//!   `casare-robot status` command.

pub mod status;
