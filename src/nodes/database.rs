//! The `database` family, SQLite only: connect, query, non-query, batch, transactions, close,
//! table introspection.
//!
//! `DatabaseConnectNode` opens a SQLite file (the `database` path goes through the run's file
//! safety rules; empty means `:memory:`) as a run resource (`engine::resources`) and puts its
//! handle, `<Database orders.db>`, on port `connection`; every other node takes that handle on
//! its `connection` input. Statements auto-commit unless `BeginTransactionNode` began a
//! transaction; a transaction still open when the connection closes (the run ended, or
//! `CloseDatabaseNode`) is rolled back, and the log says so. Parameters bind positionally
//! (`?`). `db_type` `postgresql`/`mysql` are refused: at load when the value is literal, at run
//! time otherwise. Failures are node errors (a Try catches them); `success` is true and `error`
//! empty on the outputs of a node that succeeded.

use crate::engine::model::CompiledNode;
use crate::engine::node::{opt, req, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::resources::{CloseReason, Handle, Resource};
use crate::engine::value::{Dict, Value};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

/// The resource kind of a connection (its handle prints `<Database name>`).
pub const KIND: &str = "Database";

const WHAT: &str = "a database connection (the 'connection' output of DatabaseConnectNode)";

const CONNECTION: &[crate::engine::node::ParamDef] = &[req("connection")];
const STATEMENT: &[crate::engine::node::ParamDef] = &[
    req("connection"),
    opt("query", Lit::Str("")),
    opt("parameters", Lit::Null),
    opt("retry_count", Lit::Int(0)),
    opt("retry_interval", Lit::Int(1000)),
];
const TABLE: &[crate::engine::node::ParamDef] = &[req("connection"), req("table_name")];

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "DatabaseConnectNode",
        &[
            opt("credential_name", Lit::Str("")),
            opt("db_type", Lit::Str("sqlite")),
            opt("host", Lit::Str("localhost")),
            opt("port", Lit::Int(5432)),
            opt("database", Lit::Str("")),
            opt("username", Lit::Str("")),
            opt("password", Lit::Str("")),
            opt("connection_string", Lit::Str("")),
            opt("timeout", Lit::Float(30.0)),
            opt("ssl", Lit::Bool(false)),
            opt("ssl_ca", Lit::Str("")),
            opt("pool_size", Lit::Int(5)),
            opt("auto_commit", Lit::Bool(true)),
            opt("charset", Lit::Str("utf8mb4")),
            opt("retry_count", Lit::Int(0)),
            opt("retry_interval", Lit::Int(2000)),
        ],
        &["connection", "success", "error"],
        connect_node,
    ),
    NodeDef::plain(
        "ExecuteQueryNode",
        STATEMENT,
        &["results", "row_count", "columns", "success", "error"],
        query_node,
    ),
    NodeDef::plain(
        "ExecuteNonQueryNode",
        STATEMENT,
        &["rows_affected", "last_insert_id", "success", "error"],
        non_query_node,
    ),
    NodeDef::plain(
        "ExecuteBatchNode",
        &[
            req("connection"),
            opt("statements", Lit::Null),
            opt("stop_on_error", Lit::Bool(true)),
            opt("retry_count", Lit::Int(0)),
            opt("retry_interval", Lit::Int(1000)),
        ],
        &["results", "total_rows_affected", "success", "error"],
        batch_node,
    ),
    NodeDef::plain(
        "BeginTransactionNode",
        CONNECTION,
        &["connection", "success", "error"],
        begin_node,
    ),
    NodeDef::plain(
        "CommitTransactionNode",
        CONNECTION,
        &["connection", "success", "error"],
        commit_node,
    ),
    NodeDef::plain(
        "RollbackTransactionNode",
        CONNECTION,
        &["connection", "success", "error"],
        rollback_node,
    ),
    NodeDef::plain(
        "CloseDatabaseNode",
        CONNECTION,
        &["success", "error"],
        close_node,
    ),
    NodeDef::plain(
        "TableExistsNode",
        TABLE,
        &["exists", "success", "error"],
        table_exists_node,
    ),
    NodeDef::plain(
        "GetTableColumnsNode",
        TABLE,
        &["columns", "column_names", "success", "error"],
        table_columns_node,
    ),
];

