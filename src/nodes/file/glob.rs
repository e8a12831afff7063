//! Glob matching for the listing and zip nodes, with `pathlib`'s pattern language: `*`, `?`,
//! `[abc]`, `[a-z]`, `[!x]` inside one path component, and `**` for zero or more directories.
//! `/` and `\` both separate components. Matching is case-insensitive on Windows, as `pathlib`.
//!
//! Deviations from Python, for predictability and safety: results are sorted (Python yields
//! directory order); symlinked directories are not descended into by `**` (no loops, no walking
//! out of an allowed root); `..` and absolute patterns are refused; results are capped at
//! [`MAX_MATCHES`].

use crate::engine::node::NodeError;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Most paths a listing may return.
pub const MAX_MATCHES: usize = 1_000_000;

/// A compiled glob pattern.
pub struct Glob {
    parts: Vec<String>,
    /// Wildcards skip names starting with `.` unless the component itself starts with `.`
    /// (Python's `glob.glob`; `pathlib` matches hidden names).
    skip_hidden: bool,
}

/// True when `text` contains glob wildcards.
pub fn has_magic(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

impl Glob {
    /// Compile `pattern` (relative; `..` refused). `recursive` prefixes `**/` as `rglob` does.
    pub fn new(pattern: &str, recursive: bool, skip_hidden: bool) -> Result<Glob, NodeError> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(NodeError::value(format!(
                "unacceptable pattern: {pattern:?}"
            )));
        }
        if pattern.starts_with(['/', '\\']) || pattern.get(1..2) == Some(":") {
            return Err(NodeError::value(format!(
                "non-relative patterns are unsupported: '{pattern}'"
            )));
        }
        let mut parts: Vec<String> = Vec::new();
        if recursive {
            parts.push("**".to_string());
        }
        for part in pattern.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(NodeError::new(
                        "PermissionError",
                        format!(
                            "refused pattern '{pattern}': '..' (parent directory) components are not allowed"
                        ),
                    ))
                }
                "**" if parts.last().is_some_and(|p| p == "**") => {}
                p => parts.push(p.to_string()),
            }
        }
        if parts.is_empty() {
            return Err(NodeError::value(format!(
                "unacceptable pattern: '{pattern}'"
            )));
        }
        Ok(Glob { parts, skip_hidden })
    }

    /// All paths under `base` that match, sorted. `check` runs every few hundred directory
    /// entries (cancellation and deadline).
    pub fn matches(
        &self,
        base: &Path,
        check: &dyn Fn() -> Result<(), NodeError>,
    ) -> Result<Vec<PathBuf>, NodeError> {
        let mut out = BTreeSet::new();
        let mut seen = 0usize;
        self.walk(base, 0, &mut out, &mut seen, check)?;
        Ok(out.into_iter().collect())
    }

    fn walk(
        &self,
        dir: &Path,
        idx: usize,
        out: &mut BTreeSet<PathBuf>,
        seen: &mut usize,
        check: &dyn Fn() -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        let part = &self.parts[idx];
        let last = idx + 1 == self.parts.len();
        if part == "**" {
            if last {
                // A trailing `**` matches directories: this one and every one below it.
                add(out, dir.to_path_buf())?;
            } else {
                self.walk(dir, idx + 1, out, seen, check)?;
            }
            for entry in read_dir(dir, seen, check)? {
                if entry.1 {
                    self.walk(&entry.0, idx, out, seen, check)?;
                }
            }
            return Ok(());
        }
        if !has_magic(part) {
            let next = dir.join(part);
            if last {
                if std::fs::symlink_metadata(&next).is_ok() {
                    add(out, next)?;
                }
            } else if next.is_dir() {
                self.walk(&next, idx + 1, out, seen, check)?;
            }
            return Ok(());
        }
        let hidden_ok = !self.skip_hidden || part.starts_with('.');
        for (path, is_real_dir) in read_dir(dir, seen, check)? {
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if !hidden_ok && name.starts_with('.') {
                continue;
            }
            if !fnmatch(part, &name) {
                continue;
            }
            if last {
                add(out, path)?;
            } else if is_real_dir || path.is_dir() {
                self.walk(&path, idx + 1, out, seen, check)?;
            }
        }
        Ok(())
    }
}

