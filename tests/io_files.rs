//! File nodes through the real engine: upstream's batch 2.1 (from `../shared/...` when present)
//! and our own workflows under `tests/workflows/io/files/`, which cover every file node, once
//! with Unix-style relative paths (`out/data.csv`) and once with Windows-style ones
//! (`out\data.csv`). Each run gets a fresh temp dir as the job's work dir; the tests assert the
//! node outputs and the files left on disk.

use casare_robot::engine::runner::{self, RunOptions};
use casare_robot::engine::safety::Safety;
use casare_robot::engine::{load_str, CancelToken, Value};
use std::fs;
use std::path::{Path, PathBuf};

mod common;
use common::{Logs, Ran};

fn run_in(json: &str, work_dir: &Path) -> Ran {
    let wf = load_str(json).unwrap_or_else(|e| panic!("did not load: {e}"));
    let opts = RunOptions {
        seed: Some(1),
        safety: Safety {
            work_dir: Some(work_dir.to_path_buf()),
            ..Safety::default()
        },
        ..RunOptions::default()
    };
    let mut logs = Logs::default();
    let outcome = runner::run(
        &wf,
        Default::default(),
        &opts,
        &CancelToken::new(),
        &mut logs,
    );
    Ran {
        outcome,
        logs: logs.0,
    }
}

fn abs(dir: &Path, rel: &str) -> String {
    dir.join(rel).to_string_lossy().into_owned()
}

