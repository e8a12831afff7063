//! Unit tests of the file nodes: each runs workflows in its own temp dir (the job work dir).

use super::archive::{MAX_ENTRIES, MAX_UNZIPPED_BYTES};
use crate::engine::runner::{self, RunOptions};
use crate::engine::safety::Safety;
use crate::engine::{load_str, CancelToken, Value};
use crate::nodes::testing::{chain, Ran, Recorder};
use serde_json::json;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

fn opts(dir: &Path, allowed: Vec<PathBuf>) -> RunOptions {
    RunOptions {
        seed: Some(7),
        safety: Safety {
            work_dir: Some(dir.to_path_buf()),
            allowed_paths: allowed,
            ..Safety::default()
        },
        ..RunOptions::default()
    }
}

fn run_with(options: &RunOptions, nodes: &[(&str, &str, serde_json::Value)]) -> Ran {
    let wf = load_str(&chain(nodes)).unwrap_or_else(|e| panic!("did not load: {e}"));
    let mut rec = Recorder::default();
    let outcome = runner::run(
        &wf,
        Default::default(),
        options,
        &CancelToken::new(),
        &mut rec,
    );
    Ran {
        outcome,
        logs: rec.logs,
        started: rec.started,
    }
}

/// Run nodes in `dir` (relative paths resolve there).
fn run_in(dir: &Path, nodes: &[(&str, &str, serde_json::Value)]) -> Ran {
    run_with(&opts(dir, Vec::new()), nodes)
}

/// Run one node in `dir`.
fn one(dir: &Path, ty: &str, config: serde_json::Value) -> Ran {
    run_in(dir, &[("n", ty, config)])
}

fn ok(r: &Ran) {
    assert_eq!(r.error(), "", "unexpected failure");
}

fn err_of(r: &Ran) -> (String, String) {
    let e = r
        .outcome
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure, outputs: {:?}", r.outcome.node_outputs));
    (e.error_type.clone(), e.message.clone())
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not text: {v:?}"))
        .to_string()
}

fn abs(dir: &Path, rel: &str) -> String {
    dir.join(rel).to_string_lossy().into_owned()
}

#[cfg(unix)]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn read_file_text_size_and_errors() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("a.txt"), "line1\r\nline2\rline3\n").unwrap();
    let r = one(dir, "ReadFileNode", json!({"file_path": "a.txt"}));
    ok(&r);
    assert_eq!(s(&r.out("n", "content")), "line1\nline2\nline3\n");
    assert!(matches!(r.out("n", "size"), Value::Int(19)));
    assert!(matches!(r.out("n", "success"), Value::Bool(true)));

    // Missing file.
    let (kind, msg) = err_of(&one(dir, "ReadFileNode", json!({"file_path": "nope.txt"})));
    assert_eq!(kind, "FileNotFoundError");
    assert_eq!(
        msg,
        format!(
            "cannot read '{}': no such file or directory",
            abs(dir, "nope.txt")
        )
    );
    // A directory.
    fs::create_dir(dir.join("sub")).unwrap();
    let (kind, _) = err_of(&one(dir, "ReadFileNode", json!({"file_path": "sub"})));
    assert_eq!(kind, "IsADirectoryError");
    // max_size.
    let (kind, msg) = err_of(&one(
        dir,
        "ReadFileNode",
        json!({"file_path": "a.txt", "max_size": 5}),
    ));
    assert_eq!(kind, "ValueError");
    assert!(
        msg.ends_with("is 19 bytes, over max_size (5 bytes)"),
        "{msg}"
    );
}

#[test]
fn read_file_non_utf8_names_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("latin.txt"), b"caf\xe9 ok").unwrap();
    let (kind, msg) = err_of(&one(dir, "ReadFileNode", json!({"file_path": "latin.txt"})));
    assert_eq!(kind, "UnicodeDecodeError");
    assert_eq!(
        msg,
        format!(
            "cannot decode '{}' as utf-8: byte 0xe9 at offset 3 (invalid continuation byte); set \
             'encoding' (e.g. cp1252 or latin-1) or errors='replace'",
            abs(dir, "latin.txt")
        )
    );
    for (config, want) in [
        (
            json!({"file_path": "latin.txt", "encoding": "latin-1"}),
            "café ok",
        ),
        (
            json!({"file_path": "latin.txt", "encoding": "cp1252"}),
            "café ok",
        ),
        (
            json!({"file_path": "latin.txt", "errors": "replace"}),
            "caf\u{FFFD} ok",
        ),
        (
            json!({"file_path": "latin.txt", "errors": "ignore"}),
            "caf ok",
        ),
    ] {
        let r = one(dir, "ReadFileNode", config.clone());
        ok(&r);
        assert_eq!(s(&r.out("n", "content")), want, "{config}");
    }
    // The super node replaces by default, as upstream.
    let r = one(
        dir,
        "FileSystemSuperNode",
        json!({"file_path": "latin.txt"}),
    );
    ok(&r);
    assert_eq!(s(&r.out("n", "content")), "caf\u{FFFD} ok");
    let (kind, msg) = err_of(&one(
        dir,
        "ReadFileNode",
        json!({"file_path": "latin.txt", "encoding": "klingon"}),
    ));
    assert_eq!(kind, "LookupError");
    assert!(msg.starts_with("unknown encoding: klingon"), "{msg}");
}

