//! Node implementations, one file per family, and the registry of supported node types.
//!
//! Each family exposes `NODES: &[NodeDef]`; [`lookup`] finds a type by its CasareRPA name (or a
//! compatibility alias). A type missing here is "unsupported": workflows using it are rejected at
//! load time with the list of such types.

pub mod aliases;
pub mod basic;
pub mod beep;
pub mod catalog;
pub mod control;
pub mod database;
pub mod datetime;
pub mod dict;
pub mod file;
pub mod http;
pub mod list;
pub mod log;
pub mod math;
pub mod parallel;
pub mod processes;
pub mod script;
pub mod system;
pub mod text;
pub mod trigger;
pub mod variables;
pub mod wait;
pub mod workflow;
pub mod xml;

use crate::engine::node::NodeDef;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Every family's node table.
pub const FAMILIES: &[&[NodeDef]] = &[
    basic::NODES,
    variables::NODES,
    control::NODES,
    log::NODES,
    wait::NODES,
    list::NODES,
    dict::NODES,
    text::NODES,
    math::NODES,
    datetime::NODES,
    file::NODES,
    xml::NODES,
    system::NODES,
    http::NODES,
    script::NODES,
    processes::NODES,
    beep::NODES,
    http::helpers::NODES,
    trigger::NODES,
    workflow::NODES,
    parallel::NODES,
    database::NODES,
];

/// Alternative names accepted for registered types (upstream registry aliases; see [`aliases`]).
pub use aliases::ALIASES;

fn registry() -> &'static HashMap<&'static str, &'static NodeDef> {
    static REGISTRY: OnceLock<HashMap<&'static str, &'static NodeDef>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map = HashMap::new();
        for family in FAMILIES {
            for def in family.iter() {
                map.insert(def.node_type, def);
            }
        }
        for (alias, target) in ALIASES {
            if let Some(def) = map.get(target).copied() {
                map.insert(*alias, def);
            }
        }
        map
    })
}

/// A problem with a node's literal config that its family finds at load time (`None`: fine).
pub fn load_check(node: &crate::engine::model::CompiledNode) -> Option<String> {
    database::load_check(node)
}

/// The node type called `name`, if this robot supports it.
pub fn lookup(name: &str) -> Option<&'static NodeDef> {
    registry().get(name).copied()
}

/// All supported node types (aliases excluded), sorted by name.
pub fn all() -> Vec<&'static NodeDef> {
    let mut defs: Vec<&'static NodeDef> = FAMILIES.iter().flat_map(|f| f.iter()).collect();
    defs.sort_by_key(|d| d.node_type);
    defs
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_has_no_duplicate_types() {
        let defs = all();
        for pair in defs.windows(2) {
            assert_ne!(pair[0].node_type, pair[1].node_type, "registered twice");
        }
        assert!(lookup("BrowserWaitNode").is_some());
        assert!(lookup("LaunchBrowserNode").is_none());
    }

    #[test]
    fn every_param_and_output_name_is_unique_per_node() {
        for def in all() {
            let mut names: Vec<&str> = def.params.iter().map(|p| p.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(
                names.len(),
                def.params.len(),
                "{} has duplicate params",
                def.node_type
            );
        }
    }
}
