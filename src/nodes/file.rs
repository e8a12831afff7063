//! file nodes (being written in a parallel change).

use crate::engine::node::NodeDef;

/// Node types of this family.
pub const NODES: &[NodeDef] = &[];
