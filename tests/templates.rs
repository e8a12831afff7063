//! CasareRPA project templates (`$schema_version` 2.0.0, `base_workflow` + `default_variables`):
//! every upstream template loads or is refused only for the node families this robot does not
//! run yet (each refusal naming the family); `blank_project` runs through `run`, `validate` and
//! a daemon job of the real binary; `api_webhooks` runs against a local HTTP server.

mod support;

use casare_robot::engine::model::load_json;
use casare_robot::engine::runner::{self, RunOptions};
use casare_robot::engine::safety::Safety;
use casare_robot::engine::{CancelToken, Value};
use casare_robot::link::protocol::Dialect;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::robot::{isolated_command, Robot};
use support::FakeOrchestrator;

const WAIT: Duration = Duration::from_secs(15);

fn ours(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workflows/templates")
        .join(name)
}

fn read(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_upstream_template_loads_or_names_the_missing_families() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/casare/workflows/templates");
    if !dir.is_dir() {
        eprintln!(
            "note: {} not found; upstream templates skipped",
            dir.display()
        );
        return;
    }
    // (template, [(unsupported type, its CasareRPA family)]); empty = loads.
    let expected: &[(&str, &[(&str, &str)])] = &[
        ("api_webhooks", &[]),
        ("blank_project", &[]),
        ("data_etl", &[]),
        (
            "desktop_automation",
            &[
                ("FolderPickerDialogNode", "system"),
                ("SystemNotificationNode", "system"),
            ],
        ),
        (
            "email_documents",
            &[
                ("GmailGetAttachmentNode", "google"),
                ("GmailListEmailsNode", "google"),
                ("GmailMarkAsReadNode", "google"),
                ("ReadPDFTextNode", "pdf"),
            ],
        ),
        (
            "google_workspace",
            &[
                ("GmailListEmailsNode", "google"),
                ("SheetsAppendRowNode", "google"),
                ("SheetsGetRangeNode", "google"),
            ],
        ),
        ("notifications", &[("TelegramSendMessageNode", "messaging")]),
        (
            "office_automation",
            &[
                ("ExcelCloseNode", "desktop"),
                ("ExcelGetRangeNode", "desktop"),
                ("ExcelOpenNode", "desktop"),
                ("WordOpenNode", "desktop"),
                ("WordReplaceTextNode", "desktop"),
            ],
        ),
        (
            "web_scraping",
            &[
                ("CloseBrowserNode", "browser"),
                ("ExtractTextNode", "data"),
                ("GoToURLNode", "browser"),
                ("LaunchBrowserNode", "browser"),
                ("WaitForElementNode", "wait"),
            ],
        ),
    ];
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("templates dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (_, missing) = expected
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("template {name} has no expectation"));
        seen += 1;
        match load_json(&read(&path)) {
            Ok(wf) => {
                assert!(missing.is_empty(), "{name} loaded; expected refusal");
                assert!(wf.total_nodes >= 2, "{name}");
            }
            Err(err) => {
                let types: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
                assert_eq!(err.unsupported_types, types, "{name}: {err}");
                for p in &err.problems {
                    let ty = p.node_type.as_deref().unwrap_or_default();
                    let family = missing
                        .iter()
                        .find(|(t, _)| *t == ty)
                        .map(|(_, f)| *f)
                        .unwrap_or_else(|| panic!("{name}: unexpected problem {p}"));
                    assert!(
                        p.message.contains(&format!(
                            "a CasareRPA {family} node this robot does not run yet"
                        )),
                        "{name}: {p}"
                    );
                }
            }
        }
    }
    assert_eq!(seen, expected.len());
}

#[test]
fn blank_project_validates_and_runs_with_the_binary() {
    let path = ours("blank_project.json");
    let out = isolated_command()
        .args(["validate", path.to_str().unwrap()])
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("is valid (2 nodes, 1 edges)"), "{stdout}");

    let out = isolated_command()
        .args(["run", path.to_str().unwrap(), "--json", "--quiet"])
        .output()
        .expect("binary runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["executed_nodes"], 2, "{v}");
    assert_eq!(v["node_executions"][1]["node_id"], "EndNode_001", "{v}");
}