#[test]
fn encodings_round_trip_through_write_and_read() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let text = "Grüße € “quotes”";
    for (enc, first_bytes) in [
        ("utf-8", &b"Gr\xc3\xbc"[..]),
        ("utf-8-sig", &b"\xef\xbb\xbfGr"[..]),
        ("cp1252", &b"Gr\xfc\xdf"[..]),
        ("windows-1252", &b"Gr\xfc\xdf"[..]),
        ("utf-16", &b"\xff\xfeG\x00"[..]),
    ] {
        let file = format!("{enc}.txt");
        let r = run_in(
            dir,
            &[
                (
                    "w",
                    "WriteFileNode",
                    json!({"file_path": file, "content": text, "encoding": enc}),
                ),
                (
                    "r",
                    "ReadFileNode",
                    json!({"file_path": file, "encoding": enc}),
                ),
            ],
        );
        ok(&r);
        let bytes = fs::read(dir.join(&file)).unwrap();
        assert!(bytes.starts_with(first_bytes), "{enc}: {bytes:?}");
        assert_eq!(s(&r.out("r", "content")), text, "{enc}");
        assert!(
            matches!(r.out("w", "bytes_written"), Value::Int(16)),
            "{enc}"
        );
    }
    // latin-1 cannot hold € or the curly quotes: strict fails, replace writes '?'.
    let (kind, msg) = err_of(&one(
        dir,
        "WriteFileNode",
        json!({"file_path": "l1.txt", "content": text, "encoding": "latin-1"}),
    ));
    assert_eq!(kind, "UnicodeEncodeError");
    assert!(
        msg.contains("as latin-1: character '€' (U+20AC) at position 6 cannot be encoded"),
        "{msg}"
    );
    assert!(
        !dir.join("l1.txt").exists(),
        "a failed write leaves nothing"
    );
    let r = one(
        dir,
        "WriteFileNode",
        json!({"file_path": "l1.txt", "content": text, "encoding": "iso-8859-1", "errors": "replace"}),
    );
    ok(&r);
    assert_eq!(
        fs::read(dir.join("l1.txt")).unwrap(),
        b"Gr\xfc\xdfe ? ?quotes?"
    );
    let r = one(
        dir,
        "WriteFileNode",
        json!({"file_path": "a.txt", "content": "é", "encoding": "ascii", "errors": "xmlcharrefreplace"}),
    );
    ok(&r);
    assert_eq!(fs::read(dir.join("a.txt")).unwrap(), b"&#233;");
    // utf-16 append to a non-empty file writes no second BOM.
    let r = one(
        dir,
        "AppendFileNode",
        json!({"file_path": "utf-16.txt", "content": "!", "encoding": "utf-16"}),
    );
    ok(&r);
    let r = one(
        dir,
        "ReadFileNode",
        json!({"file_path": "utf-16.txt", "encoding": "utf-16"}),
    );
    assert_eq!(s(&r.out("n", "content")), format!("{text}!"));
}

#[test]
fn write_file_is_atomic_and_respects_permissions() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let r = one(
        dir,
        "WriteFileNode",
        json!({"file_path": "deep/er/x.txt", "content": "hello"}),
    );
    ok(&r);
    assert_eq!(s(&r.out("n", "file_path")), abs(dir, "deep/er/x.txt"));
    assert_eq!(
        r.out("n", "attachment_file").py_repr(),
        format!("['{}']", abs(dir, "deep/er/x.txt"))
    );
    assert_eq!(
        fs::read_to_string(dir.join("deep/er/x.txt")).unwrap(),
        "hello"
    );
    // Overwrite; no temporary files left behind.
    ok(&one(
        dir,
        "WriteFileNode",
        json!({"file_path": "deep/er/x.txt", "content": "bye"}),
    ));
    assert_eq!(
        fs::read_to_string(dir.join("deep/er/x.txt")).unwrap(),
        "bye"
    );
    let names: Vec<_> = fs::read_dir(dir.join("deep/er"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(names.len(), 1);
    // create_dirs false with a missing parent.
    let (kind, _) = err_of(&one(
        dir,
        "WriteFileNode",
        json!({"file_path": "missing/x.txt", "content": "a", "create_dirs": false}),
    ));
    assert_eq!(kind, "FileNotFoundError");
    // Writing onto a directory.
    let (kind, _) = err_of(&one(
        dir,
        "WriteFileNode",
        json!({"file_path": "deep", "content": "a"}),
    ));
    assert_eq!(kind, "IsADirectoryError");
    // append_mode, and a non-text content value.
    let r = run_in(
        dir,
        &[
            (
                "a",
                "WriteFileNode",
                json!({"file_path": "log.txt", "content": "1"}),
            ),
            (
                "b",
                "WriteFileNode",
                json!({"file_path": "log.txt", "content": 2, "append_mode": true}),
            ),
        ],
    );
    ok(&r);
    assert_eq!(fs::read_to_string(dir.join("log.txt")).unwrap(), "12");
}

/// Permission errors (chmod on unix). As root the check re-runs this test in a child process as
/// `nobody`, since root ignores file modes.
#[cfg(unix)]
#[test]
fn permission_errors() {
    use std::os::unix::fs::PermissionsExt;
    const CHILD: &str = "CASARE_FILE_TEST_AS_NOBODY";
    if is_root() {
        assert!(
            std::env::var_os(CHILD).is_none(),
            "the child still runs as root"
        );
        use std::os::unix::process::CommandExt;
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "nodes::file::tests::permission_errors",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("TMPDIR", "/tmp")
            .current_dir("/tmp")
            .uid(65534)
            .gid(65534)
            .output()
            .expect("cannot run the test binary as nobody");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "as nobody: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let mode =
        |p: &str, m: u32| fs::set_permissions(dir.join(p), fs::Permissions::from_mode(m)).unwrap();
    fs::write(dir.join("locked.txt"), "keep").unwrap();
    mode("locked.txt", 0o000);
    let (kind, msg) = err_of(&one(
        dir,
        "WriteFileNode",
        json!({"file_path": "locked.txt", "content": "x"}),
    ));
    assert_eq!(kind, "PermissionError");
    assert_eq!(
        msg,
        format!(
            "cannot write '{}': permission denied",
            abs(dir, "locked.txt")
        )
    );
    let (kind, msg) = err_of(&one(
        dir,
        "ReadFileNode",
        json!({"file_path": "locked.txt"}),
    ));
    assert_eq!(kind, "PermissionError");
    assert_eq!(
        msg,
        format!(
            "cannot read '{}': permission denied",
            abs(dir, "locked.txt")
        )
    );
    let (kind, _) = err_of(&one(
        dir,
        "FileSystemSuperNode",
        json!({"action": "Append File", "file_path": "locked.txt", "content": "x"}),
    ));
    assert_eq!(kind, "PermissionError");
    let (kind, msg) = err_of(&one(
        dir,
        "CopyFileNode",
        json!({"source_path": "locked.txt", "dest_path": "c.txt"}),
    ));
    assert_eq!(kind, "PermissionError");
    assert!(
        msg.starts_with(&format!("cannot copy '{}'", abs(dir, "locked.txt"))),
        "{msg}"
    );
    let (kind, _) = err_of(&one(dir, "ReadCSVNode", json!({"file_path": "locked.txt"})));
    assert_eq!(kind, "PermissionError");
    mode("locked.txt", 0o644);
    assert_eq!(fs::read_to_string(dir.join("locked.txt")).unwrap(), "keep");
    // A read-only directory: no temp file, no delete, no new file.
    fs::create_dir(dir.join("ro")).unwrap();
    fs::write(dir.join("ro/old.txt"), "old").unwrap();
    mode("ro", 0o555);
    for (ty, config) in [
        (
            "WriteFileNode",
            json!({"file_path": "ro/new.txt", "content": "x"}),
        ),
        (
            "WriteJSONFileNode",
            json!({"file_path": "ro/new.json", "data": [1]}),
        ),
        ("DeleteFileNode", json!({"file_path": "ro/old.txt"})),
        ("CreateDirectoryNode", json!({"directory_path": "ro/sub"})),
        (
            "MoveFileNode",
            json!({"source_path": "ro/old.txt", "dest_path": "moved.txt"}),
        ),
    ] {
        let (kind, msg) = err_of(&one(dir, ty, config));
        assert_eq!(kind, "PermissionError", "{ty}: {msg}");
        assert!(msg.contains("permission denied"), "{ty}: {msg}");
    }
    mode("ro", 0o755);
    assert_eq!(fs::read_dir(dir.join("ro")).unwrap().count(), 1);
    // An unreadable directory cannot be listed.
    fs::create_dir(dir.join("closed")).unwrap();
    mode("closed", 0o000);
    let (kind, _) = err_of(&one(
        dir,
        "ListFilesNode",
        json!({"directory_path": "closed"}),
    ));
    assert_eq!(kind, "PermissionError");
    mode("closed", 0o755);
}

#[test]
fn binary_mode_reads_and_writes_byte_lists() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("b.bin"), [0u8, 255, 10, 13]).unwrap();
    let r = run_in(
        dir,
        &[
            (
                "r",
                "ReadFileNode",
                json!({"file_path": "b.bin", "binary_mode": true}),
            ),
            (
                "w",
                "WriteFileNode",
                json!({"file_path": "copy.bin", "content": "{{r.content}}", "binary_mode": true}),
            ),
            (
                "t",
                "WriteFileNode",
                json!({"file_path": "t.bin", "content": "é", "binary_mode": true, "encoding": "latin-1"}),
            ),
        ],
    );
    ok(&r);
    assert_eq!(r.out("r", "content").py_repr(), "[0, 255, 10, 13]");
    assert_eq!(fs::read(dir.join("copy.bin")).unwrap(), [0u8, 255, 10, 13]);
    assert!(matches!(r.out("w", "bytes_written"), Value::Int(4)));
    assert_eq!(fs::read(dir.join("t.bin")).unwrap(), [0xe9]);
    let (kind, msg) = err_of(&one(
        dir,
        "WriteFileNode",
        json!({"file_path": "x.bin", "content": [1, 256], "binary_mode": true}),
    ));
    assert_eq!(kind, "ValueError");
    assert!(msg.contains("item 1 is 256"), "{msg}");
}