/// A SQLite connection owned by a run.
pub struct SqliteDb {
    conn: Option<Connection>,
}

impl SqliteDb {
    fn conn(&self) -> Result<&Connection, NodeError> {
        self.conn
            .as_ref()
            .ok_or_else(|| NodeError::value("the connection is closed"))
    }

    /// True while a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| !c.is_autocommit())
    }
}

impl Resource for SqliteDb {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn close(&mut self, why: CloseReason) -> Result<Option<String>, String> {
        let Some(conn) = self.conn.take() else {
            return Ok(None);
        };
        let note = if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")
                .map_err(|e| format!("rolling back the open transaction: {e}"))?;
            Some(match why {
                CloseReason::RunEnded => {
                    "the run ended with a transaction open; it was rolled back".to_string()
                }
                CloseReason::ByNode => {
                    "closed with a transaction open; it was rolled back".to_string()
                }
            })
        } else {
            None
        };
        conn.close().map_err(|(_, e)| e.to_string())?;
        Ok(note)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The refusal of a database type this robot does not run.
fn unsupported_db_type(db_type: &str) -> Option<String> {
    match db_type.trim().to_ascii_lowercase().as_str() {
        "sqlite" | "" => None,
        "postgresql" | "mysql" => Some(format!(
            "db_type {} is not supported by this robot yet; sqlite is",
            db_type.trim()
        )),
        _ => Some(format!(
            "db_type {:?} is not a database type (sqlite, postgresql, mysql); this robot runs sqlite",
            db_type.trim()
        )),
    }
}

/// Load-time check: a literal `db_type` other than sqlite is refused before the job runs.
pub fn load_check(node: &CompiledNode) -> Option<String> {
    if node.def.node_type != "DatabaseConnectNode" {
        return None;
    }
    let raw = &node.config_entry("db_type")?.raw;
    let text = raw.as_str()?;
    if crate::engine::template::has_refs(raw) {
        return None;
    }
    unsupported_db_type(text)
}

fn sql_error(what: &str, e: rusqlite::Error) -> NodeError {
    NodeError::new("DatabaseError", format!("{what}: {e}"))
}

fn connect_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let db_type = ctx.param_str("db_type");
    if let Some(refusal) = unsupported_db_type(&db_type) {
        return Err(NodeError::value(refusal));
    }
    let raw = ctx.param_str("database");
    let (conn, name) = if raw.trim().is_empty() || raw.trim() == ":memory:" {
        let conn = Connection::open_in_memory().map_err(|e| sql_error("opening :memory:", e))?;
        (conn, "memory".to_string())
    } else {
        let path = ctx.path_param("database")?;
        let conn = Connection::open(&path)
            .map_err(|e| sql_error(&format!("opening {}", path.display()), e))?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        (conn, name)
    };
    let timeout = ctx.param_f64("timeout")?;
    if timeout.is_finite() && timeout > 0.0 {
        conn.busy_timeout(Duration::from_secs_f64(timeout.min(3600.0)))
            .map_err(|e| sql_error("setting the busy timeout", e))?;
    }
    let handle = ctx.open_resource(&name, Box::new(SqliteDb { conn: Some(conn) }));
    ctx.set_output("connection", handle);
    succeeded(ctx);
    Ok(Flow::Next)
}

fn succeeded(ctx: &mut NodeCtx<'_>) {
    ctx.set_output("success", Value::Bool(true));
    ctx.set_output("error", Value::str(""));
}

/// The connection handle on input `connection`.
fn handle(ctx: &NodeCtx<'_>) -> Result<Arc<Handle>, NodeError> {
    ctx.handle_param("connection", KIND, WHAT)
}

/// Run `f` on the live connection of input `connection`.
fn with_db<R>(
    ctx: &NodeCtx<'_>,
    f: impl FnOnce(&mut SqliteDb, &Handle) -> Result<R, NodeError>,
) -> Result<R, NodeError> {
    let h = handle(ctx)?;
    ctx.resources().with::<SqliteDb, _>(&h, |db| f(db, &h))?
}

/// The `query` text, which must not be empty.
fn query_text(ctx: &NodeCtx<'_>) -> Result<String, NodeError> {
    let q = ctx.param_str("query");
    if q.trim().is_empty() {
        return Err(NodeError::value("required input 'query' has no value"));
    }
    Ok(q)
}

