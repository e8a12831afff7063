//! HTTP nodes: `HttpRequestNode`, `HttpSuperNode` (requests, download, upload, auth headers) and
//! `HttpDownloadFileNode`, on blocking ureq 3 through [`client`]; the offline helpers
//! `SetHttpHeadersNode` and `ParseJsonResponseNode` are in [`helpers`].
//!
//! Semantics follow upstream (`nodes/http/*.py`): parameters from the data edge, else config,
//! else the `@properties` default; a response of any status is a node **success** with outputs
//! `response_body, response_json, status_code, response_headers, success (2xx), error ("HTTP
//! 404")`; transport errors, refused addresses and timeouts are node failures. Every address is
//! checked with the robot's safety rules, also after each redirect (see [`client`]).
//!
//! Retries (the two layers do not multiply): the node itself retries *responses* with status
//! 429/502/503/504 and request timeouts, up to `retry_count` times, with exponential backoff from
//! `retry_delay` (capped at 30 s) or the server's `Retry-After` seconds (capped at 30 s), sleeping
//! with `ctx.sleep` (cancellable, never past the node deadline; a wait that would pass it returns
//! the last response instead). Other errors (connection refused or reset, garbage responses) are
//! node errors, which the runner's per-node retry retries, reading the same `retry_count` /
//! `retry_delay` from the config (`engine::runner::node_retries`). The runner never retries a
//! `TimeoutError`, so each kind of failure is retried by exactly one layer. Only a run that
//! mixes both (503s, then a refused connection) can compound, bounded by `(retry_count + 1)²`.
//!
//! Deviations from upstream, and why:
//! - `params` (query) is sent by every request (upstream's newest `HttpRequestNode` dropped it).
//! - `headers`/`params` text that is not a JSON object is an error (upstream silently used `{}`,
//!   which drops e.g. an `Authorization` header without a word).
//! - A dict `body` with `content_type` `application/x-www-form-urlencoded` is sent form-encoded
//!   (upstream sent JSON whatever the content type said).
//! - `proxy` is refused when set: environment proxies are ignored for determinism, and a proxy
//!   would hide the real target from the address check.
//! - `response_headers` names are canonical (`Content-Type`), repeated headers joined by `", "`.
//! - Response text: `response_encoding`, else the `charset` of `Content-Type`, else UTF-8; invalid
//!   UTF-8 is decoded lossily with a warning (upstream raised). Only UTF-8/ASCII and Latin-1 are
//!   known encodings.
//! - Bodies over 100 MB are refused (downloads: 10 GB, streamed to a temporary file in the target
//!   directory, then renamed, so no partial file is ever visible under the target name).
//! - Non-2xx downloads fail (`HttpDownloadFileNode` and the super node's "Download File"), as
//!   upstream; upstream required exactly 200.
//! - Redirects: at most `max_redirects` (default 10, hard cap 20); `Authorization`/`Cookie` are
//!   dropped when the host changes; 303 (and 301/302 after POST) continue as GET without body.
//! - The super node also accepts `retry_delay`, `follow_redirects` and `max_redirects`, and the
//!   bare action names `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `Download`, `Upload`, `Auth`
//!   (case-insensitive), as the fixtures use them.

pub mod client;
pub mod helpers;

use crate::engine::node::{opt, req, Flow, Lit, NodeCtx, NodeDef, NodeError, NodeKind, EXEC_OUT};
use crate::engine::value::{Dict, Value};
use client::{Reply, Request, BODY_LIMIT, DOWNLOAD_LIMIT};
use log::Level;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Statuses retried by the node itself.
const RETRY_STATUSES: [u16; 4] = [429, 502, 503, 504];
/// Cap on one backoff or `Retry-After` wait, in seconds.
const MAX_WAIT_SECS: f64 = 30.0;