#[test]
fn append_file_node() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let r = run_in(
        dir,
        &[
            (
                "a",
                "AppendFileNode",
                json!({"file_path": "new/log.txt", "content": "one"}),
            ),
            (
                "b",
                "AppendFileNode",
                json!({"file_path": "new/log.txt", "content": "\ntwo"}),
            ),
        ],
    );
    ok(&r);
    assert!(matches!(r.out("b", "bytes_written"), Value::Int(4)));
    assert_eq!(
        fs::read_to_string(dir.join("new/log.txt")).unwrap(),
        "one\ntwo"
    );
    let (kind, msg) = err_of(&one(
        dir,
        "AppendFileNode",
        json!({"file_path": "none.txt", "content": "x", "create_if_missing": false}),
    ));
    assert_eq!(kind, "FileNotFoundError");
    assert!(msg.contains("create_if_missing is false"), "{msg}");
}

#[test]
fn delete_file_node() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("x.txt"), "x").unwrap();
    let r = one(dir, "DeleteFileNode", json!({"file_path": "x.txt"}));
    ok(&r);
    assert_eq!(s(&r.out("n", "deleted_path")), abs(dir, "x.txt"));
    assert!(!dir.join("x.txt").exists());
    let (kind, msg) = err_of(&one(dir, "DeleteFileNode", json!({"file_path": "x.txt"})));
    assert_eq!(kind, "FileNotFoundError");
    assert!(msg.contains("set ignore_missing"), "{msg}");
    ok(&one(
        dir,
        "DeleteFileNode",
        json!({"file_path": "x.txt", "ignore_missing": true}),
    ));
    fs::create_dir(dir.join("d")).unwrap();
    let (kind, _) = err_of(&one(dir, "DeleteFileNode", json!({"file_path": "d"})));
    assert_eq!(kind, "IsADirectoryError");
    assert!(dir.join("d").is_dir());
}