/// The `parameters` list converted for binding.
fn bind_values(ctx: &NodeCtx<'_>) -> Result<Vec<SqlValue>, NodeError> {
    let list = ctx.param_list("parameters")?;
    list.iter()
        .enumerate()
        .map(|(i, v)| to_sql(v).ok_or_else(|| bad_bind(i, v)))
        .collect()
}

fn bad_bind(i: usize, v: &Value) -> NodeError {
    NodeError::type_error(format!(
        "parameter {} is a {}; only None, bool, int, float and str can be bound",
        i + 1,
        v.type_name()
    ))
}

fn to_sql(v: &Value) -> Option<SqlValue> {
    Some(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Float(f) => SqlValue::Real(*f),
        Value::Str(s) => SqlValue::Text(s.to_string()),
        Value::List(_) | Value::Dict(_) | Value::Handle(_) => return None,
    })
}

fn from_sql(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => Value::str(String::from_utf8_lossy(t)),
        // Blobs have no value type here: they come back as lowercase hex text.
        ValueRef::Blob(b) => Value::str(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

/// Rows of a query: column names and one dict per row.
fn select(
    conn: &Connection,
    sql: &str,
    params: &[SqlValue],
) -> Result<(Vec<String>, Vec<Value>), rusqlite::Error> {
    let mut stmt = conn.prepare(sql)?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut d = Dict::with_capacity(columns.len());
        for (i, c) in columns.iter().enumerate() {
            d.insert(c.clone(), from_sql(row.get_ref(i)?));
        }
        out.push(Value::dict(d));
    }
    Ok((columns, out))
}

fn query_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let sql = query_text(ctx)?;
    let params = bind_values(ctx)?;
    let (columns, rows) = with_db(ctx, |db, h| {
        select(db.conn()?, &sql, &params).map_err(|e| sql_error(&format!("query on {h}"), e))
    })?;
    ctx.set_output("row_count", Value::Int(rows.len() as i64));
    ctx.set_output("results", Value::list(rows));
    ctx.set_output(
        "columns",
        Value::list(columns.into_iter().map(Value::from).collect()),
    );
    succeeded(ctx);
    Ok(Flow::Next)
}

/// Execute one statement that returns no rows: (rows affected, last insert id).
fn execute(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<(i64, i64), String> {
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let n = stmt
        .execute(rusqlite::params_from_iter(params))
        .map_err(|e| match e {
            rusqlite::Error::ExecuteReturnedResults => {
                "the statement returns rows; use ExecuteQueryNode for it".to_string()
            }
            other => other.to_string(),
        })?;
    Ok((n as i64, conn.last_insert_rowid()))
}

fn non_query_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let sql = query_text(ctx)?;
    let params = bind_values(ctx)?;
    let (n, id) = with_db(ctx, |db, h| {
        execute(db.conn()?, &sql, &params)
            .map_err(|e| NodeError::new("DatabaseError", format!("statement on {h}: {e}")))
    })?;
    ctx.set_output("rows_affected", Value::Int(n));
    ctx.set_output("last_insert_id", Value::Int(id));
    succeeded(ctx);
    Ok(Flow::Next)
}

fn batch_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let statements = ctx.param_list("statements")?;
    let texts: Vec<String> = statements
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Value::Str(t) => Ok(t.to_string()),
            other => Err(NodeError::type_error(format!(
                "statement {} is a {}, not SQL text",
                i + 1,
                other.type_name()
            ))),
        })
        .collect::<Result<_, _>>()?;
    let stop_on_error = ctx.param_bool("stop_on_error");
    let (results, total, first_error) = with_db(ctx, |db, h| {
        let conn = db.conn()?;
        let mut results = Vec::with_capacity(texts.len());
        let (mut total, mut first_error) = (0i64, None::<String>);
        for (i, sql) in texts.iter().enumerate() {
            match execute(conn, sql, &[]) {
                Ok((n, _)) => {
                    total += n;
                    results.push(batch_row(sql, Ok(n)));
                }
                Err(e) if stop_on_error => {
                    return Err(NodeError::new(
                        "DatabaseError",
                        format!("statement {} of the batch on {h}: {e}", i + 1),
                    ))
                }
                Err(e) => {
                    let text = format!("statement {}: {e}", i + 1);
                    first_error.get_or_insert(text);
                    results.push(batch_row(sql, Err(e)));
                }
            }
        }
        Ok((results, total, first_error))
    })?;
    ctx.set_output("results", Value::list(results));
    ctx.set_output("total_rows_affected", Value::Int(total));
    ctx.set_output("success", Value::Bool(first_error.is_none()));
    ctx.set_output("error", Value::str(first_error.unwrap_or_default()));
    Ok(Flow::Next)
}

