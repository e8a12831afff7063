//! A recording HTTP server on 127.0.0.1:0 (tiny_http) for tests: every request is recorded
//! (method, path, headers, JSON body) and handed to the test through a channel; the answer's
//! status is chosen per request, and an answer can be held until the test releases it. Used by
//! the Supabase reporter tests and the daemon's Supabase test.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The JSON body (null when not JSON).
    pub body: Value,
}

impl Recorded {
    /// A header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The Supabase broadcast `messages` array.
    pub fn messages(&self) -> &Vec<Value> {
        self.body["messages"].as_array().expect("messages array")
    }
}

/// How the server answers request number `n` (0-based), and whether it holds the answer until
/// the test releases it.
pub type Responder = Box<dyn FnMut(usize) -> (u16, bool) + Send>;

pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Requests as they arrive.
    pub requests: Receiver<Recorded>,
    /// Releases one held answer.
    pub release: Sender<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listen on 127.0.0.1:0, answering request `n` with `respond(n)`.
    pub fn start(mut respond: Responder) -> Server {
        let http = tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = http.server_addr().to_ip().expect("ip listener").port();
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !stop_flag.load(Ordering::Relaxed) {
                let Ok(Some(mut request)) = http.recv_timeout(Duration::from_millis(20)) else {
                    continue;
                };
                let mut text = String::new();
                request
                    .as_reader()
                    .read_to_string(&mut text)
                    .expect("read body");
                let recorded = Recorded {
                    method: request.method().as_str().to_string(),
                    path: request.url().to_string(),
                    headers: request
                        .headers()
                        .iter()
                        .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
                        .collect(),
                    body: serde_json::from_str(&text).unwrap_or(Value::Null),
                };
                let (status, hold) = respond(n);
                n += 1;
                let _ = req_tx.send(recorded);
                if hold {
                    // Released by the test, or given up after a deadline.
                    let _ = release_rx.recv_timeout(WAIT);
                }
                let _ = request
                    .respond(tiny_http::Response::from_string("{}").with_status_code(status));
            }
        });
        Server {
            url: format!("http://127.0.0.1:{port}"),
            requests: req_rx,
            release: release_tx,
            stop,
            thread: Some(thread),
        }
    }

    /// A server answering 202 to everything.
    pub fn ok() -> Server {
        Server::start(Box::new(|_| (202, false)))
    }

    /// The next request (within 10 s).
    pub fn next(&self) -> Recorded {
        self.requests
            .recv_timeout(WAIT)
            .expect("a request within the deadline")
    }

    /// Requests until `n_messages` broadcast messages arrived.
    pub fn collect(&self, n_messages: usize) -> Vec<Recorded> {
        let mut got = Vec::new();
        let mut n = 0;
        while n < n_messages {
            let r = self.next();
            n += r.messages().len();
            got.push(r);
        }
        got
    }

    /// `127.0.0.1:PORT`.
    pub fn port_marker(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.release.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