#[test]
fn copy_and_move_nodes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("src.txt"), "0123456789").unwrap();
    let r = one(
        dir,
        "CopyFileNode",
        json!({"source_path": "src.txt", "dest_path": "out/dst.txt"}),
    );
    ok(&r);
    assert!(matches!(r.out("n", "bytes_copied"), Value::Int(10)));
    assert_eq!(s(&r.out("n", "dest_path")), abs(dir, "out/dst.txt"));
    assert_eq!(
        fs::metadata(dir.join("src.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        fs::metadata(dir.join("out/dst.txt"))
            .unwrap()
            .modified()
            .unwrap()
    );
    // Existing destination: refused without overwrite, replaced with it.
    fs::write(dir.join("src.txt"), "new").unwrap();
    let (kind, msg) = err_of(&one(
        dir,
        "CopyFileNode",
        json!({"source_path": "src.txt", "dest_path": "out/dst.txt"}),
    ));
    assert_eq!(kind, "FileExistsError");
    assert_eq!(
        msg,
        format!(
            "cannot copy to '{}': the destination already exists (set overwrite to replace it)",
            abs(dir, "out/dst.txt")
        )
    );
    ok(&one(
        dir,
        "CopyFileNode",
        json!({"source_path": "src.txt", "dest_path": "out/dst.txt", "overwrite": true}),
    ));
    assert_eq!(fs::read_to_string(dir.join("out/dst.txt")).unwrap(), "new");
    // Into a directory.
    let r = one(
        dir,
        "CopyFileNode",
        json!({"source_path": "src.txt", "dest_path": "out"}),
    );
    ok(&r);
    assert_eq!(s(&r.out("n", "dest_path")), abs(dir, "out/src.txt"));
    // Onto itself, missing source, a directory source.
    let (kind, _) = err_of(&one(
        dir,
        "CopyFileNode",
        json!({"source_path": "src.txt", "dest_path": "src.txt", "overwrite": true}),
    ));
    assert_eq!(kind, "ValueError");
    assert_eq!(fs::read_to_string(dir.join("src.txt")).unwrap(), "new");
    let (kind, msg) = err_of(&one(
        dir,
        "CopyFileNode",
        json!({"source_path": "ghost.txt", "dest_path": "g2.txt"}),
    ));
    assert_eq!(kind, "FileNotFoundError");
    assert!(msg.ends_with("source file not found"), "{msg}");
    let (kind, _) = err_of(&one(
        dir,
        "CopyFileNode",
        json!({"source_path": "out", "dest_path": "out2"}),
    ));
    assert_eq!(kind, "IsADirectoryError");

    // Move: rename, refuse an existing destination, overwrite, into a directory.
    let r = one(
        dir,
        "MoveFileNode",
        json!({"source_path": "src.txt", "dest_path": "moved/m.txt"}),
    );
    ok(&r);
    assert!(!dir.join("src.txt").exists());
    assert_eq!(fs::read_to_string(dir.join("moved/m.txt")).unwrap(), "new");
    fs::write(dir.join("b.txt"), "b").unwrap();
    let (kind, _) = err_of(&one(
        dir,
        "MoveFileNode",
        json!({"source_path": "b.txt", "dest_path": "moved/m.txt"}),
    ));
    assert_eq!(kind, "FileExistsError");
    assert!(dir.join("b.txt").exists());
    ok(&one(
        dir,
        "MoveFileNode",
        json!({"source_path": "b.txt", "dest_path": "moved/m.txt", "overwrite": true}),
    ));
    assert_eq!(fs::read_to_string(dir.join("moved/m.txt")).unwrap(), "b");
    let r = one(
        dir,
        "MoveFileNode",
        json!({"source_path": "moved/m.txt", "dest_path": "out"}),
    );
    ok(&r);
    assert_eq!(s(&r.out("n", "dest_path")), abs(dir, "out/m.txt"));
    // Directories move too.
    ok(&one(
        dir,
        "MoveFileNode",
        json!({"source_path": "moved", "dest_path": "renamed"}),
    ));
    assert!(dir.join("renamed").is_dir());
}

#[test]
fn create_directory_node() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let r = one(
        dir,
        "CreateDirectoryNode",
        json!({"directory_path": "a/b/c"}),
    );
    ok(&r);
    assert_eq!(s(&r.out("n", "dir_path")), abs(dir, "a/b/c"));
    assert!(dir.join("a/b/c").is_dir());
    ok(&one(
        dir,
        "CreateDirectoryNode",
        json!({"directory_path": "a/b/c"}),
    ));
    let (kind, msg) = err_of(&one(
        dir,
        "CreateDirectoryNode",
        json!({"directory_path": "a/b/c", "exist_ok": false}),
    ));
    assert_eq!(kind, "FileExistsError");
    assert!(msg.contains("exist_ok is false"), "{msg}");
    let (kind, _) = err_of(&one(
        dir,
        "CreateDirectoryNode",
        json!({"directory_path": "x/y", "parents": false}),
    ));
    assert_eq!(kind, "FileNotFoundError");
    fs::write(dir.join("f"), "").unwrap();
    let (kind, msg) = err_of(&one(
        dir,
        "CreateDirectoryNode",
        json!({"directory_path": "f"}),
    ));
    assert_eq!(kind, "FileExistsError");
    assert!(msg.ends_with("a file with that name exists"), "{msg}");
}

#[test]
fn listing_nodes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::create_dir_all(dir.join("data/sub")).unwrap();
    for f in ["data/b.txt", "data/a.txt", "data/c.csv", "data/sub/d.txt"] {
        fs::write(dir.join(f), "x").unwrap();
    }
    let list = |v: Value| -> Vec<String> {
        v.as_list()
            .unwrap()
            .iter()
            .map(|p| {
                Path::new(p.as_str().unwrap())
                    .strip_prefix(dir.join("data"))
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .collect()
    };
    let r = one(dir, "ListFilesNode", json!({"directory_path": "data"}));
    ok(&r);
    assert_eq!(list(r.out("n", "files")), ["a.txt", "b.txt", "c.csv"]);
    assert!(matches!(r.out("n", "count"), Value::Int(3)));
    let r = one(
        dir,
        "ListFilesNode",
        json!({"directory_path": "data", "pattern": "*.txt", "recursive": true}),
    );
    assert_eq!(list(r.out("n", "files")), ["a.txt", "b.txt", "sub/d.txt"]);
    let r = one(dir, "ListDirectoryNode", json!({"dir_path": "data"}));
    assert_eq!(
        list(r.out("n", "items")),
        ["a.txt", "b.txt", "c.csv", "sub"]
    );
    let r = one(
        dir,
        "ListDirectoryNode",
        json!({"dir_path": "data", "dirs_only": true}),
    );
    assert_eq!(list(r.out("n", "items")), ["sub"]);
    let r = one(
        dir,
        "ListDirectoryNode",
        json!({"dir_path": "data", "files_only": true, "pattern": "[ab]*"}),
    );
    assert_eq!(list(r.out("n", "items")), ["a.txt", "b.txt"]);
    let (kind, _) = err_of(&one(
        dir,
        "ListFilesNode",
        json!({"directory_path": "nope"}),
    ));
    assert_eq!(kind, "FileNotFoundError");
    let (kind, _) = err_of(&one(
        dir,
        "ListFilesNode",
        json!({"directory_path": "data/a.txt"}),
    ));
    assert_eq!(kind, "NotADirectoryError");
    let (kind, msg) = err_of(&one(dir, "ListFilesNode", json!({})));
    assert_eq!(
        (kind.as_str(), msg.as_str()),
        ("ValueError", "directory_path is required")
    );
    let (kind, _) = err_of(&one(
        dir,
        "ListDirectoryNode",
        json!({"dir_path": "data", "pattern": "../*"}),
    ));
    assert_eq!(kind, "PermissionError");
}

#[test]
fn exists_size_and_info_nodes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("report.tar.gz"), "12345").unwrap();
    fs::create_dir(dir.join("folder")).unwrap();
    for (path, check, want) in [
        ("report.tar.gz", "any", (true, true, false)),
        ("report.tar.gz", "directory", (false, true, false)),
        ("folder", "file", (false, false, true)),
        ("folder", "directory", (true, false, true)),
        ("ghost", "any", (false, false, false)),
    ] {
        let r = one(
            dir,
            "FileExistsNode",
            json!({"path": path, "check_type": check}),
        );
        ok(&r);
        let got = (
            r.out("n", "exists").truthy(),
            r.out("n", "is_file").truthy(),
            r.out("n", "is_dir").truthy(),
        );
        assert_eq!(got, want, "{path} {check}");
    }
    let (kind, _) = err_of(&one(
        dir,
        "FileExistsNode",
        json!({"path": "x", "check_type": "pipe"}),
    ));
    assert_eq!(kind, "ValueError");

    let r = one(
        dir,
        "GetFileSizeNode",
        json!({"file_path": "report.tar.gz"}),
    );
    assert!(matches!(r.out("n", "size"), Value::Int(5)));
    let (kind, msg) = err_of(&one(dir, "GetFileSizeNode", json!({"file_path": "ghost"})));
    assert_eq!(kind, "FileNotFoundError");
    assert_eq!(msg, format!("file not found: '{}'", abs(dir, "ghost")));

    let r = one(
        dir,
        "GetFileInfoNode",
        json!({"file_path": "report.tar.gz"}),
    );
    ok(&r);
    assert!(matches!(r.out("n", "size"), Value::Int(5)));
    assert_eq!(s(&r.out("n", "extension")), ".gz");
    assert_eq!(s(&r.out("n", "name")), "report.tar.gz");
    assert_eq!(s(&r.out("n", "parent")), dir.to_string_lossy());
    let iso = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$").unwrap();
    assert!(
        iso.is_match(&s(&r.out("n", "modified"))),
        "{:?}",
        r.out("n", "modified")
    );
    assert!(iso.is_match(&s(&r.out("n", "created"))));
    assert_eq!(super::suffix(".bashrc"), "");
    assert_eq!(super::suffix("a."), "");
    assert_eq!(super::suffix("a.b"), ".b");
}

