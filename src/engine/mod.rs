//! The workflow engine: values, templates, expressions, the workflow model and the runner.
//!
//! Flow of a run: [`model::load_str`] parses and validates CasareRPA canvas JSON into a
//! [`Workflow`] (a CasareRPA project template is first turned into canvas JSON by [`project`]);
//! [`runner::run`] executes it node by node, calling the node implementations in
//! `crate::nodes` through the [`node::NodeDef`] contract, and returns a [`runner::RunOutcome`].

pub mod cancel;
pub mod expr;
pub mod model;
pub mod node;
pub mod parallel;
pub mod project;
pub mod pyformat;
pub mod resources;
pub mod runner;
pub mod safety;
pub mod subflow;
pub mod template;
pub mod value;

pub use cancel::CancelToken;
pub use model::{load_str, LoadError, Workflow};
pub use node::{Flow, NodeCtx, NodeDef, NodeError};
pub use runner::{run, Observer, RunOptions, RunOutcome, RunState, RunStatus};
pub use value::{Dict, Value};
