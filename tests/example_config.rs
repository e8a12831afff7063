//! `robot_config.example.json` is complete (every key), valid, and documented in the README.

use casare_robot::config::{RobotConfig, ALL_KEYS};
use std::path::Path;

#[test]
fn example_config_loads_and_names_every_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("robot_config.example.json");
    let no_env = |_: &str| None;
    let config = RobotConfig::load(Some(&path), &no_env, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.robot_id.as_deref(), Some("robot-office-07"));

    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for key in ALL_KEYS {
        let nested = key
            .strip_prefix("circuit_")
            .map(|k| doc["circuit_breaker"].get(k).is_some());
        assert!(
            doc.get(*key).is_some() || nested == Some(true),
            "example config lacks {key}"
        );
        assert!(
            readme.contains(&format!("`{key}`")),
            "README does not document {key}"
        );
    }
}
