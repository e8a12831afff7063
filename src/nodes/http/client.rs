//! The HTTP transport behind the HTTP nodes: one attempt of one request, with the robot's safety
//! rules, redirects followed by hand, bounded bodies, and a wait that wakes on cancellation.
//!
//! Every hop (the first request and each redirect) parses the URL (only `http`/`https`), resolves
//! the host through [`safety::check_host`] (loopback and private addresses refused unless
//! `allow_private_network`) and connects only to the addresses that check returned (a pinned
//! resolver, so a second DNS answer cannot smuggle in a private address). ureq's own redirects
//! and environment proxies are switched off, 4xx/5xx are responses, not errors.
//!
//! A blocking ureq call cannot be interrupted, so [`send`] runs the exchange on a short-lived
//! thread and waits on a channel, checking the cancel token; on cancellation it returns at once
//! and the thread ends by its own timeout (ureq's global timeout is the attempt's budget). If the
//! thread overruns its budget (a DNS lookup has no timeout), [`send`] gives up after a short grace.

use crate::engine::node::NodeError;
use crate::engine::safety::{self, Safety};
use crate::engine::CancelToken;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// The largest response body kept in memory (100 MB).
pub const BODY_LIMIT: u64 = 100 * 1024 * 1024;
/// The largest file a download may write (10 GB).
pub const DOWNLOAD_LIMIT: u64 = 10 * 1024 * 1024 * 1024;
/// Hard cap on followed redirects, whatever `max_redirects` says.
pub const REDIRECT_CAP: u32 = 20;
/// How long [`send`] waits past the attempt's budget for the helper thread before giving up.
const GRACE: Duration = Duration::from_millis(500);
/// How often the waiting thread looks at the cancel token.
const POLL: Duration = Duration::from_millis(20);

/// One request, ready to send.
#[derive(Clone, Debug)]
pub struct Request {
    /// Upper-case method.
    pub method: String,
    /// The URL, query included.
    pub url: String,
    /// Header names and values, in order (never logged: they may hold secrets).
    pub headers: Vec<(String, String)>,
    /// Request body, if any.
    pub body: Option<Vec<u8>>,
    /// Check TLS certificates.
    pub verify_ssl: bool,
    /// Follow 3xx responses that carry a `Location`.
    pub follow_redirects: bool,
    /// How many redirects to follow at most (capped by [`REDIRECT_CAP`]).
    pub max_redirects: u32,
    /// The largest body accepted (in memory, or written to `save_to`).
    pub body_limit: u64,
    /// Stream a 2xx body into this file instead of memory (removed again on any failure).
    pub save_to: Option<PathBuf>,
}

/// A response.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers with canonical names (`Content-Type`), repeated headers joined with `", "`.
    pub headers: Vec<(String, String)>,
    /// The body (empty when it went to `save_to`).
    pub body: Vec<u8>,
    /// Bytes written to `save_to`, when the body went there.
    pub saved: Option<u64>,
    /// The URL that answered (after redirects).
    pub url: String,
}

