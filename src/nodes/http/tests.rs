//! Unit tests of the HTTP nodes (servers on 127.0.0.1 only; every wait bounded).

use super::*;
use crate::engine::runner::{self, NoObserver, RunOptions, RunOutcome};
use crate::engine::safety::Safety;
use crate::engine::{load_str, CancelToken};
use crate::nodes::testing::chain;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;

fn opts(allow_private: bool) -> RunOptions {
    RunOptions {
        safety: Safety {
            allow_private_network: allow_private,
            ..Safety::default()
        },
        node_timeout: Duration::from_secs(20),
        ..RunOptions::default()
    }
}

fn run_one(ty: &str, config: serde_json::Value, allow_private: bool) -> RunOutcome {
    let wf = load_str(&chain(&[("n", ty, config)])).expect("loads");
    runner::run(
        &wf,
        Default::default(),
        &opts(allow_private),
        &CancelToken::new(),
        &mut NoObserver,
    )
}

fn out(o: &RunOutcome, port: &str) -> Value {
    o.node_outputs
        .get("n")
        .and_then(|v| v.as_dict())
        .and_then(|d| d.get(port))
        .cloned()
        .unwrap_or(Value::Null)
}

fn err(o: &RunOutcome) -> String {
    o.error_text().unwrap_or_default()
}

/// A one-shot raw server: answers the first connection with `response`, returns the request
/// (an empty string when no client connected within 10 s, so a test never hangs on it).
fn raw_server(response: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut sock = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(_) => return String::new(),
            }
        };
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    break;
                }
            }
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = sock.write_all(&response);
        String::from_utf8_lossy(&got).into_owned()
    });
    (format!("http://{addr}"), handle)
}

#[test]
fn actions_parse_case_insensitively_with_bare_aliases() {
    for (raw, want) in [
        ("GET Request", Some(Action::Method("GET"))),
        ("post request", Some(Action::Method("POST"))),
        ("  PUT   Request ", Some(Action::Method("PUT"))),
        ("PATCH", Some(Action::Method("PATCH"))),
        ("delete", Some(Action::Method("DELETE"))),
        ("Download File", Some(Action::Download)),
        ("upload", Some(Action::Upload)),
        ("Configure Auth", Some(Action::Auth)),
        ("HEAD Request", None),
        ("fetch", None),
    ] {
        assert_eq!(parse_action(raw), want, "{raw}");
    }
}

#[test]
fn helpers() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"user:p@ss"), "dXNlcjpwQHNz");
    let q = vec![
        ("a".to_string(), "1 2".to_string()),
        ("b".into(), "x&y".into()),
    ];
    assert_eq!(url_with_query("http://h/p", &q), "http://h/p?a=1+2&b=x%26y");
    assert_eq!(
        url_with_query("http://h/p?z=0#frag", &q),
        "http://h/p?z=0&a=1+2&b=x%26y"
    );
    assert_eq!(url_with_query("http://h/p#frag", &[]), "http://h/p");
    assert_eq!(url_for_log("http://u:pw@h:81/p?token=s"), "http://h:81/p");
    assert_eq!(backoff(0.5, 1), 0.5);
    assert_eq!(backoff(0.5, 3), 2.0);
    assert_eq!(backoff(10.0, 9), MAX_WAIT_SECS);
}

#[test]
fn loopback_is_refused_unless_allowed_naming_address_and_rule() {
    let o = run_one(
        "HttpRequestNode",
        json!({"url": "http://127.0.0.1:9/x?secret=1"}),
        false,
    );
    assert_eq!(
        err(&o),
        "n (HttpRequestNode): GET http://127.0.0.1:9/x: refused address '127.0.0.1 (127.0.0.1)': \
         loopback and private networks are blocked (set allow_private_network to allow them)"
    );
    let o = run_one(
        "HttpSuperNode",
        json!({"url": "http://localhost:9/"}),
        false,
    );
    assert!(
        err(&o).contains("refused address 'localhost"),
        "{}",
        err(&o)
    );
}

