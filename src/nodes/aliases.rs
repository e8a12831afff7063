//! Other names for node types: the upstream registry's aliases, and the hints given for names
//! the fixtures use that upstream does not register at all.
//!
//! An alias is accepted only with evidence that upstream resolves the name to the other node: the
//! catalogue's `alias_of` / `other_registry_names` (the same class object registered under two
//! names). An alias whose target this robot does not run yet is inert: the name is refused like
//! its target, naming the family, until the target is registered.
//!
//! | alias | resolves to | evidence (catalogue) | active |
//! |---|---|---|---|
//! | `BrowserWaitNode` | `WaitNode` | `alias_of`, `wait_nodes.py:47` | yes |
//! | `BrowserCloseNode` | `CloseBrowserNode` | `alias_of`, `browser/lifecycle.py:698` | when browser nodes exist |
//! | `BrowserLaunchNode` | `LaunchBrowserNode` | `alias_of`, `browser/lifecycle.py:82` | when browser nodes exist |
//! | `BrowserNavigateNode` | `GoToURLNode` | `alias_of`, `browser/navigation.py:30` | when browser nodes exist |
//! | `BrowserGetTextNode` | `ExtractTextNode` | `alias_of`, `data_nodes.py:47` | when browser nodes exist |
//! | `BrowserScreenshotNode` | `ScreenshotNode` | `alias_of`, `data_nodes.py:421` | when browser nodes exist |
//! | `OCRNode` | `OCRExtractTextNode` | `alias_of`, `desktop_nodes/screenshot_ocr_nodes.py:235` | when OCR exists |
//! | `DriveRemovePermissionNode` | `DriveRemoveShareNode` | `alias_of`, `google/drive/drive_share.py:246` | when Drive nodes exist |
//!
//! Names in the fixtures (`../shared/fixtures/casare/`, every file scanned) that are in neither
//! the registry nor the catalogue, and upstream fails at load ("Not in the registry but used by
//! fixtures", reference §4): `HTTPSuperNode`, `ParseJSONNode`, `EvaluateExpressionNode`
//! (`batch_4_1_http`, `batch_5_2_expression`), `GetCurrentUrlNode`, `GetPageSourceNode`
//! (`batch_3_2_browser_interaction`). No upstream code maps them, so they are **not** aliases:
//! a workflow using them is refused, with a "did you mean" where the intended node is clear —
//! `HTTPSuperNode` by spelling (`HttpSuperNode`), the others through [`HINTS`], which quote the
//! canvas name (`NODE_NAME` of the visual node) the author most likely read. The two browser
//! names match no upstream node and get no hint.

/// `(alias, target)`: upstream registry aliases (see the table above).
pub const ALIASES: &[(&str, &str)] = &[
    ("BrowserWaitNode", "WaitNode"),
    ("BrowserCloseNode", "CloseBrowserNode"),
    ("BrowserLaunchNode", "LaunchBrowserNode"),
    ("BrowserNavigateNode", "GoToURLNode"),
    ("BrowserGetTextNode", "ExtractTextNode"),
    ("BrowserScreenshotNode", "ScreenshotNode"),
    ("OCRNode", "OCRExtractTextNode"),
    ("DriveRemovePermissionNode", "DriveRemoveShareNode"),
];

/// `(unregistered name, intended node, why)`: "did you mean" hints for names upstream does not
/// register either, where edit distance finds nothing.
pub const HINTS: &[(&str, &str, &str)] = &[
    (
        "ParseJSONNode",
        "JsonParseNode",
        "the canvas shows JsonParseNode as \"Parse JSON\"",
    ),
    (
        "EvaluateExpressionNode",
        "EvalExpressionNode",
        "the canvas shows EvalExpressionNode as \"Eval Expression\"",
    ),
];

/// The hint for an unregistered `name`: `(intended node, why)`.
pub fn hint(name: &str) -> Option<(&'static str, &'static str)> {
    HINTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, target, why)| (*target, *why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::{catalog::UPSTREAM_TYPES, lookup};

    fn upstream(name: &str) -> bool {
        UPSTREAM_TYPES.iter().any(|(n, _)| *n == name)
    }

    #[test]
    fn aliases_resolve_to_their_target_only_when_it_is_registered() {
        for (alias, target) in ALIASES {
            assert!(upstream(alias) && upstream(target), "{alias} -> {target}");
            match lookup(target) {
                Some(def) => assert_eq!(lookup(alias).map(|d| d.node_type), Some(def.node_type)),
                None => assert!(lookup(alias).is_none(), "{alias} is inert"),
            }
        }
        assert_eq!(
            lookup("BrowserWaitNode").map(|d| d.node_type),
            Some("WaitNode")
        );
    }

    #[test]
    fn hinted_names_are_not_upstream_types_and_their_targets_are() {
        for (name, target, _) in HINTS {
            assert!(!upstream(name), "{name} is an upstream type");
            assert!(upstream(target), "{target}");
            assert!(lookup(name).is_none(), "{name} must not be accepted");
        }
    }

    #[test]
    fn unregistered_fixture_names_are_refused_with_a_hint() {
        for (name, want) in [
            ("ParseJSONNode", "did you mean \"JsonParseNode\"? upstream does not register \"ParseJSONNode\" either; the canvas shows JsonParseNode as \"Parse JSON\""),
            ("EvaluateExpressionNode", "did you mean \"EvalExpressionNode\"?"),
            ("HTTPSuperNode", "did you mean \"HttpSuperNode\"?"),
        ] {
            let doc = format!(r#"{{"nodes": {{"a": {{"node_type": "{name}"}}}}}}"#);
            let err = crate::engine::load_str(&doc).unwrap_err();
            assert_eq!(err.unsupported_types, [name]);
            assert!(err.problems[0].message.contains(want), "{}", err.problems[0]);
        }
    }
}
