//! Tests of the `database` family on real SQLite files in a temporary directory.

use super::super::testing::*;
use crate::engine::load_str;
use serde_json::{json, Value as Json};

/// A linear flow: `c` connects to `db`, every later node gets `c.connection` on `connection`.
fn flow(db: &str, nodes: &[(&str, &str, Json)]) -> String {
    let mut all = vec![("c", "DatabaseConnectNode", json!({"database": db}))];
    all.extend(nodes.iter().map(|(i, t, c)| (*i, *t, c.clone())));
    let mut edges: Vec<(&str, &str, &str, &str)> = all
        .windows(2)
        .map(|w| ex(w[0].0, "exec_out", w[1].0))
        .collect();
    for (id, ty, _) in nodes {
        if crate::nodes::lookup(ty).is_some_and(|d| d.param("connection").is_some()) {
            edges.push(("c", "connection", id, "connection"));
        }
    }
    graph(&all, &edges)
}

fn run_flow(db: &str, nodes: &[(&str, &str, Json)]) -> Ran {
    run_json(&flow(db, nodes))
}

fn tmp_db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db").display().to_string();
    (dir, path)
}

/// Rows of `sql` read with a separate connection (what another program would see).
fn rows(path: &str, sql: &str) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let out = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    out
}

const CREATE: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)";

/// Create the table, begin a transaction and insert `name` (left uncommitted).
fn in_transaction(name: &str) -> Vec<(&'static str, &'static str, Json)> {
    vec![
        ("mk", "ExecuteNonQueryNode", json!({"query": CREATE})),
        ("b", "BeginTransactionNode", json!({})),
        (
            "ins",
            "ExecuteNonQueryNode",
            json!({"query": "INSERT INTO t(name) VALUES(?)", "parameters": [name]}),
        ),
    ]
}