/// Paths in a list output, relative to `base`, with `/` separators.
fn rel_list(v: &Value, base: &Path) -> Vec<String> {
    v.as_list()
        .unwrap_or_else(|| panic!("not a list: {}", v.py_repr()))
        .iter()
        .map(|p| {
            Path::new(p.as_str().unwrap())
                .strip_prefix(base)
                .unwrap_or_else(|_| panic!("{} not under {}", p.py_repr(), base.display()))
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect()
}

fn upstream_batch(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/casare/workflows/node_tests")
        .join(name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("note: {} not found; upstream batch skipped", path.display());
        None
    }
}

#[test]
fn batch_2_1_files_runs_unchanged_with_the_reference_values() {
    let Some(path) = upstream_batch("batch_2_1_files.json") else {
        return;
    };
    let json = fs::read_to_string(&path).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let r = run_in(&json, dir);
    assert_eq!(r.outcome.error_text(), None, "batch 2.1 failed");
    assert!(r.outcome.success());
    let base = dir.join("test_output/node_tests_v2");
    assert_eq!(r.text("fs_mkdir", "dir_path"), base.to_string_lossy());
    assert_eq!(r.int("fs_write", "bytes_written"), 12);
    assert_eq!(r.text("fs_write", "file_path"), abs(&base, "test.txt"));
    assert!(r.flag("fs_exists", "exists"));
    assert!(r.flag("fs_exists", "is_file"));
    assert!(!r.flag("fs_exists", "is_dir"));
    assert_eq!(r.text("fs_read", "content"), "Hello World!");
    assert_eq!(r.int("fs_read", "size"), 12);
    assert_eq!(r.int("fs_append", "bytes_written"), 10);
    assert_eq!(r.int("fs_copy", "bytes_copied"), 22);
    assert_eq!(r.int("fs_list", "count"), 2);
    assert_eq!(
        rel_list(&r.out("fs_list", "items"), &base),
        ["test.txt", "test_copy.txt"]
    );
    assert_eq!(r.text("fs_move", "dest_path"), abs(&base, "test_moved.txt"));
    assert_eq!(
        r.text("fs_delete", "deleted_path"),
        abs(&base, "test_moved.txt")
    );
    assert_eq!(
        r.logs,
        ["[log_result] All FileSystemSuperNode tests passed!"]
    );
    // Disk: test.txt holds both writes; the copy was moved and then deleted.
    assert_eq!(
        fs::read_to_string(base.join("test.txt")).unwrap(),
        "Hello World!\nAppended!"
    );
    assert!(!base.join("test_copy.txt").exists());
    assert!(!base.join("test_moved.txt").exists());

    // A second run in the same directory: "Create Directory" is fine (exist_ok), and the copy
    // destination no longer exists, so it succeeds again (upstream's note about aborted runs).
    let again = run_in(&json, dir);
    assert_eq!(again.outcome.error_text(), None);
    assert_eq!(
        fs::read_to_string(base.join("test.txt")).unwrap(),
        "Hello World!\nAppended!"
    );
    // An aborted earlier run that left test_copy.txt behind makes Copy fail (overwrite=False).
    fs::write(base.join("test_copy.txt"), "stale").unwrap();
    let stale = run_in(&json, dir);
    let err = stale.outcome.error_text().unwrap_or_default();
    assert!(
        err.starts_with("fs_copy (FileSystemSuperNode): cannot copy to '")
            && err.ends_with("the destination already exists (set overwrite to replace it)"),
        "{err}"
    );
}

fn own_workflow(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workflows/io/files")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The same assertions for both path styles: outputs use the platform's separators, so they
/// are compared as paths under the work dir.
fn check_all_nodes(file: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let r = run_in(&own_workflow(file), dir);
    assert_eq!(r.outcome.error_text(), None, "{file} failed");
    let out = dir.join("out");

    assert_eq!(r.text("mkdir", "dir_path"), abs(dir, "out/sub"));
    assert_eq!(r.int("write", "bytes_written"), 5);
    assert_eq!(r.int("append", "bytes_written"), 7);
    assert_eq!(r.text("read", "content"), "Hello, World");
    assert_eq!(r.int("read", "size"), 12);
    assert!(r.flag("exists", "exists") && r.flag("exists", "is_file"));
    assert!(!r.flag("exists", "is_dir"));
    assert_eq!(r.int("size", "size"), 12);
    assert_eq!(r.text("info", "name"), "hello.txt");
    assert_eq!(r.text("info", "extension"), ".txt");
    assert_eq!(r.text("info", "parent"), out.to_string_lossy());
    assert_eq!(r.int("info", "size"), 12);
    assert_eq!(r.int("copy", "bytes_copied"), 12);
    assert_eq!(r.text("copy", "dest_path"), abs(dir, "out/sub/copy.txt"));
    assert_eq!(r.text("move", "dest_path"), abs(dir, "out/sub/moved.txt"));

    assert_eq!(r.int("write_csv", "row_count"), 2);
    assert_eq!(r.text("write_csv", "file_path"), abs(dir, "out/data.csv"));
    let rows = "[{'name': 'Ann', 'city': 'Paris, FR', 'age': '30'}, \
                {'name': 'Björn', 'city': 'Malmö', 'age': '41'}]";
    assert_eq!(r.out("read_csv", "data").py_repr(), rows);
    assert_eq!(
        r.out("read_csv", "headers").py_repr(),
        "['name', 'city', 'age']"
    );
    assert_eq!(r.int("read_csv", "row_count"), 2);
    assert_eq!(r.out("read_json", "data").py_repr(), rows);
    assert_eq!(r.text("write_json", "file_path"), abs(dir, "out/data.json"));

    assert_eq!(
        rel_list(&r.out("list_files", "files"), &out),
        ["data.csv", "data.json", "hello.txt"]
    );
    assert_eq!(r.int("list_files", "count"), 3);
    assert_eq!(
        rel_list(&r.out("list_dir", "items"), &out),
        ["hello.txt", "sub/moved.txt"]
    );
    assert_eq!(r.int("zip", "file_count"), 1);
    assert_eq!(r.text("zip", "zip_path"), abs(dir, "out/archive.zip"));
    assert_eq!(r.int("zip_glob", "file_count"), 2);
    assert_eq!(r.int("unzip", "file_count"), 1);
    assert_eq!(
        rel_list(&r.out("unzip", "files"), &dir.join("unzipped/a")),
        ["moved.txt"]
    );
    assert_eq!(
        r.text("delete", "deleted_path"),
        abs(dir, "out/sub/moved.txt")
    );

    assert_eq!(r.int("fs_write", "bytes_written"), 4);
    assert_eq!(r.text("fs_read", "content"), "Café");
    assert_eq!(r.int("fs_read", "size"), 4);
    assert_eq!(
        rel_list(&r.out("fs_list", "files"), &out),
        ["super/note.txt"]
    );
    assert_eq!(r.text("fs_info", "name"), "note.txt");
    assert_eq!(r.logs.len(), 1);
    assert!(
        r.logs[0]
            .starts_with("[log] read Hello, World (12 bytes); csv rows 2; json [{'name': 'Ann'"),
        "{}",
        r.logs[0]
    );
    assert!(r.logs[0].ends_with("; zipped 1"), "{}", r.logs[0]);

    // The files on disk.
    assert_eq!(
        fs::read_to_string(out.join("hello.txt")).unwrap(),
        "Hello, World"
    );
    assert_eq!(
        fs::read_to_string(out.join("data.csv")).unwrap(),
        "name,city,age\r\nAnn,\"Paris, FR\",30\r\nBjörn,Malmö,41\r\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("data.json")).unwrap()).unwrap();
    assert_eq!(json[1]["city"], "Malmö");
    assert!(fs::read_to_string(out.join("data.json"))
        .unwrap()
        .starts_with("[\n  {\n    \"name\": \"Ann\","));
    assert!(!out.join("sub/copy.txt").exists());
    assert!(!out.join("sub/moved.txt").exists());
    assert_eq!(
        fs::read_to_string(dir.join("unzipped/a/moved.txt")).unwrap(),
        "Hello, World"
    );
    let mut zip = zip::ZipArchive::new(fs::File::open(out.join("data.zip")).unwrap()).unwrap();
    let mut names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["data.csv", "data.json"]);
    assert_eq!(
        fs::read(out.join("super/note.txt")).unwrap(),
        b"Caf\xe9",
        "cp1252 on disk"
    );
    // No temporary files from the atomic writes.
    let leftovers: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn every_file_node_with_unix_style_paths() {
    check_all_nodes("all_nodes_unix_paths.json");
}

#[test]
fn every_file_node_with_windows_style_paths() {
    let json = own_workflow("all_nodes_windows_paths.json");
    assert!(
        json.contains(r#""out\\sub\\copy.txt""#),
        "the workflow uses backslashes"
    );
    check_all_nodes("all_nodes_windows_paths.json");
}

#[test]
fn a_refused_path_fails_the_node_with_its_id_type_path_and_rule() {
    let json = own_workflow("all_nodes_unix_paths.json").replace(
        r#""directory_path": "out/sub""#,
        r#""directory_path": "out/../../escape""#,
    );
    let tmp = tempfile::tempdir().unwrap();
    let r = run_in(&json, tmp.path());
    assert_eq!(
        r.outcome.error_text().as_deref(),
        Some(
            "mkdir (CreateDirectoryNode): refused path 'out/../../escape': '..' (parent \
             directory) components are not allowed"
        )
    );
    assert!(
        !tmp.path().join("out").exists(),
        "nothing ran after the refusal"
    );
}