const RESPONSE_OUTPUTS: &[&str] = &[
    "response_body",
    "response_json",
    "status_code",
    "response_headers",
    "success",
    "error",
];

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "HttpRequestNode",
        &[
            req("url"),
            opt("method", Lit::Str("GET")),
            opt("headers", Lit::Null),
            opt("body", Lit::Str("")),
            opt("params", Lit::Null),
            opt("timeout", Lit::Float(30.0)),
            opt("verify_ssl", Lit::Bool(true)),
            opt("follow_redirects", Lit::Bool(true)),
            opt("max_redirects", Lit::Int(10)),
            opt("content_type", Lit::Str("application/json")),
            opt("proxy", Lit::Str("")),
            opt("retry_count", Lit::Int(0)),
            opt("retry_delay", Lit::Float(1.0)),
            opt("response_encoding", Lit::Str("")),
        ],
        RESPONSE_OUTPUTS,
        http_request,
    ),
    NodeDef {
        node_type: "HttpSuperNode",
        params: &[
            opt("action", Lit::Str("GET Request")),
            opt("url", Lit::Str("")),
            opt("headers", Lit::Null),
            opt("params", Lit::Null),
            opt("body", Lit::Str("")),
            opt("content_type", Lit::Str("application/json")),
            opt("timeout", Lit::Float(30.0)),
            opt("retry_count", Lit::Int(0)),
            opt("retry_delay", Lit::Float(1.0)),
            opt("verify_ssl", Lit::Bool(true)),
            opt("follow_redirects", Lit::Bool(true)),
            opt("max_redirects", Lit::Int(10)),
            opt("save_path", Lit::Str("")),
            opt("create_dirs", Lit::Bool(true)),
            opt("overwrite", Lit::Bool(false)),
            opt("file_path", Lit::Str("")),
            opt("field_name", Lit::Str("file")),
            opt("extra_fields", Lit::Null),
            opt("auth_type", Lit::Str("bearer")),
            opt("token", Lit::Str("")),
            opt("username", Lit::Str("")),
            opt("password", Lit::Str("")),
            opt("header_name", Lit::Str("X-API-Key")),
        ],
        outputs: &[
            "response_body",
            "response_json",
            "status_code",
            "response_headers",
            "success",
            "error",
            "file_path",
            "file_size",
            "auth_headers",
        ],
        routes: EXEC_OUT,
        kind: NodeKind::Plain,
        dynamic_ports: true,
        run: http_super,
    },
    NodeDef::plain(
        "HttpDownloadFileNode",
        &[
            req("url"),
            req("save_path"),
            opt("headers", Lit::Null),
            opt("timeout", Lit::Float(300.0)),
            opt("overwrite", Lit::Bool(true)),
            opt("verify_ssl", Lit::Bool(true)),
            opt("proxy", Lit::Str("")),
            opt("retry_count", Lit::Int(0)),
            opt("retry_delay", Lit::Float(2.0)),
            opt("chunk_size", Lit::Int(8192)),
            opt("follow_redirects", Lit::Bool(true)),
            opt("max_redirects", Lit::Int(10)),
        ],
        &["file_path", "file_size", "success", "error"],
        http_download_file,
    ),
];

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// How a text body is treated.
#[derive(Clone, Copy, PartialEq)]
enum TextBody {
    /// Sent as is (`HttpRequestNode`).
    Raw,
    /// Parsed as JSON first when it is JSON (`HttpSuperNode`).
    JsonIfParses,
}

/// Timeout and retry settings of one node run.
struct Attempts {
    timeout: f64,
    retry_count: u32,
    retry_delay: f64,
}

