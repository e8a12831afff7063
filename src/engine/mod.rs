//! The workflow engine: values, templates, expressions, the workflow model and the runner.

pub mod expr;
pub mod pyformat;
pub mod value;

pub use value::{Dict, Value};
