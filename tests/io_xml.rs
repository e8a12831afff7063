//! XML nodes through the real engine: upstream batches 2.2 and 7.4 (original and corrected copy)
//! and our own workflows under `tests/workflows/io/xml/`, each file test in its own temp dir.

use casare_robot::engine::runner::{self, RunOptions, RunStatus};
use casare_robot::engine::{load_str, CancelToken, LoadError, Value};
use std::path::{Path, PathBuf};

mod common;
use common::{Logs, Ran};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn upstream(name: &str) -> Option<PathBuf> {
    let path = manifest()
        .join("../shared/fixtures/casare/workflows/node_tests")
        .join(name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("note: {} not found; original skipped", path.display());
        None
    }
}

fn ours(name: &str) -> PathBuf {
    manifest().join("tests/workflows/io/xml").join(name)
}

fn load(path: &Path) -> Result<casare_robot::engine::Workflow, LoadError> {
    load_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Run a workflow file with relative paths resolving in `work_dir`.
fn run_in(path: &Path, work_dir: &Path) -> Ran {
    let wf = load(path).unwrap_or_else(|e| panic!("{} did not load: {e}", path.display()));
    let mut opts = RunOptions {
        seed: Some(1),
        ..RunOptions::default()
    };
    opts.safety.work_dir = Some(work_dir.to_path_buf());
    let mut logs = Logs::default();
    let outcome = runner::run(
        &wf,
        Default::default(),
        &opts,
        &CancelToken::new(),
        &mut logs,
    );
    Ran {
        outcome,
        logs: logs.0,
    }
}

fn run(path: &Path) -> (Ran, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (run_in(path, dir.path()), dir)
}

#[test]
fn batch_2_2_xml_original_runs() {
    let Some(path) = upstream("batch_2_2_xml.json") else {
        return;
    };
    let (ran, _dir) = run(&path);
    assert!(ran.outcome.success(), "{}", ran.error());
    assert_eq!(
        ran.logs,
        ["[log_result] XML parsing test passed! Data: <root><item>Test</item></root>"]
    );
}

#[test]
fn batch_7_4_xml_original_is_rejected_at_xpath_query() {
    let Some(path) = upstream("batch_7_4_xml.json") else {
        return;
    };
    let err = load(&path).unwrap_err();
    let problems: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        problems,
        [
            "xpath_query (XPathQueryNode): required input \"xpath\" has no value (set config \"xpath\" or connect a data edge); config has keys this node does not read: query",
            "get_xml_element (GetXMLElementNode): required input \"tag_name\" has no value (set config \"tag_name\" or connect a data edge); config has keys this node does not read: path",
            "get_xml_attr (GetXMLAttributeNode): required input \"attribute_name\" has no value (set config \"attribute_name\" or connect a data edge); config has keys this node does not read: attribute",
            "xml_to_json (XMLToJsonNode): required input \"xml_string\" has no value (set config \"xml_string\" or connect a data edge)",
            "json_to_xml (JsonToXMLNode): required input \"json_data\" has no value (set config \"json_data\" or connect a data edge)",
        ]
    );
    assert!(err.unsupported_types.is_empty());
}