fn attempts(ctx: &NodeCtx<'_>) -> Result<Attempts, NodeError> {
    let timeout = ctx.param_f64("timeout")?;
    if !timeout.is_finite() || timeout <= 0.0 {
        return Err(NodeError::value(format!(
            "input 'timeout' must be a positive number of seconds, got {}",
            ctx.param("timeout").py_repr()
        )));
    }
    let retry_count = ctx.param_opt_i64("retry_count")?.unwrap_or(0).clamp(0, 100) as u32;
    let retry_delay = match ctx.param("retry_delay") {
        Value::Null => 1.0,
        _ => ctx.param_f64("retry_delay")?,
    };
    let retry_delay = if retry_delay.is_finite() && retry_delay >= 0.0 {
        retry_delay.min(MAX_WAIT_SECS)
    } else {
        return Err(NodeError::value(format!(
            "input 'retry_delay' must be a non-negative number of seconds, got {retry_delay}"
        )));
    };
    Ok(Attempts {
        timeout,
        retry_count,
        retry_delay,
    })
}

/// A dict parameter as name/value pairs: a dict, JSON object text, or empty/None. List values
/// repeat the name (query strings, form fields).
fn pairs_param(ctx: &NodeCtx<'_>, name: &str) -> Result<Vec<(String, String)>, NodeError> {
    let dict = match ctx.param(name) {
        Value::Null => return Ok(Vec::new()),
        Value::Str(s) if s.trim().is_empty() => return Ok(Vec::new()),
        Value::Str(s) => match Value::parse_json(&s) {
            Ok(Value::Dict(d)) => d,
            _ => {
                return Err(NodeError::value(format!(
                    "input '{name}' must be a dictionary or JSON object text, got {}",
                    Value::Str(s).py_repr()
                )))
            }
        },
        Value::Dict(d) => d,
        other => {
            return Err(NodeError::type_error(format!(
                "input '{name}' must be a dictionary, got {} {}",
                other.type_name(),
                other.py_repr()
            )))
        }
    };
    Ok(dict_pairs(&dict))
}

fn dict_pairs(dict: &Dict) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in dict.iter() {
        match v {
            Value::Null => {}
            Value::List(items) => {
                for item in items.iter().filter(|i| !i.is_null()) {
                    out.push((k.clone(), item.py_str()));
                }
            }
            other => out.push((k.clone(), other.py_str())),
        }
    }
    out
}

fn headers_param(ctx: &NodeCtx<'_>) -> Result<Vec<(String, String)>, NodeError> {
    let headers = pairs_param(ctx, "headers")?;
    for (name, value) in &headers {
        let bad_name = name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if bad_name {
            return Err(NodeError::value(format!(
                "invalid header name {}",
                Value::str(name).py_repr()
            )));
        }
        if value.contains(['\r', '\n', '\0']) {
            // The value is not shown: it may be a secret.
            return Err(NodeError::value(format!(
                "the value of header '{name}' contains a line break or NUL"
            )));
        }
    }
    Ok(headers)
}

fn has_header(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
}

fn refuse_proxy(ctx: &NodeCtx<'_>) -> Result<(), NodeError> {
    let proxy = ctx.param_str("proxy");
    if proxy.trim().is_empty() {
        Ok(())
    } else {
        Err(NodeError::value(
            "input 'proxy' is not supported by this robot (requests go directly to the checked address)",
        ))
    }
}

/// `url` with the query pairs appended (any `#fragment` dropped: it is never sent).
fn url_with_query(url: &str, query: &[(String, String)]) -> String {
    let url = url.trim();
    let url = url.split_once('#').map_or(url, |(u, _)| u);
    if query.is_empty() {
        return url.to_string();
    }
    let encoded: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                client::encode_component(k),
                client::encode_component(v)
            )
        })
        .collect();
    let sep = if url.contains('?') {
        if url.ends_with('?') || url.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    format!("{url}{sep}{}", encoded.join("&"))
}

/// The URL as logs and errors show it: no query string, no user info.
fn url_for_log(url: &str) -> String {
    match client::parse_url(url) {
        Ok((uri, host, _)) => {
            let port = uri.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{host}{port}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.path()
            )
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or("").to_string(),
    }
}