impl Reply {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send `req` once (following redirects), waiting at most until `budget_end` (plus a short
/// grace) and returning `CancelledError` as soon as `cancel` fires.
pub fn send(
    req: Request,
    safety: &Safety,
    budget_end: Instant,
    cancel: &CancelToken,
) -> Result<Reply, NodeError> {
    if cancel.is_cancelled() {
        return Err(NodeError::cancelled("cancelled before the HTTP request"));
    }
    if Instant::now() >= budget_end {
        return Err(NodeError::timeout("no time left for the HTTP request"));
    }
    let (tx, rx) = crossbeam_channel::bounded::<Result<Reply, NodeError>>(1);
    let safety = safety.clone();
    let spawned = std::thread::Builder::new()
        .name("casare-http".into())
        .spawn(move || {
            let save_to = req.save_to.clone();
            let check = |host: &str, port: u16| safety::check_host(host, port, &safety);
            let result = exchange(req, &check, budget_end);
            let saved = matches!(&result, Ok(r) if r.saved.is_some());
            if tx.send(result).is_err() && saved {
                // Nobody waits any more (cancelled or gave up): do not leave the partial file.
                if let Some(path) = save_to {
                    let _ = std::fs::remove_file(path);
                }
            }
        });
    if let Err(e) = spawned {
        return Err(NodeError::new(
            "OSError",
            format!("cannot start the HTTP request thread: {e}"),
        ));
    }
    loop {
        if cancel.is_cancelled() {
            return Err(NodeError::cancelled("cancelled during the HTTP request"));
        }
        let now = Instant::now();
        if now >= budget_end + GRACE {
            return Err(NodeError::timeout("no complete response in time"));
        }
        let wait = POLL.min(budget_end + GRACE - now);
        match rx.recv_timeout(wait) {
            Ok(result) => return result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return Err(NodeError::new(
                    "ConnectionError",
                    "the HTTP request thread ended without an answer",
                ))
            }
        }
    }
}

/// A resolver that answers with addresses checked beforehand.
#[derive(Debug)]
struct Pinned(Vec<SocketAddr>);

impl Resolver for Pinned {
    fn resolve(
        &self,
        _uri: &Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut out = self.empty();
        for addr in self.0.iter().take(16) {
            out.push(*addr);
        }
        if self.0.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

/// The target of one hop.
struct Target {
    uri: Uri,
    host: String,
    port: u16,
}

/// Parse and check a URL: `http`/`https` only, with a host.
pub fn parse_url(url: &str) -> Result<(Uri, String, u16), NodeError> {
    let encoded = encode_lenient(url.trim());
    if let Some(scheme) = scheme_of(&encoded) {
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(NodeError::value(format!(
                "refused URL '{url}': scheme '{scheme}' is not allowed (only http and https)"
            )));
        }
    } else {
        return Err(NodeError::value(format!(
            "invalid URL '{url}': it has no scheme (http:// or https://)"
        )));
    }
    let uri: Uri = encoded
        .parse()
        .map_err(|e| NodeError::value(format!("invalid URL '{url}': {e}")))?;
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        "" => {
            return Err(NodeError::value(format!(
                "invalid URL '{url}': it has no scheme (http:// or https://)"
            )))
        }
        other => {
            return Err(NodeError::value(format!(
                "refused URL '{url}': scheme '{other}' is not allowed (only http and https)"
            )))
        }
    };
    let host = uri.host().unwrap_or("").to_string();
    if host.is_empty() {
        return Err(NodeError::value(format!(
            "invalid URL '{url}': it has no host"
        )));
    }
    let port = uri.port_u16().unwrap_or(default_port);
    Ok((uri, host, port))
}

fn target(url: &str) -> Result<Target, NodeError> {
    let (uri, host, port) = parse_url(url)?;
    Ok(Target { uri, host, port })
}

/// The scheme of a URL (`http` in `http://...`), if it has one.
fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    ok.then_some(scheme)
}

