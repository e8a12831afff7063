//! Redaction: the one implementation that removes the robot's secrets from text leaving the
//! process.
//!
//! The configured keys (`api_key`, `supabase_key`) are registered once at start-up
//! ([`register_secrets`]); [`scrub`] replaces every occurrence of one with `***` and the password
//! of every URL in the text (`scheme://user:password@host`) with `****`. The writers that call it:
//! the log sink (`logging`: every record, at every level, to the file and stderr), the worker for
//! everything a job reports (progress, log lines, the result and the error, before they reach the
//! store, the outbox, the orchestrator, audit and status), the status file, and audit.
//!
//! Secrets shorter than [`MIN_SECRET_CHARS`] are not registered: they would mangle ordinary text.
//! Registration only adds: a process never forgets a secret it was given.

use parking_lot::RwLock;
use std::borrow::Cow;

/// What a secret is replaced with.
pub const REDACTED: &str = "***";
/// What a URL password is replaced with.
pub const URL_PASSWORD_MASK: &str = "****";
/// Secrets shorter than this (in characters) are not scrubbed.
pub const MIN_SECRET_CHARS: usize = 4;

/// The registered secrets, longest first (a secret containing another is scrubbed whole).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds `secrets` to the process-wide list [`scrub`] removes.
pub fn register_secrets<I, S>(secrets: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut list = SECRETS.write();
    for secret in secrets {
        let secret = secret.as_ref();
        if secret.chars().count() >= MIN_SECRET_CHARS && !list.iter().any(|s| s == secret) {
            list.push(secret.to_string());
        }
    }
    list.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
}

/// `text` without registered secrets and URL passwords (borrowed when there was nothing to do).
pub fn scrub(text: &str) -> Cow<'_, str> {
    let list = SECRETS.read();
    let mut out = Cow::Borrowed(text);
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    match mask_url_passwords(&out) {
        Cow::Borrowed(_) => out,
        Cow::Owned(masked) => Cow::Owned(masked),
    }
}

/// True when `text` holds a registered secret.
pub fn holds_secret(text: &str) -> bool {
    SECRETS.read().iter().any(|s| text.contains(s.as_str()))
}

/// Scrubs every string (and object key) of a JSON value in place.
pub fn scrub_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = scrub(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_json),
        Value::Object(map) => {
            if map.keys().any(|k| matches!(scrub(k), Cow::Owned(_))) {
                let old = std::mem::take(map);
                for (key, v) in old {
                    map.insert(scrub(&key).into_owned(), v);
                }
            }
            map.values_mut().for_each(scrub_json);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `text` with the password of every `scheme://user:password@host` replaced by `****`.
pub fn mask_url_passwords(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(idx) = rest.find("://") {
        let (head, tail) = rest.split_at(idx + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => match authority[..at].find(':') {
                Some(colon) => {
                    out.push_str(&authority[..=colon]);
                    out.push_str(URL_PASSWORD_MASK);
                    out.push_str(&authority[at..]);
                    changed = true;
                }
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_wherever_they_are() {
        for (text, expected) in [
            ("ws://user:pa55@host:8000/ws", "ws://user:****@host:8000/ws"),
            (
                "connecting to wss://a:b@h and http://c:d@e/x?y",
                "connecting to wss://a:****@h and http://c:****@e/x?y",
            ),
            ("ws://user@host/ws", "ws://user@host/ws"),
            ("ws://host:80/a@b", "ws://host:80/a@b"),
            ("mail me@example.com", "mail me@example.com"),
            ("\"ws://u:p@q\"", "\"ws://u:****@q\""),
        ] {
            assert_eq!(mask_url_passwords(text), expected, "{text}");
        }
    }

    #[test]
    fn registered_secrets_are_scrubbed_in_text_and_json() {
        register_secrets(["redact-test-key-0001", "abc", "redact-test-key-00"]);
        assert_eq!(
            scrub("key redact-test-key-0001 and redact-test-key-00!"),
            "key *** and ***!"
        );
        assert_eq!(scrub("abc stays (too short)"), "abc stays (too short)");
        let mut value = serde_json::json!({
            "error": "bad key redact-test-key-0001",
            "list": [{"redact-test-key-0001": 1}, "ws://u:p@h"],
        });
        scrub_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"error": "bad key ***", "list": [{"***": 1}, "ws://u:****@h"]})
        );
    }
}