/// The request body, adding a `Content-Type` header when none was given.
fn body_bytes(
    ctx: &NodeCtx<'_>,
    headers: &mut Vec<(String, String)>,
    style: TextBody,
) -> Result<Option<Vec<u8>>, NodeError> {
    let body = ctx.param("body");
    if !body.truthy() {
        return Ok(None);
    }
    let content_type = ctx.param_str("content_type");
    let body = match (&body, style) {
        (Value::Str(s), TextBody::JsonIfParses) => match Value::parse_json(s) {
            Ok(parsed) if !parsed.is_null() => parsed,
            _ => body,
        },
        _ => body,
    };
    let is_form = content_type
        .to_ascii_lowercase()
        .contains("application/x-www-form-urlencoded");
    let (bytes, ctype) = match &body {
        Value::Dict(d) if is_form => {
            let encoded: Vec<String> = dict_pairs(d)
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        client::encode_component(k),
                        client::encode_component(v)
                    )
                })
                .collect();
            (encoded.join("&").into_bytes(), content_type.clone())
        }
        Value::Dict(_) | Value::List(_) => (
            body.to_py_json(None, false, true).into_bytes(),
            "application/json".to_string(),
        ),
        other => (other.py_str().into_bytes(), content_type.clone()),
    };
    if bytes.len() as u64 > BODY_LIMIT {
        return Err(NodeError::value(format!(
            "the request body is larger than the limit of {BODY_LIMIT} bytes"
        )));
    }
    if !ctype.trim().is_empty() && !has_header(headers, "content-type") {
        headers.push(("Content-Type".into(), ctype));
    }
    Ok(Some(bytes))
}

fn base_request(
    ctx: &NodeCtx<'_>,
    method: &str,
    url: &str,
    headers: Vec<(String, String)>,
) -> Result<Request, NodeError> {
    let max_redirects = ctx.param_opt_i64("max_redirects")?.unwrap_or(10).max(0);
    Ok(Request {
        method: method.to_string(),
        url: url.to_string(),
        headers,
        body: None,
        verify_ssl: ctx.param_bool("verify_ssl"),
        follow_redirects: ctx.param_bool("follow_redirects"),
        max_redirects: max_redirects.min(i64::from(u32::MAX)) as u32,
        body_limit: BODY_LIMIT,
        save_to: None,
    })
}

fn required_url(ctx: &NodeCtx<'_>) -> Result<String, NodeError> {
    let url = ctx.param_str("url");
    if url.trim().is_empty() {
        return Err(NodeError::value("URL is required (input 'url' is empty)"));
    }
    Ok(url.trim().to_string())
}

// ---------------------------------------------------------------------------------------------
// Sending with retries
// ---------------------------------------------------------------------------------------------

fn backoff(delay: f64, attempt: u32) -> f64 {
    (delay * 2f64.powi(attempt.saturating_sub(1).min(30) as i32)).min(MAX_WAIT_SECS)
}

/// `Retry-After` in seconds (the HTTP-date form is not used: backoff applies then).
fn retry_after(reply: &Reply) -> Option<f64> {
    reply
        .header("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s.min(MAX_WAIT_SECS))
}

fn temp_path_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let tmp = format!(
        ".{name}.{}-{:08x}.part",
        std::process::id(),
        fastrand::u32(..)
    );
    target.with_file_name(tmp)
}