#[test]
fn a_daemon_job_in_the_project_format_completes() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = Robot::start(json!({"orchestrator_url": fake.url(), "ws_dialect": "casare"}));
    fake.wait_for("register", WAIT)
        .expect("the robot registers");
    let mut project = read(&ours("api_webhooks.json"));
    // The same project with a node this robot runs offline in place of the HTTP chain.
    project["base_workflow"] = read(&ours("blank_project.json"))["base_workflow"].clone();
    let nodes = project["base_workflow"]["nodes"].as_array_mut().unwrap();
    nodes.push(json!({"node_id": "Set_001", "node_type": "SetVariableNode",
                      "config": {"variable_name": "url", "value": "{{api_base_url}}{{api_endpoint}}"}}));
    let edges = project["base_workflow"]["connections"]
        .as_array_mut()
        .unwrap();
    edges[0]["to_node"] = json!("Set_001");
    edges.push(json!({"from_node": "Set_001", "from_port": "out", "to_node": "EndNode_001", "to_port": "in"}));
    fake.assign_job("proj-1", project, json!({"api_endpoint": "/v2/x"}), None);
    let done = fake
        .wait_until(WAIT, |m| {
            m["job_id"] == "proj-1" && m["type"] == "job_complete"
        })
        .expect("job_complete");
    assert_eq!(done["result"]["success"], true, "{done}");
    assert_eq!(
        done["result"]["outputs"]["url"], "https://api.example.com/v2/x",
        "default_variables apply and job variables override them: {done}"
    );
}

/// One request as the local API saw it: method, path, headers.
type Seen = (String, String, Vec<(String, String)>);

/// A local API: answers every request with `body` (JSON) and hands the request's method, path
/// and headers to the test.
struct Api {
    url: String,
    requests: crossbeam_channel::Receiver<Seen>,
    _thread: std::thread::JoinHandle<()>,
}

impl Api {
    fn start(body: serde_json::Value, n_requests: usize) -> Api {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = server.server_addr().to_ip().expect("ip").port();
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::spawn(move || {
            for _ in 0..n_requests {
                let Ok(Some(req)) = server.recv_timeout(WAIT) else {
                    return;
                };
                let headers = req
                    .headers()
                    .iter()
                    .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
                    .collect();
                let _ = tx.send((
                    req.method().as_str().to_string(),
                    req.url().to_string(),
                    headers,
                ));
                let header = tiny_http::Header::from_bytes("Content-Type", "application/json")
                    .expect("header");
                let _ = req.respond(
                    tiny_http::Response::from_string(body.to_string()).with_header(header),
                );
            }
        });
        Api {
            url: format!("http://127.0.0.1:{port}"),
            requests: rx,
            _thread: thread,
        }
    }
}

fn run_project(path: &Path, inputs: serde_json::Value) -> runner::RunOutcome {
    let wf =
        load_json(&read(path)).unwrap_or_else(|e| panic!("{} did not load: {e}", path.display()));
    let Value::Dict(inputs) = Value::from_json(&inputs) else {
        panic!("inputs must be an object")
    };
    let opts = RunOptions {
        safety: Safety {
            allow_private_network: true,
            ..Safety::default()
        },
        ..RunOptions::default()
    };
    runner::run(
        &wf,
        (*inputs).clone(),
        &opts,
        &CancelToken::new(),
        &mut runner::NoObserver,
    )
}

#[test]
fn api_webhooks_completes_against_a_local_server() {
    let api = Api::start(json!({"data": {"items": [1, 2, 3]}, "count": 3}), 2);
    let dir = tempfile::tempdir().unwrap();

    // As upstream ships it: it completes, but its wrong config keys leave the parse empty,
    // which the parse node's outputs say.
    let out_file = dir.path().join("upstream.json");
    let outcome = run_project(
        &ours("api_webhooks.json"),
        json!({"api_base_url": api.url, "output_file": out_file.to_str().unwrap()}),
    );
    assert!(outcome.success(), "{:?}", outcome.error);
    let (method, path, _) = api.requests.recv_timeout(WAIT).expect("the request");
    assert_eq!((method.as_str(), path.as_str()), ("GET", "/v1/data"));
    let parse = &outcome.node_outputs["ParseJsonResponseNode_001"];
    let parse = parse.as_dict().expect("outputs");
    assert_eq!(parse["success"], Value::Bool(false));
    assert!(
        parse["error"]
            .py_str()
            .contains("input 'json_data' is empty"),
        "{:?}",
        parse["error"]
    );
    assert!(out_file.exists());

    // The corrected copy sends the headers and writes the parsed data.
    let out_file = dir.path().join("fixed.json");
    let outcome = run_project(
        &ours("api_webhooks_fixed.json"),
        json!({"api_base_url": api.url, "output_file": out_file.to_str().unwrap(),
               "api_key": "k-123"}),
    );
    assert!(outcome.success(), "{:?}", outcome.error);
    let (_, path, headers) = api.requests.recv_timeout(WAIT).expect("the request");
    assert_eq!(path, "/v1/data");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("Authorization").as_deref(), Some("Bearer k-123"));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("written")).unwrap();
    assert_eq!(written, json!({"items": [1, 2, 3]}));
}