fn batch_row(sql: &str, outcome: Result<i64, String>) -> Value {
    let (ok, n, err) = match outcome {
        Ok(n) => (true, Value::Int(n), Value::Null),
        Err(e) => (false, Value::Int(0), Value::str(e)),
    };
    Value::dict_from([
        ("statement", Value::str(sql)),
        ("success", Value::Bool(ok)),
        ("rows_affected", n),
        ("error", err),
    ])
}

/// Begin, commit or roll back: `want_open` is whether a transaction must already be open.
fn transaction(ctx: &mut NodeCtx<'_>, sql: &str, want_open: bool) -> Result<Flow, NodeError> {
    let h = handle(ctx)?;
    ctx.resources().with::<SqliteDb, _>(&h, |db| {
        if db.in_transaction() != want_open {
            return Err(NodeError::value(if want_open {
                format!("no transaction is open on {h}")
            } else {
                format!("a transaction is already open on {h}")
            }));
        }
        db.conn()?
            .execute_batch(sql)
            .map_err(|e| sql_error(&format!("{sql} on {h}"), e))
    })??;
    ctx.set_output("connection", Value::Handle(h));
    succeeded(ctx);
    Ok(Flow::Next)
}

fn begin_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    transaction(ctx, "BEGIN", false)
}

fn commit_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    transaction(ctx, "COMMIT", true)
}

fn rollback_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    transaction(ctx, "ROLLBACK", true)
}

fn close_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let h = handle(ctx)?;
    let by = ctx.node_id().to_string();
    if let Some(note) = ctx.resources().close(&h, &by)? {
        ctx.log(log::Level::Warn, format!("{h}: {note}"));
    }
    succeeded(ctx);
    Ok(Flow::Next)
}

fn table_name(ctx: &NodeCtx<'_>) -> Result<String, NodeError> {
    let name = ctx.param_str("table_name");
    if name.trim().is_empty() {
        return Err(NodeError::value("required input 'table_name' has no value"));
    }
    Ok(name)
}

fn table_exists_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let name = table_name(ctx)?;
    let exists = with_db(ctx, |db, h| {
        db.conn()?
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1",
                [&name],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| sql_error(&format!("looking up table '{name}' on {h}"), e))
    })?;
    ctx.set_output("exists", Value::Bool(exists > 0));
    succeeded(ctx);
    Ok(Flow::Next)
}

fn table_columns_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let name = table_name(ctx)?;
    let (_, rows) = with_db(ctx, |db, h| {
        select(
            db.conn()?,
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)",
            &[SqlValue::Text(name.clone())],
        )
        .map_err(|e| sql_error(&format!("reading the columns of '{name}' on {h}"), e))
    })?;
    if rows.is_empty() {
        return Err(NodeError::value(format!("table '{name}' does not exist")));
    }
    let columns: Vec<Value> = rows.iter().map(column_info).collect();
    let names: Vec<Value> = rows
        .iter()
        .filter_map(|r| r.as_dict().and_then(|d| d.get("name")).cloned())
        .collect();
    ctx.set_output("columns", Value::list(columns));
    ctx.set_output("column_names", Value::list(names));
    succeeded(ctx);
    Ok(Flow::Next)
}

/// One `pragma_table_info` row as `{name, type, nullable, default, primary_key}`.
fn column_info(row: &Value) -> Value {
    let get = |k: &str| {
        row.as_dict()
            .and_then(|d| d.get(k))
            .cloned()
            .unwrap_or_default()
    };
    Value::dict_from([
        ("name", get("name")),
        ("type", get("type")),
        ("nullable", Value::Bool(get("notnull").as_i64() == Some(0))),
        ("default", get("dflt_value")),
        (
            "primary_key",
            Value::Bool(get("pk").as_i64().unwrap_or(0) > 0),
        ),
    ])
}

#[cfg(test)]
#[path = "database_tests.rs"]
mod tests;