/// Send `req` with the node's retries. With `save_to`, every attempt streams a 2xx body into a
/// fresh temporary file next to that path; the reply's `saved` says it is there (`req.save_to`
/// of the returned request names it).
fn send_with_retries(
    ctx: &mut NodeCtx<'_>,
    mut req: Request,
    att: &Attempts,
    save_to: Option<&Path>,
) -> Result<(Reply, Option<PathBuf>), NodeError> {
    let shown = format!("{} {}", req.method, url_for_log(&req.url));
    let total = att.retry_count + 1;
    let mut attempt: u32 = 1;
    loop {
        req.save_to = save_to.map(temp_path_for);
        let started = Instant::now();
        let by_param = started + Duration::from_secs_f64(att.timeout.min(1e9));
        let budget_end = by_param.min(ctx.deadline());
        let result = client::send(
            req.clone(),
            &ctx.options().safety,
            budget_end,
            ctx.cancel_token(),
        );
        let retry_wait = match &result {
            Ok(reply) if RETRY_STATUSES.contains(&reply.status) => Some((
                retry_after(reply).unwrap_or_else(|| backoff(att.retry_delay, attempt)),
                format!("HTTP {}", reply.status),
            )),
            Err(e) if e.kind == "TimeoutError" => {
                Some((backoff(att.retry_delay, attempt), "timeout".to_string()))
            }
            _ => None,
        };
        if let (Some((wait, why)), true) = (retry_wait, attempt < total) {
            let wait_for = Duration::from_secs_f64(wait);
            // Only retry when the wait and a little of the next attempt fit before the deadline.
            if Instant::now() + wait_for + Duration::from_millis(50) < ctx.deadline() {
                if let Ok(reply) = &result {
                    if reply.saved.is_some() {
                        if let Some(p) = &req.save_to {
                            let _ = std::fs::remove_file(p);
                        }
                    }
                }
                ctx.log(
                    Level::Warn,
                    format!(
                        "{why} for {shown} (attempt {attempt}/{total}); retrying in {wait:.2} s"
                    ),
                );
                ctx.sleep(wait_for)?;
                attempt += 1;
                continue;
            }
            ctx.log(
                Level::Warn,
                format!("{why} for {shown}: no time left to retry before the node deadline"),
            );
        }
        return match result {
            Ok(reply) => {
                let saved = req.save_to.take().filter(|_| reply.saved.is_some());
                Ok((reply, saved))
            }
            Err(e) if e.is_cancelled() => Err(e),
            Err(e) if e.kind == "TimeoutError" => {
                let why = if budget_end < by_param {
                    format!(
                        "at the node deadline, after {:.1} s",
                        started.elapsed().as_secs_f64()
                    )
                } else {
                    format!("after {} seconds", Value::Float(att.timeout).py_str())
                };
                Err(NodeError::timeout(format!(
                    "{shown} timed out {why} ({})",
                    e.message
                )))
            }
            Err(e) => Err(NodeError::new(e.kind, format!("{shown}: {}", e.message))),
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Response outputs
// ---------------------------------------------------------------------------------------------

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// Decode the body: `encoding`, else the charset of `Content-Type`, else UTF-8.
fn decode_body(ctx: &mut NodeCtx<'_>, reply: &Reply, encoding: &str) -> Result<String, NodeError> {
    let from_header = reply
        .header("content-type")
        .and_then(|ct| {
            ct.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
                .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase())
        })
        .unwrap_or_default();
    let explicit = !encoding.trim().is_empty();
    let enc = if explicit {
        encoding.trim().to_ascii_lowercase()
    } else {
        from_header
    };
    let enc = enc.replace('_', "-");
    match enc.as_str() {
        "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "l1" => Ok(latin1(&reply.body)),
        "" | "utf-8" | "utf8" | "ascii" | "us-ascii" => Ok(utf8_or_lossy(ctx, reply)),
        other if explicit => Err(NodeError::value(format!(
            "unsupported response_encoding '{other}' (supported: utf-8, ascii, latin-1)"
        ))),
        _ => Ok(utf8_or_lossy(ctx, reply)),
    }
}

fn utf8_or_lossy(ctx: &mut NodeCtx<'_>, reply: &Reply) -> String {
    match std::str::from_utf8(&reply.body) {
        Ok(s) => s.to_string(),
        Err(_) => {
            ctx.log(
                Level::Warn,
                "the response body is not valid UTF-8; invalid bytes were replaced",
            );
            String::from_utf8_lossy(&reply.body).into_owned()
        }
    }
}

fn headers_value(reply: &Reply) -> Value {
    Value::dict_from(
        reply
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::str(v))),
    )
}