fn add(out: &mut BTreeSet<PathBuf>, path: PathBuf) -> Result<(), NodeError> {
    if out.len() >= MAX_MATCHES {
        return Err(NodeError::value(format!(
            "the listing has more than {MAX_MATCHES} matches; use a narrower pattern"
        )));
    }
    out.insert(path);
    Ok(())
}

/// Entries of `dir` as (path, is a real directory, not a symlink). Unreadable directories below
/// the base are skipped, as Python's glob does.
fn read_dir(
    dir: &Path,
    seen: &mut usize,
    check: &dyn Fn() -> Result<(), NodeError>,
) -> Result<Vec<(PathBuf, bool)>, NodeError> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    for entry in rd.flatten() {
        *seen += 1;
        if seen.is_multiple_of(256) {
            check()?;
        }
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        entries.push((entry.path(), is_dir));
    }
    Ok(entries)
}

fn fold(c: char) -> char {
    if cfg!(windows) {
        c.to_lowercase().next().unwrap_or(c)
    } else {
        c
    }
}

/// `fnmatch` for one path component.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(fold).collect();
    let n: Vec<char> = name.chars().map(fold).collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, len)) = class(&p[pi..], n[ni]) {
                        if matched {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Match a `[...]` class at the start of `p`; `None` when the bracket is not closed (then it is
/// a literal `[`). Returns (matched, pattern length).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i).is_some_and(|x| *x == '!');
    if negate {
        i += 1;
    }
    let start = i;
    let mut matched = false;
    while i < p.len() {
        if p[i] == ']' && i > start {
            return Some((matched != negate, i + 1));
        }
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_rules() {
        for (p, n, want) in [
            ("*", "a.txt", true),
            ("*", ".hidden", true),
            ("*.txt", "a.txt", true),
            ("*.txt", "a.csv", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[ab]*", "bz", true),
            ("[!ab]*", "bz", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[x", "[x", true),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxx", false),
            ("", "", true),
        ] {
            assert_eq!(fnmatch(p, n), want, "{p} vs {n}");
        }
        assert_eq!(fnmatch("*.TXT", "a.txt"), cfg!(windows));
    }

    #[test]
    fn walks_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        for f in [
            "b.txt",
            "a.txt",
            "c.csv",
            ".h.txt",
            "sub/d.txt",
            "sub/deeper/e.txt",
        ] {
            std::fs::write(root.join(f), "x").unwrap();
        }
        let ok = || Ok(());
        let names = |g: Glob| -> Vec<String> {
            g.matches(root, &ok)
                .unwrap()
                .iter()
                .map(|p| {
                    p.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/")
                })
                .collect()
        };
        assert_eq!(
            names(Glob::new("*.txt", false, false).unwrap()),
            [".h.txt", "a.txt", "b.txt"]
        );
        assert_eq!(
            names(Glob::new("*.txt", false, true).unwrap()),
            ["a.txt", "b.txt"]
        );
        assert_eq!(
            names(Glob::new("*.txt", true, true).unwrap()),
            ["a.txt", "b.txt", "sub/d.txt", "sub/deeper/e.txt"]
        );
        assert_eq!(
            names(Glob::new("sub\\*", false, false).unwrap()),
            ["sub/d.txt", "sub/deeper"]
        );
        assert_eq!(
            names(Glob::new("**", false, false).unwrap()),
            ["", "sub", "sub/deeper"]
        );
        assert!(Glob::new("../*", false, false).is_err());
        assert!(Glob::new("/etc/*", false, false).is_err());
        assert!(Glob::new("  ", false, false).is_err());
        let stop = || Err(NodeError::cancelled("stop"));
        std::fs::create_dir(root.join("many")).unwrap();
        for i in 0..300 {
            std::fs::write(root.join(format!("many/{i}")), "").unwrap();
        }
        let err = Glob::new("many/*", false, false)
            .unwrap()
            .matches(root, &stop)
            .unwrap_err();
        assert!(err.is_cancelled());
    }
}