#[test]
fn batch_7_4_xml_corrected_gives_the_reference_values() {
    let (ran, _dir) = run(&manifest().join("tests/workflows/batch_7_4_xml_fixed.json"));
    assert!(ran.outcome.success(), "{}", ran.error());
    assert_eq!(ran.outcome.executed_nodes, 8);
    assert_eq!(ran.out("parse_xml", "root_tag"), Value::str("root"));
    assert_eq!(ran.out("parse_xml", "child_count"), Value::Int(1));
    assert_eq!(
        ran.json("xpath_query", "results"),
        r#"[{"tag":"item","text":"Test","attrib":{"id":"1"},"tail":""}]"#
    );
    assert_eq!(ran.out("xpath_query", "count"), Value::Int(1));
    assert_eq!(ran.out("xpath_query", "first_text"), Value::str("Test"));
    assert_eq!(ran.out("get_xml_element", "text"), Value::str("Test"));
    assert_eq!(ran.json("get_xml_element", "attributes"), r#"{"id":"1"}"#);
    assert_eq!(ran.out("get_xml_element", "found"), Value::Bool(true));
    assert_eq!(ran.out("get_xml_attr", "value"), Value::str("1"));
    assert_eq!(ran.out("get_xml_attr", "found"), Value::Bool(true));
    assert_eq!(
        ran.json("xml_to_json", "json_data"),
        r##"{"root":{"item":{"@attributes":{"id":"1"},"#text":"Test"}}}"##
    );
    // Upstream nests the converted dict (whose key is already "root") under root_tag "root".
    assert_eq!(
        ran.out("json_to_xml", "xml_string"),
        Value::str(
            "<?xml version=\"1.0\" ?>\n<root>\n  <root>\n    <item id=\"1\">Test</item>\n  </root>\n</root>"
        )
    );
    assert_eq!(ran.logs, ["[log_result] XML nodes tested!"]);
}

#[test]
fn xml_query_workflow() {
    let (ran, _dir) = run(&ours("xml_query.json"));
    assert!(ran.outcome.success(), "{}", ran.error());
    assert_eq!(
        ran.logs,
        ["[log_result] catalog has 3 books; english: 2 (Dune); last: b3; Candide is b2; note: classic; second: {'id': 'b2', 'lang': 'fr'} with 2 children; Emma is 'en'"]
    );
    assert_eq!(
        ran.json("english", "results"),
        r#"[{"tag":"title","text":"Dune","attrib":{},"tail":""},{"tag":"title","text":"Emma","attrib":{},"tail":""}]"#
    );
    assert_eq!(
        ran.out("notes", "results").py_repr(),
        "[{'tag': '{urn:extra}note', 'text': 'classic', 'attrib': {}, 'tail': ''}]"
    );
    assert_eq!(ran.out("second", "child_count"), Value::Int(2));
}

#[test]
fn xml_json_round_trip_workflow() {
    let (ran, _dir) = run(&ours("xml_json_round_trip.json"));
    assert!(ran.outcome.success(), "{}", ran.error());
    let xml = r#"<order id="42"><line sku="A-1" qty="2">Widget</line><line sku="B-7" qty="1">Gadget</line><note>leave at door</note></order>"#;
    assert_eq!(ran.out("to_xml", "xml_string"), Value::str(xml));
    assert_eq!(
        ran.out("again", "json_data"),
        ran.out("to_json", "json_data")
    );
    assert_eq!(
        ran.out("pretty", "xml_string"),
        Value::str("<?xml version=\"1.0\" ?>\n<summary>\n  <lines>1</lines>\n  <lines>2</lines>\n  <ok>True</ok>\n</summary>")
    );
    assert_eq!(
        ran.logs,
        [format!("[log_result] note: leave at door; first line: {{'@attributes': {{'sku': 'A-1', 'qty': '2'}}, '#text': 'Widget'}}; xml: {xml}")]
    );
}

#[test]
fn xml_file_workflows_with_unix_and_windows_paths() {
    for (file, bytes_of_cafe) in [
        ("xml_files_unix_paths.json", "Café".as_bytes().to_vec()),
        ("xml_files_windows_paths.json", b"Caf\xe9".to_vec()),
    ] {
        let (ran, dir) = run(&ours(file));
        assert!(ran.outcome.success(), "{file}: {}", ran.error());
        assert_eq!(
            ran.logs,
            ["[log_result] orders: 2 totals, first 3.5; order 2 is 2 fields; first id 1"],
            "{file}"
        );
        let written = dir.path().join("reports").join("2024").join("orders.xml");
        let out = ran.out("write", "file_path");
        assert_eq!(Path::new(out.as_str().unwrap()), written, "{file}");
        let bytes = std::fs::read(&written).unwrap();
        let declaration: &[u8] = if file.contains("windows") {
            b"<?xml version=\"1.0\" encoding=\"cp1252\"?>\n<orders>\n"
        } else {
            b"<?xml version=\"1.0\" ?>\n<orders>\n"
        };
        assert!(bytes.starts_with(declaration), "{file}");
        assert!(
            bytes
                .windows(bytes_of_cafe.len())
                .any(|w| w == bytes_of_cafe),
            "{file}"
        );
        assert_eq!(ran.out("read", "root_tag"), Value::str("orders"));
        let text = ran.out("read", "xml_string");
        assert!(
            text.as_str().unwrap().contains("<item>Café crème</item>"),
            "{file}"
        );
        assert_eq!(ran.out("second", "attributes").py_repr(), "{'id': '2'}");
    }
}

#[test]
fn invalid_xml_fails_with_line_and_column() {
    let (ran, _dir) = run(&ours("xml_invalid.json"));
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert_eq!(
        ran.error(),
        "parse (ParseXMLNode): XML parse error: expected 'total' tag, not 'invoice': line 2, column 12 (input starts with '<invoice>\\n  <total>10</invoice>')"
    );
    assert!(ran.logs.is_empty());
}

#[test]
fn billion_laughs_file_is_refused() {
    let (ran, dir) = run(&ours("xml_billion_laughs.json"));
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert!(dir.path().join("lol.xml").is_file());
    assert_eq!(
        ran.error(),
        format!(
            "read (ReadXMLFileNode): XML parse error: the document declares the entity 'a' in its DOCTYPE; entity declarations are refused (they enable entity-expansion 'billion laughs' and external entity (XXE) attacks), as upstream's defusedxml refuses them (file '{}')",
            dir.path().join("lol.xml").display()
        )
    );
}

#[test]
fn file_nodes_stay_inside_allowed_paths() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("x.xml");
    let wf = format!(
        r#"{{"nodes": {{"w": {{"node_id": "w", "node_type": "WriteXMLFileNode",
            "config": {{"file_path": {}, "xml_string": "<r/>"}}}}}}, "connections": []}}"#,
        serde_json::to_string(&target.display().to_string()).unwrap()
    );
    let wf = load_str(&wf).unwrap();
    let mut opts = RunOptions::default();
    opts.safety.work_dir = Some(dir.path().to_path_buf());
    opts.safety.allowed_paths = vec![dir.path().to_path_buf()];
    let outcome = runner::run(
        &wf,
        Default::default(),
        &opts,
        &CancelToken::new(),
        &mut Logs::default(),
    );
    let err = outcome.error_text().unwrap();
    assert!(
        err.starts_with("w (WriteXMLFileNode): refused path '")
            && err.contains("it is outside the allowed paths"),
        "{err}"
    );
    assert!(!target.exists());
}