#[test]
fn connect_non_query_and_query_round_trip_with_positional_parameters() {
    let (_dir, db) = tmp_db();
    let ran = run_flow(
        &db,
        &[
            ("mk", "ExecuteNonQueryNode", json!({"query": CREATE})),
            (
                "ins",
                "ExecuteNonQueryNode",
                json!({"query": "INSERT INTO t(name, score) VALUES(?, ?)", "parameters": ["ann", 1.5]}),
            ),
            (
                "ins2",
                "ExecuteNonQueryNode",
                json!({"query": "INSERT INTO t(name, score) VALUES(?, ?)", "parameters": ["bob", null]}),
            ),
            (
                "q",
                "ExecuteQueryNode",
                json!({"query": "SELECT id, name, score FROM t WHERE id >= ? ORDER BY id", "parameters": [1]}),
            ),
        ],
    );
    ok(&ran);
    assert_eq!(ran.out("c", "connection").py_str(), "<Database t.db>");
    assert_eq!(ran.out("c", "success"), v("true"));
    assert_eq!(ran.out("ins", "rows_affected"), v("1"));
    assert_eq!(ran.out("ins", "last_insert_id"), v("1"));
    assert_eq!(ran.out("ins2", "last_insert_id"), v("2"));
    assert_eq!(
        ran.out("q", "results"),
        v(r#"[{"id": 1, "name": "ann", "score": 1.5}, {"id": 2, "name": "bob", "score": null}]"#)
    );
    assert_eq!(ran.out("q", "row_count"), v("2"));
    assert_eq!(ran.out("q", "columns"), v(r#"["id", "name", "score"]"#));
    assert_eq!(ran.out("q", "error"), v(r#""""#));
    // Auto-commit: another connection sees the rows.
    assert_eq!(
        rows(&db, "SELECT id, name FROM t ORDER BY id"),
        [(1, "ann".into()), (2, "bob".into())]
    );
}

#[test]
fn an_empty_database_is_in_memory() {
    let ran = run_chain(&[("c", "DatabaseConnectNode", json!({}))]);
    ok(&ran);
    assert_eq!(ran.out("c", "connection").py_str(), "<Database memory>");
}

#[test]
fn commit_makes_rows_visible_and_rollback_discards_them() {
    let (_dir, db) = tmp_db();
    let ins = |id: &str| {
        (
            id.to_string(),
            json!({"query": "INSERT INTO t(name) VALUES(?)", "parameters": [id]}),
        )
    };
    let (i1, c1) = ins("kept");
    let (i2, c2) = ins("dropped");
    let ran = run_flow(
        &db,
        &[
            ("mk", "ExecuteNonQueryNode", json!({"query": CREATE})),
            ("b1", "BeginTransactionNode", json!({})),
            (&i1, "ExecuteNonQueryNode", c1),
            ("cm", "CommitTransactionNode", json!({})),
            ("b2", "BeginTransactionNode", json!({})),
            (&i2, "ExecuteNonQueryNode", c2),
            ("rb", "RollbackTransactionNode", json!({})),
        ],
    );
    ok(&ran);
    assert_eq!(ran.out("cm", "connection").py_str(), "<Database t.db>");
    assert_eq!(ran.out("rb", "success"), v("true"));
    assert_eq!(rows(&db, "SELECT id, name FROM t"), [(1, "kept".into())]);
}

#[test]
fn transaction_misuse_is_a_clear_error() {
    let (_dir, db) = tmp_db();
    let ran = run_flow(&db, &[("cm", "CommitTransactionNode", json!({}))]);
    assert_eq!(
        ran.error(),
        "cm (CommitTransactionNode): no transaction is open on <Database t.db>"
    );
    let ran = run_flow(
        &db,
        &[
            ("b1", "BeginTransactionNode", json!({})),
            ("b2", "BeginTransactionNode", json!({})),
        ],
    );
    assert_eq!(
        ran.error(),
        "b2 (BeginTransactionNode): a transaction is already open on <Database t.db>"
    );
}

#[test]
fn a_transaction_open_at_the_end_of_the_run_is_rolled_back() {
    let (_dir, db) = tmp_db();
    let ran = run_flow(&db, &[in_transaction("lost")].concat());
    ok(&ran);
    assert!(rows(&db, "SELECT id, name FROM t").is_empty());
}

#[test]
fn close_ends_the_connection_and_later_use_names_the_closer() {
    let (_dir, db) = tmp_db();
    let ran = run_flow(
        &db,
        &[
            in_transaction("x"),
            vec![
                ("close", "CloseDatabaseNode", json!({})),
                ("q", "ExecuteQueryNode", json!({"query": "SELECT 1"})),
            ],
        ]
        .concat(),
    );
    assert_eq!(
        ran.error(),
        "q (ExecuteQueryNode): <Database t.db> was closed by node close"
    );
    assert_eq!(ran.out("close", "success"), v("true"));
    assert!(
        ran.logs.iter().any(|l| l.contains("rolled back")),
        "closing with an open transaction says it rolled back: {:?}",
        ran.logs
    );
    assert!(rows(&db, "SELECT id, name FROM t").is_empty());
}

#[test]
fn batch_runs_statements_and_sums_rows() {
    let (_dir, db) = tmp_db();
    let ran = run_flow(
        &db,
        &[(
            "b",
            "ExecuteBatchNode",
            json!({"statements": [CREATE, "INSERT INTO t(name) VALUES('a')", "INSERT INTO t(name) SELECT name FROM t"]}),
        )],
    );
    ok(&ran);
    assert_eq!(ran.out("b", "total_rows_affected"), v("2"));
    assert_eq!(ran.out("b", "success"), v("true"));
    let results = ran.out("b", "results");
    assert_eq!(results.as_list().map(<[_]>::len), Some(3));
    assert_eq!(
        results.as_list().unwrap()[1].py_repr(),
        "{'statement': \"INSERT INTO t(name) VALUES('a')\", 'success': True, 'rows_affected': 1, 'error': None}"
    );

    let bad = json!({"statements": [CREATE, "INSERT INTO nope VALUES(1)", "INSERT INTO t(name) VALUES('z')"]});
    let ran = run_flow(
        &db.replace("t.db", "u.db"),
        &[("b", "ExecuteBatchNode", bad.clone())],
    );
    assert!(
        ran.error()
            .starts_with("b (ExecuteBatchNode): statement 2 of the batch on <Database u.db>: no such table: nope"),
        "{}",
        ran.error()
    );
    let mut go_on = bad;
    go_on["stop_on_error"] = json!(false);
    let ran = run_flow(
        &db.replace("t.db", "w.db"),
        &[("b", "ExecuteBatchNode", go_on)],
    );
    ok(&ran);
    assert_eq!(ran.out("b", "success"), v("false"));
    assert_eq!(ran.out("b", "total_rows_affected"), v("1"));
    assert!(
        ran.out("b", "error")
            .py_str()
            .starts_with("statement 2: no such table"),
        "{}",
        ran.out("b", "error").py_str()
    );
}

#[test]
fn table_exists_and_columns() {
    let (_dir, db) = tmp_db();
    let ran = run_flow(
        &db,
        &[
            ("mk", "ExecuteNonQueryNode", json!({"query": CREATE})),
            ("yes", "TableExistsNode", json!({"table_name": "t"})),
            ("no", "TableExistsNode", json!({"table_name": "nope"})),
            ("cols", "GetTableColumnsNode", json!({"table_name": "t"})),
        ],
    );
    ok(&ran);
    assert_eq!(ran.out("yes", "exists"), v("true"));
    assert_eq!(ran.out("no", "exists"), v("false"));
    assert_eq!(
        ran.out("cols", "column_names"),
        v(r#"["id", "name", "score"]"#)
    );
    assert_eq!(
        ran.out("cols", "columns").as_list().unwrap()[1],
        v(
            r#"{"name": "name", "type": "TEXT", "nullable": false, "default": null, "primary_key": false}"#
        )
    );
    let ran = run_flow(
        &db,
        &[("cols", "GetTableColumnsNode", json!({"table_name": "nope"}))],
    );
    assert_eq!(
        ran.error(),
        "cols (GetTableColumnsNode): table 'nope' does not exist"
    );
}

#[test]
fn bad_inputs_are_named() {
    let (_dir, db) = tmp_db();
    let ran = run_flow(&db, &[("q", "ExecuteQueryNode", json!({"query": ""}))]);
    assert_eq!(
        ran.error(),
        "q (ExecuteQueryNode): required input 'query' has no value"
    );
    let ran = run_flow(
        &db,
        &[(
            "q",
            "ExecuteQueryNode",
            json!({"query": "SELECT ?", "parameters": [[1, 2]]}),
        )],
    );
    assert_eq!(
        ran.error(),
        "q (ExecuteQueryNode): parameter 1 is a list; only None, bool, int, float and str can be bound"
    );
    let ran = run_flow(
        &db,
        &[("q", "ExecuteNonQueryNode", json!({"query": "SELECT 1"}))],
    );
    assert!(
        ran.error().contains("use ExecuteQueryNode"),
        "{}",
        ran.error()
    );
    // A connection input that is not a handle (e.g. text) is a type error naming the input.
    let ran = run_chain(&[(
        "q",
        "ExecuteQueryNode",
        json!({"connection": "<Database t.db>", "query": "SELECT 1"}),
    )]);
    assert!(
        ran.error()
            .starts_with("q (ExecuteQueryNode): input 'connection' must be a database connection"),
        "{}",
        ran.error()
    );
}

#[test]
fn other_database_types_are_refused_at_load_or_at_run_time() {
    for db_type in ["postgresql", "mysql"] {
        let err = load_str(&chain(&[(
            "c",
            "DatabaseConnectNode",
            json!({"db_type": db_type, "host": "db"}),
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!(
                "db_type {db_type} is not supported by this robot yet; sqlite is"
            )),
            "{err}"
        );
    }
    let ran = run_node(
        "DatabaseConnectNode",
        json!({"db_type": "{{kind}}"}),
        json!({"kind": "postgresql"}),
    );
    assert_eq!(
        ran.error(),
        "n (DatabaseConnectNode): db_type postgresql is not supported by this robot yet; sqlite is"
    );
}

#[test]
fn the_database_path_follows_the_file_safety_rules() {
    let ran = run_chain(&[(
        "c",
        "DatabaseConnectNode",
        json!({"database": "data/../../etc/x.db"}),
    )]);
    assert!(ran.error().contains("'..'"), "{}", ran.error());
}

#[test]
fn a_handle_in_a_variable_and_a_template_prints_its_label() {
    let (_dir, db) = tmp_db();
    let ran = run_flow(
        &db,
        &[
            (
                "set",
                "SetVariableNode",
                json!({"variable_name": "conn", "value": "{{c.connection}}"}),
            ),
            ("log", "LogNode", json!({"message": "using {{conn}}"})),
        ],
    );
    ok(&ran);
    assert_eq!(ran.var("conn").py_str(), "<Database t.db>");
    assert!(
        ran.logs.iter().any(|l| l.contains("using <Database t.db>")),
        "{:?}",
        ran.logs
    );
    let json = ran.outcome.to_json().to_string();
    assert!(json.contains(r#""conn":"<Database t.db>""#), "{json}");
}