#[test]
fn bad_parameters_fail_with_clear_messages() {
    let cases = [
        (
            "HttpRequestNode",
            json!({"url": "http://h/", "method": "BREW"}),
            "n (HttpRequestNode): unsupported HTTP method 'BREW' (expected one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS)",
        ),
        (
            "HttpRequestNode",
            json!({"url": "http://h/", "timeout": 0}),
            "n (HttpRequestNode): input 'timeout' must be a positive number of seconds, got 0",
        ),
        (
            "HttpRequestNode",
            json!({"url": "http://h/", "headers": "not json"}),
            "n (HttpRequestNode): input 'headers' must be a dictionary or JSON object text, got 'not json'",
        ),
        (
            "HttpRequestNode",
            json!({"url": "http://h/", "headers": {"X-A": "a\r\nInjected: 1"}}),
            "n (HttpRequestNode): the value of header 'X-A' contains a line break or NUL",
        ),
        (
            "HttpRequestNode",
            json!({"url": "http://h/", "proxy": "http://p:3128"}),
            "n (HttpRequestNode): input 'proxy' is not supported by this robot (requests go directly to the checked address)",
        ),
        (
            "HttpRequestNode",
            json!({"url": "ftp://h/x"}),
            "n (HttpRequestNode): GET ftp://h/x: refused URL 'ftp://h/x': scheme 'ftp' is not allowed (only http and https)",
        ),
        (
            "HttpSuperNode",
            json!({"action": "Fetch", "url": "http://h/"}),
            "n (HttpSuperNode): unknown action 'Fetch' (expected one of GET Request, POST Request, PUT Request, PATCH Request, DELETE Request, Download File, Upload File, Configure Auth)",
        ),
        (
            "HttpSuperNode",
            json!({"action": "GET Request"}),
            "n (HttpSuperNode): URL is required (input 'url' is empty)",
        ),
        (
            "HttpSuperNode",
            json!({"action": "Configure Auth", "auth_type": "bearer"}),
            "n (HttpSuperNode): token is required for Bearer auth",
        ),
    ];
    for (ty, config, want) in cases {
        let o = run_one(ty, config.clone(), true);
        assert_eq!(err(&o), want, "{config}");
    }
}

#[test]
fn configure_auth_builds_headers() {
    let o = run_one(
        "HttpSuperNode",
        json!({"action": "Configure Auth", "auth_type": "basic", "username": "user", "password": "p@ss"}),
        false,
    );
    assert_eq!(
        out(&o, "auth_headers").py_repr(),
        "{'Authorization': 'Basic dXNlcjpwQHNz'}"
    );
    let o = run_one(
        "HttpSuperNode",
        json!({"action": "auth", "auth_type": "api_key", "token": "k1", "header_name": "X-Key"}),
        false,
    );
    assert_eq!(out(&o, "auth_headers").py_repr(), "{'X-Key': 'k1'}");
    let o = run_one(
        "HttpSuperNode",
        json!({"action": "Configure Auth", "token": "t"}),
        false,
    );
    assert_eq!(
        out(&o, "auth_headers").py_repr(),
        "{'Authorization': 'Bearer t'}"
    );
    assert!(matches!(out(&o, "success"), Value::Bool(true)));
}

#[test]
fn raw_request_bytes_and_response_outputs() {
    let (url, server) = raw_server(
        b"HTTP/1.1 201 Created\r\ncontent-type: application/json; charset=utf-8\r\n\
          x-multi: a\r\nx-multi: b\r\ncontent-length: 11\r\n\r\n{\"ok\": 1.0}"
            .to_vec(),
    );
    let o = run_one(
        "HttpRequestNode",
        json!({"url": format!("{url}/items?x=1"), "method": "put", "body": {"k": [1, true, null]},
               "params": {"q": "a b"}, "headers": "{\"X-Token\": \"s3\"}"}),
        true,
    );
    assert_eq!(err(&o), "");
    let request = server.join().unwrap();
    assert!(
        request.starts_with("PUT /items?x=1&q=a+b HTTP/1.1\r\n"),
        "{request}"
    );
    let lower = request.to_ascii_lowercase();
    assert!(lower.contains("\r\nx-token: s3\r\n"), "{request}");
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{request}"
    );
    assert!(request.ends_with("{\"k\": [1, true, null]}"), "{request}");
    assert!(matches!(out(&o, "status_code"), Value::Int(201)));
    assert!(matches!(out(&o, "success"), Value::Bool(true)));
    assert_eq!(out(&o, "error").py_repr(), "''");
    assert_eq!(out(&o, "response_body").py_str(), "{\"ok\": 1.0}");
    assert_eq!(out(&o, "response_json").py_repr(), "{'ok': 1.0}");
    let headers = out(&o, "response_headers");
    let h = headers.as_dict().unwrap();
    assert_eq!(
        h["Content-Type"].py_str(),
        "application/json; charset=utf-8"
    );
    assert_eq!(h["X-Multi"].py_str(), "a, b");
}