#[test]
fn csv_nodes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(
        dir.join("in.csv"),
        "# export\r\nname,age,city\r\nAnn,30,\"Paris, FR\"\r\nBob,41\r\n\r\n\"Cé\"\"z\",7,Rome,extra\r\n",
    )
    .unwrap();
    let r = one(
        dir,
        "ReadCSVNode",
        json!({"file_path": "in.csv", "skip_rows": 1}),
    );
    ok(&r);
    assert_eq!(r.out("n", "headers").py_repr(), "['name', 'age', 'city']");
    assert_eq!(
        r.out("n", "data").py_repr(),
        "[{'name': 'Ann', 'age': '30', 'city': 'Paris, FR'}, \
         {'name': 'Bob', 'age': '41', 'city': None}, \
         {'name': 'Cé\"z', 'age': '7', 'city': 'Rome', 'None': ['extra']}]"
    );
    assert!(matches!(r.out("n", "row_count"), Value::Int(3)));
    let r = one(
        dir,
        "ReadCSVNode",
        json!({"file_path": "in.csv", "skip_rows": 2, "has_header": false, "max_rows": 1}),
    );
    assert_eq!(r.out("n", "data").py_repr(), "[['Ann', '30', 'Paris, FR']]");
    assert_eq!(r.out("n", "headers").py_repr(), "[]");
    fs::write(dir.join("semi.csv"), "a;b\n1;2\n").unwrap();
    let r = one(
        dir,
        "ReadCSVNode",
        json!({"file_path": "semi.csv", "delimiter": ";"}),
    );
    assert_eq!(r.out("n", "data").py_repr(), "[{'a': '1', 'b': '2'}]");
    fs::write(dir.join("tab.csv"), "a\tb\n1\t2\n").unwrap();
    let r = one(
        dir,
        "ReadCSVNode",
        json!({"file_path": "tab.csv", "delimiter": "\\t"}),
    );
    assert_eq!(r.out("n", "data").py_repr(), "[{'a': '1', 'b': '2'}]");
    let (kind, _) = err_of(&one(
        dir,
        "ReadCSVNode",
        json!({"file_path": "tab.csv", "delimiter": ";;"}),
    ));
    assert_eq!(kind, "TypeError");
    let (kind, _) = err_of(&one(dir, "ReadCSVNode", json!({"file_path": "none.csv"})));
    assert_eq!(kind, "FileNotFoundError");

    // Write dict rows (columns from the first row), then list rows with headers.
    let r = run_in(
        dir,
        &[
            (
                "w",
                "WriteCSVNode",
                json!({"file_path": "out/people.csv", "data": [
                    {"name": "Ann", "note": "says \"hi\", twice", "n": 1.5},
                    {"name": "Bob", "n": null}
                ]}),
            ),
            (
                "l",
                "WriteCSVNode",
                json!({"file_path": "out/rows.csv", "data": [[1, true], ["x\ny", null]],
                        "headers": "a, b", "delimiter": ";"}),
            ),
            ("r", "ReadCSVNode", json!({"file_path": "out/people.csv"})),
        ],
    );
    ok(&r);
    assert_eq!(
        fs::read_to_string(dir.join("out/people.csv")).unwrap(),
        "name,note,n\r\nAnn,\"says \"\"hi\"\", twice\",1.5\r\nBob,,\r\n"
    );
    assert_eq!(
        fs::read_to_string(dir.join("out/rows.csv")).unwrap(),
        "a;b\r\n1;True\r\n\"x\ny\";\r\n"
    );
    assert!(matches!(r.out("w", "row_count"), Value::Int(2)));
    assert_eq!(
        r.out("r", "data").py_repr(),
        "[{'name': 'Ann', 'note': 'says \"hi\", twice', 'n': '1.5'}, {'name': 'Bob', 'note': '', 'n': ''}]"
    );
    let (kind, msg) = err_of(&one(
        dir,
        "WriteCSVNode",
        json!({"file_path": "bad.csv", "data": [{"a": 1}], "headers": ["b"]}),
    ));
    assert_eq!(kind, "ValueError");
    assert!(
        msg.starts_with("dict contains fields not in fieldnames: 'a'"),
        "{msg}"
    );
    let (kind, _) = err_of(&one(
        dir,
        "WriteCSVNode",
        json!({"file_path": "bad.csv", "data": [[1], 2]}),
    ));
    assert_eq!(kind, "TypeError");
    assert!(!dir.join("bad.csv").exists());
}