fn set_response_outputs(
    ctx: &mut NodeCtx<'_>,
    reply: &Reply,
    encoding: &str,
) -> Result<(), NodeError> {
    let text = decode_body(ctx, reply, encoding)?;
    let json = Value::parse_json(&text).unwrap_or(Value::Null);
    let success = (200..300).contains(&reply.status);
    ctx.set_output("response_body", Value::str(&text));
    ctx.set_output("response_json", json);
    ctx.set_output("status_code", Value::Int(i64::from(reply.status)));
    ctx.set_output("response_headers", headers_value(reply));
    ctx.set_output("success", Value::Bool(success));
    ctx.set_output(
        "error",
        Value::str(if success {
            String::new()
        } else {
            format!("HTTP {}", reply.status)
        }),
    );
    Ok(())
}

/// A request with a method; the reply goes to the standard response outputs.
fn do_request(
    ctx: &mut NodeCtx<'_>,
    method: &str,
    style: TextBody,
    encoding: &str,
) -> Result<Flow, NodeError> {
    let url = required_url(ctx)?;
    let mut headers = headers_param(ctx)?;
    let query = pairs_param(ctx, "params")?;
    let att = attempts(ctx)?;
    let body = if matches!(method, "POST" | "PUT" | "PATCH") {
        body_bytes(ctx, &mut headers, style)?
    } else {
        None
    };
    let mut req = base_request(ctx, method, &url_with_query(&url, &query), headers)?;
    req.body = body;
    let (reply, _) = send_with_retries(ctx, req, &att, None)?;
    ctx.log(
        Level::Info,
        format!("HTTP {method} {} -> {}", url_for_log(&url), reply.status),
    );
    set_response_outputs(ctx, &reply, encoding)?;
    Ok(Flow::Next)
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// `HttpRequestNode`: one request with `method` (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS).
/// POST/PUT/PATCH send `body`: a dict or list as JSON, other values as text with `content_type`.
/// Any status is a success of the node; `success` says whether it was 2xx.
fn http_request(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    refuse_proxy(ctx)?;
    let method = ctx.param_str("method").trim().to_ascii_uppercase();
    let method = if method.is_empty() {
        "GET".into()
    } else {
        method
    };
    if !METHODS.contains(&method.as_str()) {
        return Err(NodeError::value(format!(
            "unsupported HTTP method '{method}' (expected one of {})",
            METHODS.join(", ")
        )));
    }
    let encoding = ctx.param_str("response_encoding");
    do_request(ctx, &method, TextBody::Raw, &encoding)
}

/// The super node's actions.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    Method(&'static str),
    Download,
    Upload,
    Auth,
}

const ACTIONS: &str = "GET Request, POST Request, PUT Request, PATCH Request, DELETE Request, \
                       Download File, Upload File, Configure Auth";

fn parse_action(raw: &str) -> Option<Action> {
    let a = raw.trim().to_ascii_lowercase();
    let a = a.split_whitespace().collect::<Vec<_>>().join(" ");
    let bare = a.strip_suffix(" request").unwrap_or(&a);
    Some(match bare {
        "get" => Action::Method("GET"),
        "post" => Action::Method("POST"),
        "put" => Action::Method("PUT"),
        "patch" => Action::Method("PATCH"),
        "delete" => Action::Method("DELETE"),
        "download file" | "download" => Action::Download,
        "upload file" | "upload" => Action::Upload,
        "configure auth" | "auth" => Action::Auth,
        _ => return None,
    })
}

/// `HttpSuperNode`: `action` picks a request method ("GET Request", ..., or bare "GET"), "Download
/// File", "Upload File" (multipart) or "Configure Auth" (builds `auth_headers`). A text `body`
/// that parses as JSON is sent as JSON.
fn http_super(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let raw = ctx.param_str("action");
    let action = parse_action(&raw).ok_or_else(|| {
        NodeError::value(format!(
            "unknown action '{raw}' (expected one of {ACTIONS})"
        ))
    })?;
    match action {
        Action::Method(m) => do_request(ctx, m, TextBody::JsonIfParses, ""),
        Action::Download => {
            let create_dirs = ctx.param_bool("create_dirs");
            let overwrite = ctx.param_bool("overwrite");
            download(ctx, create_dirs, overwrite, true)
        }
        Action::Upload => upload(ctx),
        Action::Auth => configure_auth(ctx),
    }
}

