//! Unit tests of the script family's pure parts and of `EvalExpressionNode`; the interpreters
//! themselves are exercised with real programs in `tests/io_scripts.rs`.

use super::*;
use crate::nodes::testing::{ok, one, run_node};
use serde_json::json;

#[test]
fn eval_expression_keeps_types_and_names_the_type() {
    let ran = run_node(
        "EvalExpressionNode",
        json!({"expression": "{{x}} + {{y}} * 2"}),
        json!({"x": 10, "y": 20}),
    );
    ok(&ran);
    assert_eq!(ran.out("n", "result"), Value::Int(50));
    assert_eq!(ran.out("n", "type"), Value::str("int"));
    assert_eq!(ran.out("n", "success"), Value::Bool(true));
    assert_eq!(ran.out("n", "error"), Value::str(""));
    for (expression, repr, type_name) in [
        ("{{name}}.upper() if {{n}} > 1 else 'no'", "'ZOË'", "str"),
        (
            "[i * 2 for i in []] if False else sorted([3, 1, 2])",
            "[1, 2, 3]",
            "list",
        ),
        ("{'a': 1.5}", "{'a': 1.5}", "dict"),
        ("None", "None", "NoneType"),
        ("len(items) == 2", "True", "bool"),
    ] {
        let ran = run_node(
            "EvalExpressionNode",
            json!({"expression": expression}),
            json!({"name": "zoë", "n": 2, "items": [1, 2]}),
        );
        if expression.contains(" for ") {
            // Comprehensions are outside the evaluator's subset: a SyntaxError, not a guess.
            assert_eq!(
                ran.outcome.error.as_ref().unwrap().error_type,
                "SyntaxError"
            );
            continue;
        }
        ok(&ran);
        assert_eq!(ran.out("n", "result").py_repr(), repr, "{expression}");
        assert_eq!(ran.out("n", "type"), Value::str(type_name), "{expression}");
    }
}

#[test]
fn eval_expression_reads_its_variables_dict_first() {
    let ran = run_node(
        "EvalExpressionNode",
        json!({"expression": "a * b + len(variables)", "variables": {"a": 6, "b": 7}}),
        json!({"a": 1000}),
    );
    ok(&ran);
    assert_eq!(ran.out("n", "result"), Value::Int(44));
    // Names missing from the dict come from the workflow.
    let ran = run_node(
        "EvalExpressionNode",
        json!({"expression": "a + c", "variables": {"a": 1}}),
        json!({"c": 2}),
    );
    assert_eq!(ran.out("n", "result"), Value::Int(3));
}

#[test]
fn eval_expression_errors_fail_the_node() {
    let ran = one("EvalExpressionNode", json!({"expression": "1 / 0"}));
    let err = ran.outcome.error.as_ref().unwrap();
    assert_eq!(err.error_type, "ZeroDivisionError");
    assert_eq!(err.node_id, "n");
    let ran = one(
        "EvalExpressionNode",
        json!({"expression": "undefined_name + 1"}),
    );
    assert_eq!(ran.outcome.error.as_ref().unwrap().error_type, "NameError");
    let ran = one(
        "EvalExpressionNode",
        json!({"expression": "__import__('os')"}),
    );
    assert!(!ran.outcome.success());
    let ran = one("EvalExpressionNode", json!({"expression": "  "}));
    assert_eq!(ran.error(), "n (EvalExpressionNode): expression is empty");
}

#[test]
fn python_reports_parse() {
    assert_eq!(
        parse_python_report(r#"{"ok": true, "result": {"a": [1, 2.5, null]}}"#).unwrap(),
        PythonReport::Ok(crate::nodes::testing::v(r#"{"a": [1, 2.5, null]}"#))
    );
    assert_eq!(
        parse_python_report(r#"{"ok": false, "type": "KeyError", "message": "'k'", "line": 3}"#)
            .unwrap(),
        PythonReport::Raised {
            kind: "KeyError".into(),
            message: "'k'".into(),
            line: Some(3)
        }
    );
    // A type name that is not an identifier cannot become the error kind.
    let PythonReport::Raised { kind, .. } =
        parse_python_report(r#"{"ok": false, "type": "a b", "message": "x", "line": null}"#)
            .unwrap()
    else {
        panic!("not raised")
    };
    assert_eq!(kind, "RuntimeError");
    assert!(parse_python_report("[1]").is_err());
    assert!(parse_python_report("{").is_err());
}

#[test]
fn powershell_blocklist_matches_whole_words_only() {
    for (script, hit) in [
        ("Remove-Item C:\\x -Recurse", Some("Remove-Item")),
        ("get-childitem | remove-item", Some("Remove-Item")),
        ("$s = iex $code", Some("iex")),
        (
            "(New-Object Net.WebClient).DownloadString('u')",
            Some("DownloadString"),
        ),
        ("Get-Item x | Remove-ItemSafely", None),
        ("$complex = 1; Write-Output $complex", None),
        ("Write-Output 'hello'", None),
    ] {
        assert_eq!(powershell_blocked(script), hit, "{script}");
    }
    let text = powershell_file_text("Write-Output 1", true);
    assert!(text.starts_with('\u{feff}'));
    assert!(text.contains("LanguageMode = 'ConstrainedLanguage'\nWrite-Output 1\n"));
    assert!(!powershell_file_text("x", false).contains("ConstrainedLanguage"));
}

#[test]
fn javascript_error_lines() {
    let stderr = "/tmp/x/[script].js:2\nundefinedThing();\n^\n\nReferenceError: undefinedThing is not defined\n    at Object.<anonymous> ([script].js:2:1)\n\nNode.js v20.20.2\n";
    assert_eq!(
        js_error_line(stderr),
        ": ReferenceError: undefinedThing is not defined"
    );
    assert_eq!(js_error_line("something odd\n\n"), ": something odd");
    assert_eq!(js_error_line(""), "");
}

#[test]
fn scratch_dirs_are_private_and_removed() {
    let dir = ScratchDir::new().unwrap();
    let path = dir.path().to_path_buf();
    let file = dir.write("a.txt", b"x").unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(dir);
    assert!(!path.exists());
}