#[test]
fn latin1_and_lossy_decoding() {
    let (url, server) = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=ISO-8859-1\r\ncontent-length: 3\r\n\r\ncaf\xe9".to_vec(),
    );
    // The declared length is 3: only "caf" arrives; then a latin-1 body of 4 bytes.
    let o = run_one("HttpRequestNode", json!({"url": url}), true);
    server.join().unwrap();
    assert_eq!(out(&o, "response_body").py_str(), "caf");
    let (url, server) = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=latin-1\r\ncontent-length: 4\r\n\r\ncaf\xe9".to_vec(),
    );
    let o = run_one("HttpRequestNode", json!({"url": url}), true);
    server.join().unwrap();
    assert_eq!(out(&o, "response_body").py_str(), "café");
    let (url, server) = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ncaf\xe9".to_vec());
    let o = run_one("HttpRequestNode", json!({"url": url}), true);
    server.join().unwrap();
    assert_eq!(out(&o, "response_body").py_str(), "caf\u{fffd}");
    let (url, server) = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec());
    let o = run_one(
        "HttpRequestNode",
        json!({"url": url, "response_encoding": "shift_jis"}),
        true,
    );
    server.join().unwrap();
    assert_eq!(
        err(&o),
        "n (HttpRequestNode): unsupported response_encoding 'shift-jis' (supported: utf-8, ascii, latin-1)"
    );
}

#[test]
fn streamed_body_over_the_limit_is_refused() {
    // Chunked, so no Content-Length tells the size in advance.
    let mut resp = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        resp.extend_from_slice(b"400\r\n");
        resp.extend_from_slice(&[b'x'; 0x400]);
        resp.extend_from_slice(b"\r\n");
    }
    resp.extend_from_slice(b"0\r\n\r\n");
    let (url, server) = raw_server(resp);
    let safety = Safety {
        allow_private_network: true,
        ..Safety::default()
    };
    let req = Request {
        method: "GET".into(),
        url,
        headers: Vec::new(),
        body: None,
        verify_ssl: true,
        follow_redirects: true,
        max_redirects: 10,
        body_limit: 3000,
        save_to: None,
    };
    let e = client::send(
        req,
        &safety,
        Instant::now() + Duration::from_secs(10),
        &CancelToken::new(),
    )
    .unwrap_err();
    server.join().unwrap();
    assert_eq!(
        e.message,
        "the response body is larger than the limit of 3000 bytes"
    );
}

#[test]
fn every_redirect_hop_is_checked_again() {
    let (url, server) = raw_server(
        b"HTTP/1.1 302 Found\r\nlocation: http://10.255.255.1:9/metadata\r\ncontent-length: 0\r\n\r\n"
            .to_vec(),
    );
    let first_port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let allow = Safety {
        allow_private_network: true,
        ..Safety::default()
    };
    let deny = Safety::default();
    // The first hop (our server) is allowed; anything else gets the default rules.
    let check = |host: &str, port: u16| {
        if host == "127.0.0.1" && port == first_port {
            crate::engine::safety::check_host(host, port, &allow)
        } else {
            crate::engine::safety::check_host(host, port, &deny)
        }
    };
    let req = Request {
        method: "GET".into(),
        url: format!("{url}/start"),
        headers: vec![("Authorization".into(), "Bearer s".into())],
        body: None,
        verify_ssl: true,
        follow_redirects: true,
        max_redirects: 10,
        body_limit: BODY_LIMIT,
        save_to: None,
    };
    let e = client::exchange(req, &check, Instant::now() + Duration::from_secs(10)).unwrap_err();
    server.join().unwrap();
    assert_eq!(e.kind, "PermissionError");
    assert_eq!(
        e.message,
        "refused address '10.255.255.1 (10.255.255.1)': loopback and private networks are blocked \
         (set allow_private_network to allow them)"
    );
}
