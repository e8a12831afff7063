//! Observability: what operators see of a running robot.
//!
//! - [`status`]: the robot's status snapshot, kept current by the agent, shared read-only with
//!   the health endpoint and the tray, and written to `<data_dir>/status.json` for the
//!   `casare-robot status` command.
//! - [`metrics`]: the MetricsCollector (heartbeat summary, Prometheus text).
//! - [`health`]: `/health` and `/metrics` on 127.0.0.1.
//! - [`audit`]: the audit trail (JSON Lines files with size rotation, an in-memory ring of
//!   recent entries, queries over both); secrets are scrubbed before anything is written.
//! - [`supabase`]: optional, lossy progress broadcasts to Supabase Realtime over HTTP, batched
//!   on their own thread (`supabase-io`).
//! - [`inspect`]: `checkpoints list/show` while a daemon owns the store, answered by the agent.

pub mod audit;
pub mod health;
pub mod inspect;
pub mod metrics;
pub mod status;
pub mod supabase;