#[test]
fn json_file_nodes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let r = run_in(
        dir,
        &[
            (
                "w",
                "WriteJSONFileNode",
                json!({"file_path": "out/d.json", "data": {"name": "Zoë", "n": [1, 2.5, null, true]}}),
            ),
            ("r", "ReadJSONFileNode", json!({"file_path": "out/d.json"})),
            (
                "a",
                "WriteJSONFileNode",
                json!({"file_path": "out/a.json", "data": "{{r.data}}", "indent": "", "ensure_ascii": true}),
            ),
        ],
    );
    ok(&r);
    assert_eq!(
        fs::read_to_string(dir.join("out/d.json")).unwrap(),
        "{\n  \"name\": \"Zoë\",\n  \"n\": [\n    1,\n    2.5,\n    null,\n    true\n  ]\n}"
    );
    assert_eq!(
        r.out("r", "data").py_repr(),
        "{'name': 'Zoë', 'n': [1, 2.5, None, True]}"
    );
    assert_eq!(
        fs::read_to_string(dir.join("out/a.json")).unwrap(),
        "{\"name\": \"Zo\\u00eb\", \"n\": [1, 2.5, null, true]}"
    );
    fs::write(dir.join("bom.json"), b"\xef\xbb\xbf[1]").unwrap();
    let r = one(dir, "ReadJSONFileNode", json!({"file_path": "bom.json"}));
    assert_eq!(r.out("n", "data").py_repr(), "[1]");
    fs::write(dir.join("bad.json"), "{\"a\": }").unwrap();
    let (kind, msg) = err_of(&one(
        dir,
        "ReadJSONFileNode",
        json!({"file_path": "bad.json"}),
    ));
    assert_eq!(kind, "ValueError");
    assert!(
        msg.starts_with(&format!("invalid JSON in '{}'", abs(dir, "bad.json"))),
        "{msg}"
    );
    assert!(msg.contains("line 1 column"), "{msg}");
    let (kind, _) = err_of(&one(
        dir,
        "ReadJSONFileNode",
        json!({"file_path": "ghost.json"}),
    ));
    assert_eq!(kind, "FileNotFoundError");
}

fn make_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let f = fs::File::create(path).unwrap();
    let mut zw = zip::ZipWriter::new(f);
    for (name, data) in entries {
        if name.ends_with('/') {
            zw.add_directory(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
        } else {
            zw.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zw.write_all(data).unwrap();
        }
    }
    zw.finish().unwrap();
}

#[test]
fn zip_and_unzip_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::create_dir_all(dir.join("src/sub")).unwrap();
    fs::write(dir.join("src/a.txt"), "alpha").unwrap();
    fs::write(dir.join("src/sub/b.csv"), "x,y").unwrap();
    fs::write(dir.join("src/.hidden"), "h").unwrap();
    let r = run_in(
        dir,
        &[
            (
                "z",
                "ZipFilesNode",
                json!({"zip_path": "out/all.zip", "source_path": "src"}),
            ),
            (
                "u",
                "UnzipFilesNode",
                json!({"zip_path": "out/all.zip", "extract_to": "back"}),
            ),
            (
                "g",
                "ZipFilesNode",
                json!({"zip_path": "out/txt.zip", "source_path": "src/**/*.*", "compression": "ZIP_STORED"}),
            ),
            (
                "l",
                "ZipFilesNode",
                json!({"zip_path": "out/list.zip", "files": ["src/a.txt", "src/sub/b.csv", "src/ghost"]}),
            ),
        ],
    );
    ok(&r);
    assert!(matches!(r.out("z", "file_count"), Value::Int(3)));
    assert_eq!(s(&r.out("z", "zip_path")), abs(dir, "out/all.zip"));
    assert_eq!(fs::read_to_string(dir.join("back/a.txt")).unwrap(), "alpha");
    assert_eq!(
        fs::read_to_string(dir.join("back/sub/b.csv")).unwrap(),
        "x,y"
    );
    assert_eq!(fs::read_to_string(dir.join("back/.hidden")).unwrap(), "h");
    assert!(matches!(r.out("u", "file_count"), Value::Int(3)));
    // A glob skips hidden names (Python's glob); base_dir is the fixed prefix.
    let names = |zip: &str| -> Vec<String> {
        let mut a = zip::ZipArchive::new(fs::File::open(dir.join(zip)).unwrap()).unwrap();
        let mut v: Vec<String> = (0..a.len())
            .map(|i| a.by_index(i).unwrap().name().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("out/txt.zip"), ["a.txt", "sub/b.csv"]);
    // A files list without base_dir stores bare names; missing files are skipped with a warning.
    assert_eq!(names("out/list.zip"), ["a.txt", "b.csv"]);
    assert!(matches!(r.out("l", "file_count"), Value::Int(2)));
    assert!(
        r.logs.iter().any(|l| l.contains("skipping 'src/ghost'")),
        "{:?}",
        r.logs
    );

    let (kind, msg) = err_of(&one(dir, "ZipFilesNode", json!({"zip_path": "e.zip"})));
    assert_eq!(kind, "ValueError");
    assert!(msg.starts_with("no files to zip"), "{msg}");
    fs::write(dir.join("src/sub/a.txt"), "dup").unwrap();
    let (kind, msg) = err_of(&one(
        dir,
        "ZipFilesNode",
        json!({"zip_path": "dup.zip", "files": ["src/a.txt", "src/sub/a.txt"]}),
    ));
    assert_eq!(kind, "ValueError");
    assert!(
        msg.starts_with("two files would be stored as 'a.txt'"),
        "{msg}"
    );
    assert!(!dir.join("dup.zip").exists());
    let (kind, _) = err_of(&one(
        dir,
        "UnzipFilesNode",
        json!({"zip_path": "ghost.zip", "extract_to": "x"}),
    ));
    assert_eq!(kind, "FileNotFoundError");
    fs::write(dir.join("fake.zip"), "not a zip").unwrap();
    let (kind, msg) = err_of(&one(
        dir,
        "UnzipFilesNode",
        json!({"zip_path": "fake.zip", "extract_to": "x"}),
    ));
    assert_eq!(kind, "BadZipFile");
    assert!(msg.contains("fake.zip"), "{msg}");
}

#[test]
fn unzip_refuses_zip_slip_before_writing_anything() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    for (i, evil) in [
        "../escape.txt",
        "ok/../../escape.txt",
        "/abs/escape.txt",
        "C:/escape.txt",
        "sub\\..\\..\\escape.txt",
        "dev/CON.txt",
    ]
    .iter()
    .enumerate()
    {
        let zip = dir.join(format!("evil{i}.zip"));
        make_zip(&zip, &[("good.txt", b"fine"), (evil, b"pwned")]);
        let r = one(
            dir,
            "UnzipFilesNode",
            json!({"zip_path": format!("evil{i}.zip"), "extract_to": format!("dest{i}")}),
        );
        let (kind, msg) = err_of(&r);
        assert_eq!(kind, "PermissionError", "{evil}");
        assert!(
            msg.starts_with(&format!("refused ZIP entry '{evil}'")),
            "{msg}"
        );
        assert!(
            !dir.join(format!("dest{i}/good.txt")).exists(),
            "{evil}: nothing extracted"
        );
    }
    assert!(!dir.join("escape.txt").exists());
    assert!(!d.path().parent().unwrap().join("escape.txt").exists());
}