/// `HttpDownloadFileNode`: GET `url` into `save_path` (parent directories created), streaming to
/// a temporary file that is renamed into place only when the whole body arrived. A non-2xx
/// status fails the node. `overwrite` false refuses an existing file.
fn http_download_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    refuse_proxy(ctx)?;
    let overwrite = ctx.param_bool("overwrite");
    download(ctx, true, overwrite, false)
}

fn download(
    ctx: &mut NodeCtx<'_>,
    create_dirs: bool,
    overwrite: bool,
    with_status: bool,
) -> Result<Flow, NodeError> {
    let url = required_url(ctx)?;
    if ctx.param_str("save_path").trim().is_empty() {
        return Err(NodeError::value(
            "save path is required (input 'save_path' is empty)",
        ));
    }
    let path = ctx.path_param("save_path")?;
    let headers = headers_param(ctx)?;
    let att = attempts(ctx)?;
    if path.is_dir() {
        return Err(NodeError::new(
            "IsADirectoryError",
            format!("save path '{}' is a directory", path.display()),
        ));
    }
    if path.exists() && !overwrite {
        return Err(NodeError::new(
            "FileExistsError",
            format!("file already exists: {}", path.display()),
        ));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if create_dirs {
            std::fs::create_dir_all(parent).map_err(|e| {
                NodeError::new(
                    "OSError",
                    format!("cannot create directory '{}': {e}", parent.display()),
                )
            })?;
        } else if !parent.is_dir() {
            return Err(NodeError::new(
                "FileNotFoundError",
                format!("directory does not exist: {}", parent.display()),
            ));
        }
    }
    let mut req = base_request(ctx, "GET", &url, headers)?;
    req.body_limit = DOWNLOAD_LIMIT;
    let (reply, temp) = send_with_retries(ctx, req, &att, Some(&path))?;
    let shown = url_for_log(&url);
    let Some(temp) = temp else {
        return Err(NodeError::value(format!(
            "download of {shown} failed: HTTP {}",
            reply.status
        )));
    };
    let size = reply.saved.unwrap_or(0);
    if let Err(e) = place_file(&temp, &path, overwrite) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    ctx.log(
        Level::Info,
        format!("downloaded {shown} -> {} ({size} bytes)", path.display()),
    );
    ctx.set_output("file_path", Value::str(path.to_string_lossy()));
    ctx.set_output("file_size", Value::Int(size.min(i64::MAX as u64) as i64));
    if with_status {
        ctx.set_output("status_code", Value::Int(i64::from(reply.status)));
    }
    ctx.set_output("success", Value::Bool(true));
    ctx.set_output("error", Value::str(""));
    Ok(Flow::Next)
}

/// Move the finished temporary file to its name; without `overwrite`, never replace a file that
/// appeared meanwhile (a hard link fails if the name exists).
fn place_file(temp: &Path, path: &Path, overwrite: bool) -> Result<(), NodeError> {
    let os = |e: std::io::Error| {
        NodeError::new(
            "OSError",
            format!("cannot move the download to '{}': {e}", path.display()),
        )
    };
    if overwrite {
        return std::fs::rename(temp, path).map_err(os);
    }
    match std::fs::hard_link(temp, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(temp);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(NodeError::new(
            "FileExistsError",
            format!("file already exists: {}", path.display()),
        )),
        Err(_) if !path.exists() => std::fs::rename(temp, path).map_err(os),
        Err(e) => Err(os(e)),
    }
}

fn quote_field(name: &str) -> String {
    name.replace('"', "%22").replace(['\r', '\n'], " ")
}