/// Percent-encode the bytes a URL may not contain as they are (spaces, non-ASCII, quotes, ...),
/// leaving existing escapes and reserved characters alone.
pub fn encode_lenient(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for &b in url.as_bytes() {
        if b <= 0x20 || b >= 0x7f || b"\"<>\\^`{|}".contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Percent-encode a query component (`application/x-www-form-urlencoded`, as Python's
/// `urlencode` does: space as `+`).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Resolve a `Location` header against the URL that sent it.
pub fn resolve_location(base: &Uri, location: &str) -> String {
    let loc = encode_lenient(location.trim());
    let has_scheme = scheme_of(&loc).is_some();
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", |a| a.as_str());
    if has_scheme {
        loc
    } else if loc.starts_with("//") {
        format!("{scheme}:{loc}")
    } else if loc.starts_with('/') {
        format!("{scheme}://{authority}{loc}")
    } else if loc.starts_with('?') {
        format!("{scheme}://{authority}{}{loc}", base.path())
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("{scheme}://{authority}{dir}{loc}")
    }
}

fn agent(verify_ssl: bool, budget: Duration, addrs: Vec<SocketAddr>) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(!verify_ssl)
        .build();
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(budget))
        .user_agent(concat!("casare-robot/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .save_redirect_history(false)
        .build();
    ureq::Agent::with_parts(config, DefaultConnector::new(), Pinned(addrs))
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Canonical header name: `content-type` → `Content-Type`.
pub fn canonical_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn timeout_error(budget: Duration) -> NodeError {
    NodeError::timeout(format!(
        "no complete response within {:.1} s",
        budget.as_secs_f64()
    ))
}

fn map_error(e: &ureq::Error, t: &Target, budget: Duration) -> NodeError {
    map_error_at(e, &format!("{}:{}", t.host, t.port), budget)
}

fn map_error_at(e: &ureq::Error, place: &str, budget: Duration) -> NodeError {
    match e {
        ureq::Error::Timeout(_) => timeout_error(budget),
        ureq::Error::Io(io) => io_error(io, place, budget),
        ureq::Error::Protocol(p) => NodeError::new(
            "ConnectionError",
            format!("invalid HTTP response from {place}: {p}"),
        ),
        ureq::Error::BodyExceedsLimit(n) => too_large(*n),
        ureq::Error::ConnectionFailed => {
            NodeError::new("ConnectionError", format!("cannot connect to {place}"))
        }
        ureq::Error::HostNotFound => {
            NodeError::new("ConnectionError", format!("host of {place} not found"))
        }
        other => NodeError::new(
            "ConnectionError",
            format!("request to {place} failed: {other}"),
        ),
    }
}

fn io_error(io: &std::io::Error, place: &str, budget: Duration) -> NodeError {
    use std::io::ErrorKind as K;
    // Body reads wrap ureq's error in an io::Error: use the precise one.
    if let Some(inner) = io.get_ref().and_then(|e| e.downcast_ref::<ureq::Error>()) {
        return map_error_at(inner, place, budget);
    }
    match io.kind() {
        K::TimedOut | K::WouldBlock => timeout_error(budget),
        K::ConnectionRefused => NodeError::new(
            "ConnectionError",
            format!("cannot connect to {place}: connection refused"),
        ),
        K::UnexpectedEof => NodeError::new(
            "ConnectionError",
            format!("the response from {place} is truncated (the connection closed early)"),
        ),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => NodeError::new(
            "ConnectionError",
            format!("the connection to {place} was closed: {io}"),
        ),
        _ => NodeError::new(
            "ConnectionError",
            format!("network error with {place}: {io}"),
        ),
    }
}

fn too_large(limit: u64) -> NodeError {
    let mb = limit / (1024 * 1024);
    let human = if mb > 0 && limit.is_multiple_of(1024 * 1024) {
        format!(" ({mb} MB)")
    } else {
        String::new()
    };
    NodeError::value(format!(
        "the response body is larger than the limit of {limit} bytes{human}"
    ))
}

/// One attempt: hops until a final response, then its body.
/// Checks a host before it is contacted and returns the addresses to use.
pub type HostCheck<'a> = &'a dyn Fn(&str, u16) -> Result<Vec<SocketAddr>, NodeError>;

/// One attempt (on the calling thread): hops until a final response, then its body. Every hop's
/// host goes through `check` first; the connection uses only the addresses it returned.
pub fn exchange(
    req: Request,
    check: HostCheck<'_>,
    budget_end: Instant,
) -> Result<Reply, NodeError> {
    let result = exchange_inner(&req, check, budget_end);
    if result.is_err() {
        if let Some(path) = &req.save_to {
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

fn exchange_inner(
    req: &Request,
    check: HostCheck<'_>,
    budget_end: Instant,
) -> Result<Reply, NodeError> {
    let mut url = req.url.clone();
    let mut method = req.method.clone();
    let mut body = req.body.clone();
    let mut headers = req.headers.clone();
    let max_redirects = req.max_redirects.min(REDIRECT_CAP);
    let mut hops: u32 = 0;
    loop {
        let t = target(&url)?;
        let addrs = check(&t.host, t.port)?;
        let now = Instant::now();
        if now >= budget_end {
            return Err(timeout_error(Duration::ZERO));
        }
        let budget = budget_end - now;
        let agent = agent(req.verify_ssl, budget, addrs);
        let mut builder = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(t.uri.clone());
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let sent = match &body {
            Some(bytes) => builder
                .body(bytes.clone())
                .map_err(|e| bad_request(&e))
                .and_then(|r| agent.run(r).map_err(|e| map_error(&e, &t, budget))),
            None => builder
                .body(())
                .map_err(|e| bad_request(&e))
                .and_then(|r| agent.run(r).map_err(|e| map_error(&e, &t, budget))),
        };
        let mut resp = sent?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if req.follow_redirects && is_redirect(status) {
            if let Some(loc) = location {
                if hops >= max_redirects {
                    return Err(NodeError::new(
                        "ConnectionError",
                        format!(
                            "too many redirects (more than {max_redirects}) from {}",
                            req.url
                        ),
                    ));
                }
                hops += 1;
                let next = resolve_location(&t.uri, &loc);
                let next_host = parse_url(&next).map(|(_, h, p)| (h, p)).ok();
                if next_host != Some((t.host.clone(), t.port)) {
                    // Credentials are for the host they were given to.
                    headers.retain(|(k, _)| {
                        !k.eq_ignore_ascii_case("authorization")
                            && !k.eq_ignore_ascii_case("cookie")
                    });
                }
                if status == 303 || ((status == 301 || status == 302) && method == "POST") {
                    if method != "HEAD" {
                        method = "GET".into();
                    }
                    body = None;
                    headers.retain(|(k, _)| {
                        !k.eq_ignore_ascii_case("content-type")
                            && !k.eq_ignore_ascii_case("content-length")
                    });
                }
                url = next;
                continue;
            }
        }
        let mut out_headers: Vec<(String, String)> = Vec::new();
        for (name, value) in resp.headers() {
            let name = canonical_name(name.as_str());
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if let Some(slot) = out_headers.iter_mut().find(|(k, _)| *k == name) {
                slot.1.push_str(", ");
                slot.1.push_str(&value);
            } else {
                out_headers.push((name, value));
            }
        }
        let declared = resp.body().content_length();
        if declared.is_some_and(|n| n > req.body_limit) {
            return Err(too_large(req.body_limit));
        }
        let place = format!("{}:{}", t.host, t.port);
        let save = req
            .save_to
            .as_ref()
            .filter(|_| (200..300).contains(&status));
        let (bytes, saved) = match save {
            Some(path) => {
                let n = stream_to_file(&mut resp, path, req.body_limit, &place, budget)?;
                (Vec::new(), Some(n))
            }
            None => {
                let bytes = resp
                    .body_mut()
                    .with_config()
                    .limit(req.body_limit)
                    .read_to_vec()
                    .map_err(|e| map_error(&e, &t, budget))?;
                (bytes, None)
            }
        };
        return Ok(Reply {
            status,
            headers: out_headers,
            body: bytes,
            saved,
            url,
        });
    }
}

fn bad_request(e: &ureq::http::Error) -> NodeError {
    NodeError::value(format!("invalid request (method or header): {e}"))
}

fn stream_to_file(
    resp: &mut ureq::http::Response<ureq::Body>,
    path: &std::path::Path,
    limit: u64,
    place: &str,
    budget: Duration,
) -> Result<u64, NodeError> {
    let mut file = std::fs::File::create(path).map_err(|e| {
        NodeError::new(
            "OSError",
            format!("cannot create '{}': {e}", path.display()),
        )
    })?;
    // Read one byte past the limit to tell "exactly the limit" from "more".
    let mut reader = resp
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .reader()
        .take(limit.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(&e, place, budget)),
        };
        total += n as u64;
        if total > limit {
            return Err(too_large(limit));
        }
        file.write_all(&buf[..n]).map_err(|e| {
            NodeError::new("OSError", format!("cannot write '{}': {e}", path.display()))
        })?;
    }
    file.sync_all().map_err(|e| {
        NodeError::new("OSError", format!("cannot write '{}': {e}", path.display()))
    })?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_encoded() {
        let (uri, host, port) = parse_url("http://example.com/a b?q=é").unwrap();
        assert_eq!(uri.to_string(), "http://example.com/a%20b?q=%C3%A9");
        assert_eq!((host.as_str(), port), ("example.com", 80));
        assert_eq!(parse_url("https://h:8443/").unwrap().2, 8443);
        for (bad, msg) in [
            ("ftp://h/x", "scheme 'ftp' is not allowed"),
            ("file:///etc/passwd", "scheme 'file' is not allowed"),
            ("example.com/x", "no scheme"),
            ("http://", "invalid URL"),
        ] {
            let err = parse_url(bad).unwrap_err().message;
            assert!(err.contains(msg), "{bad}: {err}");
        }
    }

    #[test]
    fn locations_resolve_like_a_browser() {
        let base: Uri = "http://h:81/a/b?x=1".parse().unwrap();
        for (loc, want) in [
            ("http://o/p", "http://o/p"),
            ("//o/p", "http://o/p"),
            ("/p?q", "http://h:81/p?q"),
            ("?y=2", "http://h:81/a/b?y=2"),
            ("c", "http://h:81/a/c"),
            ("c d", "http://h:81/a/c%20d"),
        ] {
            assert_eq!(resolve_location(&base, loc), want, "{loc}");
        }
    }

    #[test]
    fn names_and_components() {
        assert_eq!(canonical_name("content-type"), "Content-Type");
        assert_eq!(canonical_name("x-request-id"), "X-Request-Id");
        assert_eq!(canonical_name("ETAG"), "Etag");
        assert_eq!(encode_component("a b&c=d/é~"), "a+b%26c%3Dd%2F%C3%A9~");
    }
}