#[cfg(unix)]
#[test]
fn unzip_never_writes_through_symlinks() {
    let d = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::create_dir(dir.join("dest")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.join("dest/link")).unwrap();
    make_zip(&dir.join("l.zip"), &[("link/x.txt", b"pwned")]);
    let (kind, msg) = err_of(&one(
        dir,
        "UnzipFilesNode",
        json!({"zip_path": "l.zip", "extract_to": "dest"}),
    ));
    assert_eq!(kind, "PermissionError");
    assert!(msg.contains("symbolic link"), "{msg}");
    assert!(!outside.path().join("x.txt").exists());
    std::os::unix::fs::symlink(outside.path().join("t.txt"), dir.join("dest/t.txt")).unwrap();
    make_zip(&dir.join("t.zip"), &[("t.txt", b"pwned")]);
    let (kind, _) = err_of(&one(
        dir,
        "UnzipFilesNode",
        json!({"zip_path": "t.zip", "extract_to": "dest"}),
    ));
    assert_eq!(kind, "PermissionError");
    assert!(!outside.path().join("t.txt").exists());
}

/// Patch every uncompressed-size field (local header and central directory) of a one-entry
/// archive to `size`, as a lying zip bomb does.
fn patch_sizes(zip: &mut [u8], size: u32) {
    let find = |sig: &[u8; 4], zip: &[u8]| zip.windows(4).position(|w| w == sig).unwrap();
    let local = find(b"PK\x03\x04", zip);
    zip[local + 22..local + 26].copy_from_slice(&size.to_le_bytes());
    let central = find(b"PK\x01\x02", zip);
    zip[central + 24..central + 28].copy_from_slice(&size.to_le_bytes());
}

#[test]
fn unzip_caps_size_and_entries() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // 2 MiB of zeros deflate to a few KiB; with the cap lowered to 1 MiB for this thread that is
    // a bomb. Its declared size is refused before anything is written.
    let mut bytes = Vec::new();
    {
        let mut zw = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zw.start_file("zeros.bin", opts).unwrap();
        zw.write_all(&vec![0u8; 2 * 1024 * 1024]).unwrap();
        zw.finish().unwrap();
    }
    assert!(bytes.len() < 64 * 1024);
    fs::write(dir.join("bomb.zip"), &bytes).unwrap();
    super::archive::TEST_CAP.with(|c| c.set(1024 * 1024));
    let (kind, msg) = err_of(&one(
        dir,
        "UnzipFilesNode",
        json!({"zip_path": "bomb.zip", "extract_to": "out"}),
    ));
    assert_eq!(kind, "ValueError");
    assert!(msg.contains("would extract 2097152 bytes"), "{msg}");
    assert!(msg.contains("zip bomb guard"), "{msg}");
    assert!(!dir.join("out/zeros.bin").exists());
    // The same bomb lying about its size (1 KiB declared): stopped while inflating, the partial
    // file removed.
    patch_sizes(&mut bytes, 1024);
    fs::write(dir.join("liar.zip"), &bytes).unwrap();
    let (kind, msg) = err_of(&one(
        dir,
        "UnzipFilesNode",
        json!({"zip_path": "liar.zip", "extract_to": "out2"}),
    ));
    // The zip crate notices the lie first; our own count is the second line of defence.
    assert_eq!(kind, "BadZipFile", "{msg}");
    assert!(
        msg.contains("larger than its declared uncompressed size"),
        "{msg}"
    );
    assert!(
        !dir.join("out2/zeros.bin").exists(),
        "the partial file is removed"
    );
    super::archive::TEST_CAP.with(|c| c.set(MAX_UNZIPPED_BYTES));
    assert_eq!(MAX_ENTRIES, 100_000);
}

#[test]
fn refused_paths_name_the_path_and_rule() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let cases = [
        (
            "ReadFileNode",
            json!({"file_path": "../etc/passwd"}),
            "'..' (parent directory)",
        ),
        (
            "WriteFileNode",
            json!({"file_path": "out\\..\\..\\x.txt", "content": "x"}),
            "'..'",
        ),
        ("ReadFileNode", json!({"file_path": "a\u{0}b"}), "NUL byte"),
        (
            "WriteFileNode",
            json!({"file_path": "out/NUL.txt", "content": "x"}),
            "Windows device name",
        ),
        (
            "CopyFileNode",
            json!({"source_path": "a.txt", "dest_path": "COM1"}),
            "Windows device name",
        ),
        (
            "FileSystemSuperNode",
            json!({"action": "Delete File", "file_path": "../x"}),
            "'..'",
        ),
        (
            "ZipFilesNode",
            json!({"zip_path": "z.zip", "files": ["../secret"]}),
            "'..'",
        ),
        (
            "ListFilesNode",
            json!({"directory_path": "aux"}),
            "Windows device name",
        ),
    ];
    fs::write(dir.join("a.txt"), "a").unwrap();
    for (ty, config, rule) in cases {
        let r = one(dir, ty, config.clone());
        let (kind, msg) = err_of(&r);
        assert_eq!(kind, "PermissionError", "{ty} {config}");
        assert!(msg.starts_with("refused path '"), "{msg}");
        assert!(msg.contains(rule), "{msg}");
        assert!(
            r.error().starts_with(&format!("n ({ty}): refused path")),
            "{}",
            r.error()
        );
    }
    // Outside allowed_paths (absolute and relative through the work dir).
    let inside = dir.join("inside");
    fs::create_dir(&inside).unwrap();
    let o = opts(&inside, vec![inside.clone()]);
    let outside = dir.join("a.txt").to_string_lossy().into_owned();
    let r = run_with(&o, &[("n", "ReadFileNode", json!({"file_path": outside}))]);
    let (kind, msg) = err_of(&r);
    assert_eq!(kind, "PermissionError");
    assert!(msg.contains("it is outside the allowed paths"), "{msg}");
    let r = run_with(
        &o,
        &[(
            "n",
            "WriteFileNode",
            json!({"file_path": "ok.txt", "content": "fine"}),
        )],
    );
    ok(&r);
    assert!(inside.join("ok.txt").exists());
    // Zip entries obey allowed_paths too: extracting to an allowed dir works.
    make_zip(&inside.join("z.zip"), &[("a/b.txt", b"b")]);
    let r = run_with(
        &o,
        &[(
            "n",
            "UnzipFilesNode",
            json!({"zip_path": "z.zip", "extract_to": "x"}),
        )],
    );
    ok(&r);
    assert_eq!(fs::read_to_string(inside.join("x/a/b.txt")).unwrap(), "b");
}

