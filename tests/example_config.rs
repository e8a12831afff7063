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
    // No placeholder host: setting only one link leaves the other unset, not pointing at a
    // fake host.
    assert_eq!(config.orchestrator_url, None);
    assert_eq!(config.api_url, None);
    let only_rest = |name: &str| (name == "CASARE_API_URL").then(|| "http://127.0.0.1:8000".into());
    let config = RobotConfig::load(Some(&path), &only_rest, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.orchestrator_url, None);
    assert!(config.api_url.is_some());

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

/// Copied as is, the example runs workflows, and `start` says what to set instead of dialling a
/// host that does not exist.
#[test]
fn the_example_config_copied_as_is_runs_and_start_names_what_to_set() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("robot_config.json");
    std::fs::copy(root.join("robot_config.example.json"), &config).unwrap();
    let bin = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_casare-robot"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("CASARE_DATA_DIR", dir.path().join("data"))
            .env("CASARE_LOG_DIR", dir.path().join("logs"))
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null());
        cmd
    };
    let hello = root.join("examples/hello.json");
    let out = bin()
        .args(["run", hello.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let out = bin().args(["start"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no orchestrator is configured: set orchestrator_url"),
        "{stderr}"
    );
    assert!(!stderr.contains("orchestrator.example"), "{stderr}");
}