/// "Upload File": POST `file_path` as multipart/form-data field `field_name`, with
/// `extra_fields` as text fields; the reply goes to the standard response outputs.
fn upload(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let url = required_url(ctx)?;
    if ctx.param_str("file_path").trim().is_empty() {
        return Err(NodeError::value(
            "file path is required (input 'file_path' is empty)",
        ));
    }
    let path = ctx.path_param("file_path")?;
    let meta = std::fs::metadata(&path).map_err(|e| {
        NodeError::new(
            "FileNotFoundError",
            format!("file not found: {} ({e})", path.display()),
        )
    })?;
    if !meta.is_file() {
        return Err(NodeError::value(format!(
            "'{}' is not a file",
            path.display()
        )));
    }
    if meta.len() > BODY_LIMIT {
        return Err(NodeError::value(format!(
            "'{}' is larger than the upload limit of {BODY_LIMIT} bytes",
            path.display()
        )));
    }
    let content = std::fs::read(&path)
        .map_err(|e| NodeError::new("OSError", format!("cannot read '{}': {e}", path.display())))?;
    let field = ctx.param_str("field_name");
    let field = if field.is_empty() {
        "file".into()
    } else {
        field
    };
    let extra = pairs_param(ctx, "extra_fields")?;
    let mut headers = headers_param(ctx)?;
    let att = attempts(ctx)?;
    let boundary = format!("casare-robot-{:016x}", fastrand::u64(..));
    let mut body: Vec<u8> = Vec::with_capacity(content.len() + 512);
    for (k, v) in &extra {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{v}\r\n",
                quote_field(k)
            )
            .as_bytes(),
        );
    }
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            quote_field(&field),
            quote_field(&filename)
        )
        .as_bytes(),
    );
    body.extend_from_slice(&content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
    headers.push((
        "Content-Type".into(),
        format!("multipart/form-data; boundary={boundary}"),
    ));
    let mut req = base_request(ctx, "POST", &url, headers)?;
    req.body = Some(body);
    let (reply, _) = send_with_retries(ctx, req, &att, None)?;
    ctx.log(
        Level::Info,
        format!(
            "uploaded {} to {} -> {}",
            path.display(),
            url_for_log(&url),
            reply.status
        ),
    );
    set_response_outputs(ctx, &reply, "")?;
    Ok(Flow::Next)
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// "Configure Auth": `auth_headers` for `auth_type` bearer (`token`), basic (`username`,
/// `password`) or api_key (`token` under `header_name`). Secrets are never logged.
fn configure_auth(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let auth_type = ctx.param_str("auth_type").trim().to_ascii_lowercase();
    let token = ctx.param_str("token");
    let mut headers = Dict::new();
    match auth_type.as_str() {
        "bearer" => {
            if token.is_empty() {
                return Err(NodeError::value("token is required for Bearer auth"));
            }
            headers.insert(
                "Authorization".into(),
                Value::str(format!("Bearer {token}")),
            );
        }
        "basic" => {
            let user = ctx.param_str("username");
            if user.is_empty() {
                return Err(NodeError::value("username is required for Basic auth"));
            }
            let pass = ctx.param_str("password");
            headers.insert(
                "Authorization".into(),
                Value::str(format!(
                    "Basic {}",
                    base64(format!("{user}:{pass}").as_bytes())
                )),
            );
        }
        "api_key" => {
            if token.is_empty() {
                return Err(NodeError::value("API key is required (input 'token')"));
            }
            let name = ctx.param_str("header_name");
            let name = if name.trim().is_empty() {
                "X-API-Key".to_string()
            } else {
                name.trim().to_string()
            };
            headers.insert(name, Value::str(token));
        }
        other => {
            return Err(NodeError::value(format!(
                "unknown auth_type '{other}' (expected bearer, basic or api_key)"
            )))
        }
    }
    ctx.log(
        Level::Info,
        format!("configured {auth_type} authentication"),
    );
    ctx.set_output("auth_headers", Value::dict(headers));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests;