#[test]
fn super_node_runs_every_action() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let r = run_in(
        dir,
        &[
            (
                "mk",
                "FileSystemSuperNode",
                json!({"action": "create_directory", "directory_path": "w"}),
            ),
            (
                "wr",
                "FileSystemSuperNode",
                json!({"action": "WRITE FILE", "file_path": "w/a.txt", "content": "abc"}),
            ),
            (
                "ap",
                "FileSystemSuperNode",
                json!({"action": "Append File", "file_path": "w/a.txt", "content": "de"}),
            ),
            ("rd", "FileSystemSuperNode", json!({"file_path": "w/a.txt"})),
            (
                "ex",
                "FileSystemSuperNode",
                json!({"action": "File Exists", "path": "w/a.txt", "check_type": "file"}),
            ),
            (
                "sz",
                "FileSystemSuperNode",
                json!({"action": "Get File Size", "file_path": "w/a.txt"}),
            ),
            (
                "in",
                "FileSystemSuperNode",
                json!({"action": "get-file-info", "file_path": "w/a.txt"}),
            ),
            (
                "cp",
                "FileSystemSuperNode",
                json!({"action": "Copy File", "source_path": "w/a.txt", "dest_path": "w/b.txt"}),
            ),
            (
                "mv",
                "FileSystemSuperNode",
                json!({"action": "Move File", "source_path": "w/b.txt", "dest_path": "w/c.txt"}),
            ),
            (
                "lf",
                "FileSystemSuperNode",
                json!({"action": "List Files", "directory_path": "w"}),
            ),
            (
                "ld",
                "FileSystemSuperNode",
                json!({"action": "List Directory", "dir_path": ".", "dirs_only": true}),
            ),
            (
                "dl",
                "FileSystemSuperNode",
                json!({"action": "Delete File", "file_path": "w/c.txt"}),
            ),
        ],
    );
    ok(&r);
    assert_eq!(s(&r.out("mk", "dir_path")), abs(dir, "w"));
    assert!(matches!(r.out("wr", "bytes_written"), Value::Int(3)));
    assert!(r.out("wr", "attachment_file").is_null());
    assert!(matches!(r.out("ap", "bytes_written"), Value::Int(2)));
    assert_eq!(s(&r.out("rd", "content")), "abcde");
    assert!(matches!(r.out("rd", "size"), Value::Int(5)));
    assert!(r.out("ex", "exists").truthy());
    assert!(matches!(r.out("sz", "size"), Value::Int(5)));
    assert_eq!(s(&r.out("in", "extension")), ".txt");
    assert!(matches!(r.out("cp", "bytes_copied"), Value::Int(5)));
    assert_eq!(s(&r.out("mv", "dest_path")), abs(dir, "w/c.txt"));
    assert!(matches!(r.out("lf", "count"), Value::Int(2)));
    assert!(matches!(r.out("ld", "count"), Value::Int(1)));
    assert_eq!(s(&r.out("dl", "deleted_path")), abs(dir, "w/c.txt"));
    assert!(!dir.join("w/c.txt").exists());
    let (kind, msg) = err_of(&one(
        dir,
        "FileSystemSuperNode",
        json!({"action": "Shred File"}),
    ));
    assert_eq!(kind, "ValueError");
    assert!(msg.starts_with("unknown action 'Shred File'"), "{msg}");
}

#[test]
fn required_inputs_are_checked_at_load() {
    let err = load_str(&chain(&[("n", "ReadFileNode", json!({}))])).unwrap_err();
    assert!(
        err.to_string()
            .contains("required input \"file_path\" has no value"),
        "{err}"
    );
    let err = load_str(&chain(&[(
        "n",
        "CopyFileNode",
        json!({"source_path": "a"}),
    )]))
    .unwrap_err();
    assert!(err.to_string().contains("\"dest_path\""), "{err}");
}

#[cfg(unix)]
#[test]
fn writes_through_dangling_symlinks_out_of_the_allowed_paths_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let inside = d.path().join("inside");
    fs::create_dir(&inside).unwrap();
    fs::write(inside.join("src.txt"), "data").unwrap();
    let o = opts(&inside, vec![inside.clone()]);
    let cases = [
        (
            "AppendFileNode",
            json!({"file_path": "link", "content": "x"}),
        ),
        (
            "CopyFileNode",
            json!({"source_path": "src.txt", "dest_path": "link"}),
        ),
        (
            "WriteXMLFileNode",
            json!({"file_path": "link", "xml_string": "<r/>"}),
        ),
        (
            "WriteFileNode",
            json!({"file_path": "link", "content": "x"}),
        ),
        (
            "WriteJSONFileNode",
            json!({"file_path": "link", "data": {"a": 1}}),
        ),
        (
            "FileSystemSuperNode",
            json!({"action": "Write File", "file_path": "link", "content": "x"}),
        ),
    ];
    for (i, (ty, config)) in cases.iter().enumerate() {
        let target = d.path().join(format!("escaped-{i}.txt"));
        let _ = fs::remove_file(inside.join("link"));
        std::os::unix::fs::symlink(&target, inside.join("link")).unwrap();
        let r = run_with(&o, &[("n", ty, config.clone())]);
        let (kind, msg) = err_of(&r);
        assert_eq!(kind, "PermissionError", "{ty}: {msg}");
        assert!(
            msg.contains("it is outside the allowed paths"),
            "{ty}: {msg}"
        );
        assert!(!target.exists(), "{ty} wrote through the link");
    }
}

#[cfg(unix)]
#[test]
fn zip_files_does_not_follow_symlinks_out_of_the_allowed_paths() {
    let d = tempfile::tempdir().unwrap();
    let inside = d.path().join("inside");
    fs::create_dir_all(inside.join("folder")).unwrap();
    fs::write(inside.join("folder/ok.txt"), "ok").unwrap();
    fs::write(d.path().join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(d.path().join("secret.txt"), inside.join("folder/s.txt")).unwrap();
    let o = opts(&inside, vec![inside.clone()]);
    for config in [
        json!({"zip_path": "a.zip", "source_path": "folder"}),
        json!({"zip_path": "a.zip", "source_path": "folder/*.txt"}),
        json!({"zip_path": "a.zip", "files": ["folder"]}),
    ] {
        let r = run_with(&o, &[("n", "ZipFilesNode", config.clone())]);
        let (kind, msg) = err_of(&r);
        assert_eq!(kind, "PermissionError", "{config}: {msg}");
        assert!(
            msg.contains("s.txt") && msg.contains("outside the allowed paths"),
            "{config}: {msg}"
        );
        assert!(!inside.join("a.zip").exists(), "{config}");
    }
    // Without the link the folder zips.
    fs::remove_file(inside.join("folder/s.txt")).unwrap();
    let r = run_with(
        &o,
        &[(
            "n",
            "ZipFilesNode",
            json!({"zip_path": "a.zip", "source_path": "folder"}),
        )],
    );
    ok(&r);
}
