//! File nodes: `FileSystemSuperNode` (all twelve actions) and the atomic file, CSV, JSON and zip
//! nodes, with upstream's parameters, outputs and defaults (`nodes/file/*.py`).
//!
//! Every path goes through the robot's safety rules (`ctx.path_param` / `safety::check_path`:
//! `..`, NUL bytes and device names refused, environment variables expanded, relative paths
//! resolved against the job's work dir, `allowed_paths` enforced), including each file given to
//! ZipFiles and each entry UnzipFiles extracts. Upstream's `allow_dangerous_paths` is accepted
//! and ignored: the configured rules cannot be loosened from a workflow.
//!
//! Text: UTF-8 by default; the encodings of [`codec`] (`utf-8`, `utf-8-sig`, `latin-1`,
//! `cp1252`, `ascii`, `utf-16`, ...) with Python's `errors` handlers. Reading applies Python's
//! universal newlines (`\r\n` → `\n`); `bytes_written` counts characters in text mode, as
//! Python's `write` returns.
//!
//! Deviations from upstream, and why:
//! - Text is written exactly as given on every platform (Python on Windows turns `\n` into
//!   `\r\n`): the same workflow writes the same bytes everywhere.
//! - WriteFile, WriteCSV, WriteJSON and ZipFiles write a temporary file in the target directory
//!   and rename it over the target, so a failed or cancelled write never leaves half a file.
//! - Reads are capped at [`MAX_READ_BYTES`] (100 MiB; binary reads at [`MAX_BINARY_READ`]).
//! - `binary_mode` content is a list of byte values (ints 0–255): the value model has no
//!   `bytes`. Binary writes accept such a list, or text (encoded with `encoding`).
//! - Copy/Move into an existing directory copy/move *into* it (`shutil` semantics) instead of
//!   upstream's FileExistsError from its own pre-check; an existing destination file still
//!   needs `overwrite`.
//! - Listings are sorted (upstream returns directory order) and do not follow symlinked
//!   directories when recursing.
//! - ZipFiles adds the files below a directory given in `files` (upstream added an empty
//!   directory entry); it refuses two files with the same archive name. UnzipFiles validates
//!   every entry before extracting anything and caps entries and total size (zip bombs).
//! - The super node also reads `errors` (default `replace`, what upstream hard-codes) and
//!   accepts action names case-insensitively, with `_`/`-` for spaces (`read_file`).

mod archive;
pub mod codec;
pub mod glob;

use crate::engine::node::{opt, req, Flow, Lit, NodeCtx, NodeDef, NodeError, NodeKind, EXEC_OUT};
use crate::engine::safety;
use crate::engine::value::{Dict, Value};
use codec::{Encoding, Errors};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Largest file a text read accepts (100 MiB).
pub const MAX_READ_BYTES: u64 = 100 * 1024 * 1024;
/// Largest file a `binary_mode` read accepts (4 MiB: each byte becomes a list item).
pub const MAX_BINARY_READ: u64 = 4 * 1024 * 1024;
/// Most cells ReadCSV produces.
pub const MAX_CSV_CELLS: usize = 5_000_000;

const ALLOW_DANGEROUS: crate::engine::node::ParamDef =
    opt("allow_dangerous_paths", Lit::Bool(false));

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef {
        node_type: "FileSystemSuperNode",
        params: &[
            opt("action", Lit::Str("Read File")),
            opt("file_path", Lit::Null),
            opt("path", Lit::Null),
            opt("source_path", Lit::Null),
            opt("dest_path", Lit::Null),
            opt("directory_path", Lit::Null),
            opt("dir_path", Lit::Null),
            opt("content", Lit::Null),
            opt("encoding", Lit::Str("utf-8")),
            opt("errors", Lit::Str("replace")),
            opt("binary_mode", Lit::Bool(false)),
            opt("max_size", Lit::Int(0)),
            opt("create_dirs", Lit::Bool(true)),
            opt("create_if_missing", Lit::Bool(true)),
            opt("ignore_missing", Lit::Bool(false)),
            opt("overwrite", Lit::Bool(false)),
            opt("check_type", Lit::Str("any")),
            opt("parents", Lit::Bool(true)),
            opt("exist_ok", Lit::Bool(true)),
            opt("pattern", Lit::Str("*")),
            opt("recursive", Lit::Bool(false)),
            opt("files_only", Lit::Bool(false)),
            opt("dirs_only", Lit::Bool(false)),
            ALLOW_DANGEROUS,
        ],
        outputs: &[
            "content",
            "size",
            "success",
            "file_path",
            "bytes_written",
            "deleted_path",
            "dest_path",
            "bytes_copied",
            "exists",
            "is_file",
            "is_dir",
            "created",
            "modified",
            "extension",
            "name",
            "parent",
            "dir_path",
            "files",
            "items",
            "count",
        ],
        routes: EXEC_OUT,
        kind: NodeKind::Plain,
        dynamic_ports: true,
        run: file_system_super,
    },
    NodeDef::plain(
        "ReadFileNode",
        &[
            req("file_path"),
            opt("encoding", Lit::Str("utf-8")),
            opt("binary_mode", Lit::Bool(false)),
            opt("errors", Lit::Str("strict")),
            opt("max_size", Lit::Int(0)),
            ALLOW_DANGEROUS,
        ],
        &["content", "size", "success"],
        read_file,
    ),
    NodeDef::plain(
        "WriteFileNode",
        &[
            req("file_path"),
            req("content"),
            opt("encoding", Lit::Str("utf-8")),
            opt("binary_mode", Lit::Bool(false)),
            opt("create_dirs", Lit::Bool(true)),
            opt("errors", Lit::Str("strict")),
            opt("append_mode", Lit::Bool(false)),
            ALLOW_DANGEROUS,
        ],
        &["file_path", "attachment_file", "bytes_written", "success"],
        write_file,
    ),
    NodeDef::plain(
        "AppendFileNode",
        &[
            req("file_path"),
            req("content"),
            opt("encoding", Lit::Str("utf-8")),
            opt("create_if_missing", Lit::Bool(true)),
            opt("errors", Lit::Str("replace")),
            ALLOW_DANGEROUS,
        ],
        &["file_path", "bytes_written", "success"],
        append_file,
    ),
    NodeDef::plain(
        "DeleteFileNode",
        &[
            req("file_path"),
            opt("ignore_missing", Lit::Bool(false)),
            ALLOW_DANGEROUS,
        ],
        &["deleted_path", "success"],
        delete_file,
    ),
    NodeDef::plain(
        "CopyFileNode",
        &[
            req("source_path"),
            req("dest_path"),
            opt("overwrite", Lit::Bool(false)),
            opt("create_dirs", Lit::Bool(true)),
            ALLOW_DANGEROUS,
        ],
        &["dest_path", "bytes_copied", "success"],
        copy_file,
    ),
    NodeDef::plain(
        "MoveFileNode",
        &[
            req("source_path"),
            req("dest_path"),
            opt("overwrite", Lit::Bool(false)),
            opt("create_dirs", Lit::Bool(true)),
            ALLOW_DANGEROUS,
        ],
        &["dest_path", "success"],
        move_file,
    ),
    NodeDef::plain(
        "CreateDirectoryNode",
        &[
            req("directory_path"),
            opt("parents", Lit::Bool(true)),
            opt("exist_ok", Lit::Bool(true)),
            ALLOW_DANGEROUS,
        ],
        &["dir_path", "success"],
        create_directory,
    ),
    NodeDef::plain(
        "ListFilesNode",
        &[
            opt("directory_path", Lit::Str("")),
            opt("pattern", Lit::Str("*")),
            opt("recursive", Lit::Bool(false)),
            ALLOW_DANGEROUS,
        ],
        &["files", "count", "success"],
        list_files,
    ),
    NodeDef::plain(
        "ListDirectoryNode",
        &[
            req("dir_path"),
            opt("pattern", Lit::Str("*")),
            opt("recursive", Lit::Bool(false)),
            opt("files_only", Lit::Bool(false)),
            opt("dirs_only", Lit::Bool(false)),
            ALLOW_DANGEROUS,
        ],
        &["items", "count", "success"],
        list_directory,
    ),
    NodeDef::plain(
        "FileExistsNode",
        &[
            req("path"),
            opt("check_type", Lit::Str("any")),
            ALLOW_DANGEROUS,
        ],
        &["exists", "is_file", "is_dir"],
        file_exists,
    ),
    NodeDef::plain(
        "GetFileSizeNode",
        &[req("file_path"), ALLOW_DANGEROUS],
        &["size", "success"],
        get_file_size,
    ),
    NodeDef::plain(
        "GetFileInfoNode",
        &[req("file_path"), ALLOW_DANGEROUS],
        &[
            "size",
            "created",
            "modified",
            "extension",
            "name",
            "parent",
            "success",
        ],
        get_file_info,
    ),
    NodeDef::plain(
        "ReadCSVNode",
        &[
            req("file_path"),
            opt("delimiter", Lit::Str(",")),
            opt("has_header", Lit::Bool(true)),
            opt("encoding", Lit::Str("utf-8")),
            opt("quotechar", Lit::Str("\"")),
            opt("skip_rows", Lit::Int(0)),
            opt("max_rows", Lit::Int(0)),
            opt("strict", Lit::Bool(false)),
            ALLOW_DANGEROUS,
        ],
        &["data", "headers", "row_count", "success"],
        read_csv,
    ),
    NodeDef::plain(
        "WriteCSVNode",
        &[
            req("file_path"),
            opt("data", Lit::Null),
            opt("headers", Lit::Null),
            opt("delimiter", Lit::Str(",")),
            opt("write_header", Lit::Bool(true)),
            opt("encoding", Lit::Str("utf-8")),
            ALLOW_DANGEROUS,
        ],
        &["file_path", "attachment_file", "row_count", "success"],
        write_csv,
    ),
    NodeDef::plain(
        "ReadJSONFileNode",
        &[
            req("file_path"),
            opt("encoding", Lit::Str("utf-8")),
            ALLOW_DANGEROUS,
        ],
        &["data", "success"],
        read_json_file,
    ),
    NodeDef::plain(
        "WriteJSONFileNode",
        &[
            req("file_path"),
            opt("data", Lit::Null),
            opt("encoding", Lit::Str("utf-8")),
            opt("indent", Lit::Int(2)),
            opt("ensure_ascii", Lit::Bool(false)),
            ALLOW_DANGEROUS,
        ],
        &["file_path", "attachment_file", "success"],
        write_json_file,
    ),
    NodeDef::plain(
        "ZipFilesNode",
        &[
            req("zip_path"),
            opt("source_path", Lit::Str("")),
            opt("files", Lit::Null),
            opt("base_dir", Lit::Str("")),
            opt("compression", Lit::Str("ZIP_DEFLATED")),
            ALLOW_DANGEROUS,
        ],
        &["zip_path", "attachment_file", "file_count", "success"],
        archive::zip_files,
    ),
    NodeDef::plain(
        "UnzipFilesNode",
        &[req("zip_path"), req("extract_to"), ALLOW_DANGEROUS],
        &["extract_to", "files", "file_count", "success"],
        archive::unzip_files,
    ),
];

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// A node error for a failed I/O call, with Python's error class.
pub(crate) fn io_err(verb: &str, path: &Path, e: &std::io::Error) -> NodeError {
    use std::io::ErrorKind as K;
    let (kind, reason) = match e.kind() {
        K::NotFound => ("FileNotFoundError", "no such file or directory".to_string()),
        K::PermissionDenied => ("PermissionError", "permission denied".to_string()),
        K::AlreadyExists => ("FileExistsError", "it already exists".to_string()),
        K::IsADirectory => ("IsADirectoryError", "it is a directory".to_string()),
        K::NotADirectory => (
            "NotADirectoryError",
            "a parent of it is not a directory".to_string(),
        ),
        K::StorageFull => ("OSError", "no space left on the device".to_string()),
        _ => ("OSError", e.to_string()),
    };
    NodeError::new(
        kind,
        format!("cannot {verb} '{}': {reason}", path.display()),
    )
}

/// A closure the long operations call to stop on cancellation or at the node deadline.
pub(crate) fn stopper(ctx: &NodeCtx<'_>) -> impl Fn() -> Result<(), NodeError> + use<> {
    let cancel = ctx.cancel_token().clone();
    let deadline = ctx.deadline();
    move || {
        if cancel.is_cancelled() {
            Err(NodeError::cancelled("cancelled during a file operation"))
        } else if Instant::now() >= deadline {
            Err(NodeError::timeout(
                "timed out: the file operation passed the node deadline",
            ))
        } else {
            Ok(())
        }
    }
}

fn path_text(p: &Path) -> Value {
    Value::str(p.to_string_lossy())
}

fn encoding(ctx: &NodeCtx<'_>) -> Result<Encoding, NodeError> {
    codec::lookup(&ctx.param_str("encoding"))
}

fn errors(ctx: &NodeCtx<'_>) -> Result<Errors, NodeError> {
    codec::errors(&ctx.param_str("errors"))
}

fn too_big(path: &Path, size: u64, cap: u64) -> NodeError {
    NodeError::value(format!(
        "'{}' is {size} bytes; file nodes read at most {cap} bytes ({} MiB)",
        path.display(),
        cap / (1024 * 1024)
    ))
}

/// Read a whole file, refusing directories and files over `cap`.
pub(crate) fn read_bytes(path: &Path, cap: u64) -> Result<Vec<u8>, NodeError> {
    let meta = fs::metadata(path).map_err(|e| io_err("read", path, &e))?;
    if meta.is_dir() {
        return Err(NodeError::new(
            "IsADirectoryError",
            format!("cannot read '{}': it is a directory", path.display()),
        ));
    }
    if meta.len() > cap {
        return Err(too_big(path, meta.len(), cap));
    }
    let file = fs::File::open(path).map_err(|e| io_err("read", path, &e))?;
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_err("read", path, &e))?;
    if buf.len() as u64 > cap {
        return Err(too_big(path, buf.len() as u64, cap));
    }
    Ok(buf)
}

/// Decode file bytes, naming the file and byte offset on failure; applies universal newlines.
pub(crate) fn decode_text(
    bytes: &[u8],
    path: &Path,
    enc: Encoding,
    errors: Errors,
) -> Result<String, NodeError> {
    let text = codec::decode(bytes, enc, errors).map_err(|e| {
        NodeError::new(
            "UnicodeDecodeError",
            format!(
                "cannot decode '{}' as {}: byte 0x{:02x} at offset {} ({}); set 'encoding' \
                 (e.g. cp1252 or latin-1) or errors='replace'",
                path.display(),
                enc.name(),
                e.byte,
                e.offset,
                e.reason
            ),
        )
    })?;
    Ok(codec::universal_newlines(text))
}

fn encode_text(
    text: &str,
    path: &Path,
    enc: Encoding,
    errors: Errors,
    bom: bool,
) -> Result<Vec<u8>, NodeError> {
    codec::encode(text, enc, errors, bom).map_err(|e| {
        NodeError::new(
            "UnicodeEncodeError",
            format!(
                "cannot write '{}' as {}: character {:?} (U+{:04X}) at position {} cannot be \
                 encoded; choose another encoding or errors='replace'",
                path.display(),
                enc.name(),
                e.ch,
                u32::from(e.ch),
                e.position
            ),
        )
    })
}

fn read_text_file(path: &Path, enc: Encoding, errors: Errors) -> Result<String, NodeError> {
    let bytes = read_bytes(path, MAX_READ_BYTES)?;
    decode_text(&bytes, path, enc, errors)
}

fn create_parent(path: &Path) -> Result<(), NodeError> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            fs::create_dir_all(parent).map_err(|e| io_err("create directory", parent, &e))?;
        }
    }
    Ok(())
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, renamed over the
/// target. Refuses what a plain open-for-writing would refuse (directories, read-only files).
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    create_dirs: bool,
    check: &dyn Fn() -> Result<(), NodeError>,
) -> Result<(), NodeError> {
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| io_err("write", path, &e))?
        }
        _ => path.to_path_buf(),
    };
    if create_dirs {
        create_parent(&target)?;
    }
    let existing = fs::metadata(&target).ok();
    if let Some(m) = &existing {
        if m.is_dir() {
            return Err(NodeError::new(
                "IsADirectoryError",
                format!("cannot write '{}': it is a directory", target.display()),
            ));
        }
        // Probe: a file we may not open for writing must not be replaced behind its back.
        fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .map_err(|e| io_err("write", &target, &e))?;
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{:08x}.tmp", fastrand::u32(..)));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io_err("write", &target, &e))?;
        for chunk in bytes.chunks(8 * 1024 * 1024) {
            check()?;
            f.write_all(chunk)
                .map_err(|e| io_err("write", &target, &e))?;
        }
        drop(f);
        if let Some(m) = &existing {
            let _ = fs::set_permissions(&tmp, m.permissions());
        }
        fs::rename(&tmp, &target).map_err(|e| io_err("write", &target, &e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Python's `Path.suffix`.
fn suffix(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 && i + 1 < name.len() => &name[i..],
        _ => "",
    }
}

/// `datetime.fromtimestamp(t).isoformat()` in local time.
fn iso_local(t: std::time::SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Local> = t.into();
    let micros = dt.timestamp_subsec_micros();
    let base = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

// ---------------------------------------------------------------------------------------------
// Operations shared by the atomic nodes and the super node

fn op_read(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let binary = ctx.param_bool("binary_mode");
    let max_size = ctx.param_opt_i64("max_size")?.unwrap_or(0);
    let enc = encoding(ctx)?;
    let errs = errors(ctx)?;
    let meta = fs::metadata(&path).map_err(|e| io_err("read", &path, &e))?;
    let size = meta.len();
    if max_size > 0 && size > max_size.unsigned_abs() {
        return Err(NodeError::value(format!(
            "'{}' is {size} bytes, over max_size ({max_size} bytes)",
            path.display()
        )));
    }
    let content = if binary {
        let bytes = read_bytes(&path, MAX_BINARY_READ)?;
        Value::list(
            bytes
                .into_iter()
                .map(|b| Value::Int(i64::from(b)))
                .collect(),
        )
    } else {
        Value::str(read_text_file(&path, enc, errs)?)
    };
    ctx.set_output("content", content);
    ctx.set_output("size", Value::Int(i64::try_from(size).unwrap_or(i64::MAX)));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

/// The bytes of binary-mode content: a list of ints 0–255, or text encoded with `enc`.
fn binary_content(v: &Value, path: &Path, enc: Encoding) -> Result<Vec<u8>, NodeError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Int(n) if (0..=255).contains(n) => Ok(*n as u8),
                other => Err(NodeError::value(format!(
                    "binary content must be a list of byte values 0-255; item {i} is {}",
                    other.py_repr()
                ))),
            })
            .collect(),
        other => encode_text(&other.py_str(), path, enc, Errors::Strict, false),
    }
}

fn content_text(ctx: &NodeCtx<'_>) -> String {
    match ctx.param("content") {
        Value::Null => String::new(),
        v => v.py_str(),
    }
}

fn append_bytes(path: &Path, bytes: &[u8], create: bool) -> Result<(), NodeError> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(create)
        .open(path)
        .map_err(|e| io_err("append to", path, &e))?;
    f.write_all(bytes)
        .map_err(|e| io_err("append to", path, &e))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn op_write(ctx: &mut NodeCtx<'_>, atomic_node: bool) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let enc = encoding(ctx)?;
    let errs = errors(ctx)?;
    let binary = ctx.param_bool("binary_mode");
    let create_dirs = ctx.param_bool("create_dirs");
    let append = atomic_node && ctx.param_bool("append_mode");
    let check = stopper(ctx);
    let written = if binary {
        let bytes = binary_content(&ctx.param("content"), &path, enc)?;
        if append {
            if create_dirs {
                create_parent(&path)?;
            }
            append_bytes(&path, &bytes, true)?;
        } else {
            write_atomic(&path, &bytes, create_dirs, &check)?;
        }
        bytes.len()
    } else {
        let text = content_text(ctx);
        if append {
            if create_dirs {
                create_parent(&path)?;
            }
            let bom = file_len(&path) == 0;
            let bytes = encode_text(&text, &path, enc, errs, bom)?;
            append_bytes(&path, &bytes, true)?;
        } else {
            let bytes = encode_text(&text, &path, enc, errs, true)?;
            write_atomic(&path, &bytes, create_dirs, &check)?;
        }
        text.chars().count()
    };
    ctx.set_output("file_path", path_text(&path));
    if atomic_node {
        ctx.set_output("attachment_file", Value::list(vec![path_text(&path)]));
    }
    ctx.set_output("bytes_written", Value::from(written));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

fn op_append(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let enc = encoding(ctx)?;
    let errs = errors(ctx)?;
    let text = content_text(ctx);
    let exists = path.exists();
    if !exists && !ctx.param_bool("create_if_missing") {
        return Err(NodeError::new(
            "FileNotFoundError",
            format!(
                "cannot append to '{}': no such file (create_if_missing is false)",
                path.display()
            ),
        ));
    }
    create_parent(&path)?;
    let bytes = encode_text(&text, &path, enc, errs, file_len(&path) == 0)?;
    append_bytes(&path, &bytes, true)?;
    ctx.set_output("file_path", path_text(&path));
    ctx.set_output("bytes_written", Value::from(text.chars().count()));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

fn op_delete(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !ctx.param_bool("ignore_missing") {
                return Err(NodeError::new(
                    "FileNotFoundError",
                    format!(
                        "cannot delete '{}': no such file (set ignore_missing to allow this)",
                        path.display()
                    ),
                ));
            }
        }
        Err(e) => return Err(io_err("delete", &path, &e)),
        Ok(m) if m.is_dir() => {
            return Err(NodeError::new(
                "IsADirectoryError",
                format!(
                    "cannot delete '{}': it is a directory (DeleteFile removes files only)",
                    path.display()
                ),
            ))
        }
        Ok(_) => fs::remove_file(&path).map_err(|e| io_err("delete", &path, &e))?,
    }
    ctx.set_output("deleted_path", path_text(&path));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

/// Source and destination of Copy/Move: the source must exist; a destination that is an
/// existing directory receives the source's name; an existing destination needs `overwrite`.
fn source_and_dest(ctx: &NodeCtx<'_>, verb: &str) -> Result<(PathBuf, PathBuf), NodeError> {
    let src = ctx.path_param("source_path")?;
    let mut dst = ctx.path_param("dest_path")?;
    if let Err(e) = fs::symlink_metadata(&src) {
        return Err(if e.kind() == std::io::ErrorKind::NotFound {
            NodeError::new(
                "FileNotFoundError",
                format!("cannot {verb} '{}': source file not found", src.display()),
            )
        } else {
            io_err(verb, &src, &e)
        });
    }
    if dst.is_dir() && dst != src {
        if let Some(name) = src.file_name() {
            dst = dst.join(name);
        }
    }
    if same_file(&src, &dst) {
        return Err(NodeError::value(format!(
            "cannot {verb} '{}' onto itself",
            src.display()
        )));
    }
    if fs::symlink_metadata(&dst).is_ok() && !ctx.param_bool("overwrite") {
        return Err(NodeError::new(
            "FileExistsError",
            format!(
                "cannot {verb} to '{}': the destination already exists (set overwrite to replace it)",
                dst.display()
            ),
        ));
    }
    if ctx.param_bool("create_dirs") {
        create_parent(&dst)?;
    }
    Ok((src, dst))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Copy file contents (and modification time); big files in chunks that check for
/// cancellation and the deadline.
fn copy_contents(
    src: &Path,
    dst: &Path,
    check: &dyn Fn() -> Result<(), NodeError>,
) -> Result<u64, NodeError> {
    let meta = fs::metadata(src).map_err(|e| io_err("copy", src, &e))?;
    if meta.is_dir() {
        return Err(NodeError::new(
            "IsADirectoryError",
            format!(
                "cannot copy '{}': it is a directory (CopyFile copies files)",
                src.display()
            ),
        ));
    }
    if fs::metadata(dst).is_ok_and(|m| m.is_dir()) {
        return Err(NodeError::new(
            "IsADirectoryError",
            format!("cannot copy to '{}': it is a directory", dst.display()),
        ));
    }
    if meta.len() <= 64 * 1024 * 1024 {
        fs::copy(src, dst).map_err(|e| copy_err(src, dst, &e))?;
    } else {
        let mut from = fs::File::open(src).map_err(|e| io_err("copy", src, &e))?;
        let mut to = fs::File::create(dst).map_err(|e| io_err("copy to", dst, &e))?;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            check()?;
            let n = from.read(&mut buf).map_err(|e| io_err("copy", src, &e))?;
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n])
                .map_err(|e| io_err("copy to", dst, &e))?;
        }
        let _ = fs::set_permissions(dst, meta.permissions());
    }
    if let Ok(modified) = meta.modified() {
        if let Ok(f) = fs::OpenOptions::new().write(true).open(dst) {
            let _ = f.set_modified(modified);
        }
    }
    Ok(fs::metadata(dst).map(|m| m.len()).unwrap_or(meta.len()))
}

fn copy_err(src: &Path, dst: &Path, e: &std::io::Error) -> NodeError {
    if fs::File::open(src).is_err() {
        io_err("copy", src, e)
    } else {
        io_err("copy to", dst, e)
    }
}

fn op_copy(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let (src, dst) = source_and_dest(ctx, "copy")?;
    let copied = copy_contents(&src, &dst, &stopper(ctx))?;
    ctx.set_output("dest_path", path_text(&dst));
    ctx.set_output(
        "bytes_copied",
        Value::Int(i64::try_from(copied).unwrap_or(i64::MAX)),
    );
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

fn op_move(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let (src, dst) = source_and_dest(ctx, "move")?;
    if fs::metadata(&dst).is_ok_and(|m| m.is_dir()) {
        return Err(NodeError::new(
            "IsADirectoryError",
            format!("cannot move to '{}': it is a directory", dst.display()),
        ));
    }
    if let Err(e) = fs::rename(&src, &dst) {
        if e.kind() == std::io::ErrorKind::CrossesDevices && src.is_file() {
            copy_contents(&src, &dst, &stopper(ctx))?;
            fs::remove_file(&src).map_err(|e| io_err("move", &src, &e))?;
        } else if fs::File::open(&src).is_err() && e.kind() != std::io::ErrorKind::NotFound {
            return Err(io_err("move", &src, &e));
        } else {
            return Err(io_err("move to", &dst, &e));
        }
    }
    ctx.set_output("dest_path", path_text(&dst));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

fn op_exists(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("path")?;
    let check_type = ctx.param_str("check_type").trim().to_ascii_lowercase();
    let (exists, is_file, is_dir) = match fs::metadata(&path) {
        Ok(m) => (true, m.is_file(), m.is_dir()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            (false, false, false)
        }
        Err(e) => return Err(io_err("check", &path, &e)),
    };
    let exists = match check_type.as_str() {
        "" | "any" => exists,
        "file" => is_file,
        "directory" | "dir" => is_dir,
        other => {
            return Err(NodeError::value(format!(
                "check_type must be 'file', 'directory' or 'any', got '{other}'"
            )))
        }
    };
    ctx.set_output("exists", Value::Bool(exists));
    ctx.set_output("is_file", Value::Bool(is_file));
    ctx.set_output("is_dir", Value::Bool(is_dir));
    Ok(Flow::Next)
}

fn stat(path: &Path) -> Result<fs::Metadata, NodeError> {
    fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NodeError::new(
                "FileNotFoundError",
                format!("file not found: '{}'", path.display()),
            )
        } else {
            io_err("stat", path, &e)
        }
    })
}

fn op_size(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let meta = stat(&path)?;
    ctx.set_output(
        "size",
        Value::Int(i64::try_from(meta.len()).unwrap_or(i64::MAX)),
    );
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

fn op_info(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let meta = stat(&path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let modified = meta.modified().ok();
    // Creation time where the platform has it (st_ctime on Windows); else the change time.
    let created = meta
        .created()
        .ok()
        .or_else(|| changed_time(&meta))
        .or(modified);
    ctx.set_output(
        "size",
        Value::Int(i64::try_from(meta.len()).unwrap_or(i64::MAX)),
    );
    ctx.set_output(
        "created",
        created.map_or(Value::Null, |t| Value::str(iso_local(t))),
    );
    ctx.set_output(
        "modified",
        modified.map_or(Value::Null, |t| Value::str(iso_local(t))),
    );
    ctx.set_output("extension", Value::str(suffix(&name)));
    ctx.set_output("name", Value::str(&name));
    ctx.set_output("parent", path.parent().map_or(Value::str(""), path_text));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

#[cfg(unix)]
fn changed_time(meta: &fs::Metadata) -> Option<std::time::SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let secs = u64::try_from(meta.ctime()).ok()?;
    let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
}

#[cfg(not(unix))]
fn changed_time(_meta: &fs::Metadata) -> Option<std::time::SystemTime> {
    None
}

fn op_mkdir(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("directory_path")?;
    match fs::metadata(&path) {
        Ok(m) if m.is_dir() && ctx.param_bool("exist_ok") => {}
        Ok(m) => {
            return Err(NodeError::new(
                "FileExistsError",
                format!(
                    "cannot create directory '{}': {}",
                    path.display(),
                    if m.is_dir() {
                        "it already exists (exist_ok is false)"
                    } else {
                        "a file with that name exists"
                    }
                ),
            ))
        }
        Err(_) => {
            let made = if ctx.param_bool("parents") {
                fs::create_dir_all(&path)
            } else {
                fs::create_dir(&path)
            };
            made.map_err(|e| io_err("create directory", &path, &e))?;
        }
    }
    ctx.set_output("dir_path", path_text(&path));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

/// Glob a directory named by parameter `param`.
fn list(ctx: &NodeCtx<'_>, param: &str) -> Result<Vec<PathBuf>, NodeError> {
    if ctx.param_str(param).trim().is_empty() {
        return Err(NodeError::value(format!("{param} is required")));
    }
    let dir = ctx.path_param(param)?;
    match fs::metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NodeError::new(
                "FileNotFoundError",
                format!("directory not found: '{}'", dir.display()),
            ))
        }
        Err(e) => return Err(io_err("list", &dir, &e)),
        Ok(m) if !m.is_dir() => {
            return Err(NodeError::new(
                "NotADirectoryError",
                format!("not a directory: '{}'", dir.display()),
            ))
        }
        Ok(_) => {}
    }
    // Unreadable subdirectories are skipped while globbing (as Python); the base must be readable.
    fs::read_dir(&dir).map_err(|e| io_err("list", &dir, &e))?;
    let mut pattern = ctx.param_str("pattern");
    if pattern.trim().is_empty() {
        pattern = "*".into();
    }
    let g = glob::Glob::new(&pattern, ctx.param_bool("recursive"), false)?;
    g.matches(&dir, &stopper(ctx))
}

fn op_list_files(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let files: Vec<Value> = list(ctx, "directory_path")?
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| path_text(&p))
        .collect();
    ctx.set_output("count", Value::from(files.len()));
    ctx.set_output("files", Value::list(files));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

fn op_list_dir(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let files_only = ctx.param_bool("files_only");
    let dirs_only = ctx.param_bool("dirs_only");
    let items: Vec<Value> = list(ctx, "dir_path")?
        .into_iter()
        .filter(|p| (!files_only || p.is_file()) && (!dirs_only || p.is_dir()))
        .map(|p| path_text(&p))
        .collect();
    ctx.set_output("count", Value::from(items.len()));
    ctx.set_output("items", Value::list(items));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// `FileSystemSuperNode`: one of twelve actions (`action`, default "Read File"; matched
/// case-insensitively, `read_file` works too), each with the parameters and outputs of the
/// atomic node of the same name. Read/Write/Append decode and encode with `errors="replace"`
/// unless `errors` says otherwise (upstream hard-codes replace).
fn file_system_super(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let action = ctx.param_str("action");
    let key = action
        .to_ascii_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match key.as_str() {
        "" | "read file" => op_read(ctx),
        "write file" => op_write(ctx, false),
        "append file" => op_append(ctx),
        "delete file" => op_delete(ctx),
        "copy file" => op_copy(ctx),
        "move file" => op_move(ctx),
        "file exists" => op_exists(ctx),
        "get file size" => op_size(ctx),
        "get file info" => op_info(ctx),
        "create directory" => op_mkdir(ctx),
        "list files" => op_list_files(ctx),
        "list directory" => op_list_dir(ctx),
        _ => Err(NodeError::value(format!(
            "unknown action '{action}' (use Read File, Write File, Append File, Delete File, \
             Copy File, Move File, File Exists, Get File Size, Get File Info, Create Directory, \
             List Files or List Directory)"
        ))),
    }
}

/// `ReadFileNode`: the file's text (`encoding`, `errors` default strict: undecodable bytes fail
/// naming the file and byte offset) or, with `binary_mode`, its bytes as a list of ints; `size`
/// is the size on disk. `max_size` > 0 refuses bigger files; files over 100 MiB are refused.
fn read_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_read(ctx)
}

/// `WriteFileNode`: write `content` (replacing the file atomically, or appending with
/// `append_mode`), creating parent directories unless `create_dirs` is false. `bytes_written`
/// counts characters in text mode and bytes in binary mode (Python's `write` result).
fn write_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_write(ctx, true)
}

/// `AppendFileNode`: append `content` (creating the file unless `create_if_missing` is false;
/// parent directories are always created, as upstream). A BOM (`utf-8-sig`, `utf-16`) is only
/// written into an empty file.
fn append_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_append(ctx)
}

/// `DeleteFileNode`: delete a file (not a directory); a missing file fails unless
/// `ignore_missing`.
fn delete_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_delete(ctx)
}

/// `CopyFileNode`: copy a file with its modification time; an existing destination needs
/// `overwrite`; a destination directory receives the file under its own name.
fn copy_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_copy(ctx)
}

/// `MoveFileNode`: move or rename a file or directory (copy + delete across file systems for
/// files); an existing destination file needs `overwrite`.
fn move_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_move(ctx)
}

/// `CreateDirectoryNode`: create a directory (`parents`, `exist_ok` both default true).
fn create_directory(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_mkdir(ctx)
}

/// `ListFilesNode`: the files (absolute paths, sorted) in `directory_path` matching `pattern`
/// (`recursive` searches subdirectories).
fn list_files(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_list_files(ctx)
}

/// `ListDirectoryNode`: files and directories in `dir_path` matching `pattern`, optionally
/// only files or only directories.
fn list_directory(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_list_dir(ctx)
}

/// `FileExistsNode`: `exists` (narrowed by `check_type` file/directory/any), `is_file`, `is_dir`.
fn file_exists(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_exists(ctx)
}

/// `GetFileSizeNode`: the size in bytes.
fn get_file_size(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_size(ctx)
}

/// `GetFileInfoNode`: size, created/modified (local ISO time as Python's `isoformat`), extension
/// (`Path.suffix`), name and parent directory. `created` is the creation time where the
/// platform records it, else the inode change time (Python's `st_ctime`).
fn get_file_info(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_info(ctx)
}

/// A one-character CSV option (`\t` written as two characters is accepted for a tab).
fn csv_char(ctx: &NodeCtx<'_>, name: &str, default: u8) -> Result<u8, NodeError> {
    let raw = ctx.param_str(name);
    let text = match raw.as_str() {
        "" => return Ok(default),
        "\\t" => "\t",
        s => s,
    };
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii() => Ok(c as u8),
        (Some(_), None) => Err(NodeError::value(format!(
            "\"{name}\" must be an ASCII character, got {raw:?}"
        ))),
        _ => Err(NodeError::type_error(format!(
            "\"{name}\" must be a 1-character string, got {raw:?}"
        ))),
    }
}

/// `ReadCSVNode`: rows as dicts keyed by the header row (`has_header`, default) or as lists;
/// `skip_rows` skips lines before parsing, `max_rows` > 0 limits the data rows. As Python's
/// `DictReader`, missing fields are None and extra fields go under the key `"None"`. Blank
/// lines are skipped (Python's plain reader would yield `[]` for them). `strict` is accepted;
/// parsing is lenient like Python's default.
fn read_csv(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let delimiter = csv_char(ctx, "delimiter", b',')?;
    let quote = csv_char(ctx, "quotechar", b'"')?;
    let has_header = ctx.param_bool("has_header");
    let skip = usize::try_from(ctx.param_i64("skip_rows")?).unwrap_or(0);
    let max_rows = usize::try_from(ctx.param_i64("max_rows")?).unwrap_or(0);
    let enc = encoding(ctx)?;
    if !path.exists() {
        return Err(NodeError::new(
            "FileNotFoundError",
            format!("CSV file not found: '{}'", path.display()),
        ));
    }
    let text = read_text_file(&path, enc, Errors::Strict)?;
    let mut body = text.as_str();
    for _ in 0..skip {
        match body.find('\n') {
            Some(i) => body = &body[i + 1..],
            None => body = "",
        }
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quote(quote)
        .from_reader(body.as_bytes());
    let check = stopper(ctx);
    let mut headers: Vec<String> = Vec::new();
    let mut data: Vec<Value> = Vec::new();
    let mut cells = 0usize;
    let mut first = true;
    for (n, record) in reader.records().enumerate() {
        let record = record
            .map_err(|e| NodeError::value(format!("cannot parse CSV '{}': {e}", path.display())))?;
        if n % 1024 == 0 {
            check()?;
        }
        cells += record.len();
        if cells > MAX_CSV_CELLS {
            return Err(NodeError::value(format!(
                "'{}' has more than {MAX_CSV_CELLS} cells; split the file or use max_rows",
                path.display()
            )));
        }
        if has_header && first {
            first = false;
            headers = record.iter().map(str::to_string).collect();
            continue;
        }
        if max_rows > 0 && data.len() >= max_rows {
            break;
        }
        if has_header {
            let mut row = Dict::new();
            for (i, h) in headers.iter().enumerate() {
                row.insert(h.clone(), record.get(i).map_or(Value::Null, Value::str));
            }
            if record.len() > headers.len() {
                let extra: Vec<Value> = record.iter().skip(headers.len()).map(Value::str).collect();
                row.insert("None".to_string(), Value::list(extra));
            }
            data.push(Value::dict(row));
        } else {
            data.push(Value::list(record.iter().map(Value::str).collect()));
        }
    }
    ctx.set_output("row_count", Value::from(data.len()));
    ctx.set_output("data", Value::list(data));
    ctx.set_output(
        "headers",
        Value::list(headers.into_iter().map(Value::str).collect()),
    );
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

/// CSV cell text as Python's csv module writes it (`None` → empty, others via `str()`).
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => other.py_str(),
    }
}

fn headers_param(ctx: &NodeCtx<'_>) -> Result<Option<Vec<String>>, NodeError> {
    let names: Vec<String> = match ctx.param("headers") {
        Value::Null => Vec::new(),
        Value::List(l) => l.iter().map(cell).collect(),
        Value::Str(s) if s.trim_start().starts_with('[') => match Value::parse_json(&s) {
            Ok(Value::List(l)) => l.iter().map(cell).collect(),
            _ => return Err(NodeError::value(format!("headers is not a JSON list: {s}"))),
        },
        Value::Str(s) => s
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect(),
        other => {
            return Err(NodeError::type_error(format!(
                "headers must be a list, got {}",
                other.type_name()
            )))
        }
    };
    Ok((!names.is_empty()).then_some(names))
}

/// `WriteCSVNode`: write `data` (a list of dicts, columns from `headers` or the first dict's
/// keys; or a list of lists, with `headers` as the header row) with Python's csv dialect
/// (minimal quoting, `\r\n` line ends). `headers` may also be comma-separated text.
fn write_csv(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let data = ctx.param_list("data")?;
    let headers = headers_param(ctx)?;
    let delimiter = csv_char(ctx, "delimiter", b',')?;
    let write_header = ctx.param_bool("write_header");
    let enc = encoding(ctx)?;
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::CRLF)
        .flexible(true)
        .from_writer(Vec::new());
    let csv_err = |e: csv::Error| NodeError::value(format!("cannot write CSV: {e}"));
    if let Some(Value::Dict(first)) = data.first() {
        let fields: Vec<String> = headers.unwrap_or_else(|| first.keys().cloned().collect());
        if write_header {
            w.write_record(&fields).map_err(csv_err)?;
        }
        for (i, row) in data.iter().enumerate() {
            let Value::Dict(d) = row else {
                return Err(NodeError::type_error(format!(
                    "row {i} is {}, but the first row is a dict: every row must be a dict",
                    row.type_name()
                )));
            };
            if let Some(extra) = d.keys().find(|k| !fields.contains(k)) {
                return Err(NodeError::value(format!(
                    "dict contains fields not in fieldnames: '{extra}' (row {i})"
                )));
            }
            let cells: Vec<String> = fields
                .iter()
                .map(|f| d.get(f).map(cell).unwrap_or_default())
                .collect();
            w.write_record(&cells).map_err(csv_err)?;
        }
    } else {
        if let (true, Some(h)) = (write_header, &headers) {
            w.write_record(h).map_err(csv_err)?;
        }
        for (i, row) in data.iter().enumerate() {
            let Value::List(items) = row else {
                return Err(NodeError::type_error(format!(
                    "row {i} must be a list (or every row a dict), got {} {}",
                    row.type_name(),
                    row.py_repr()
                )));
            };
            let cells: Vec<String> = items.iter().map(cell).collect();
            if cells.is_empty() {
                w.write_record([""]).map_err(csv_err)?;
            } else {
                w.write_record(&cells).map_err(csv_err)?;
            }
        }
    }
    let bytes = w
        .into_inner()
        .map_err(|e| NodeError::value(format!("cannot write CSV: {e}")))?;
    let text = String::from_utf8_lossy(&bytes);
    let encoded = encode_text(&text, &path, enc, Errors::Strict, true)?;
    write_atomic(&path, &encoded, true, &stopper(ctx))?;
    ctx.set_output("file_path", path_text(&path));
    ctx.set_output("attachment_file", Value::list(vec![path_text(&path)]));
    ctx.set_output("row_count", Value::from(data.len()));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

/// `ReadJSONFileNode`: parse the file as JSON (a leading BOM is skipped). Invalid JSON fails
/// with the parser's line and column.
fn read_json_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let enc = encoding(ctx)?;
    if !path.exists() {
        return Err(NodeError::new(
            "FileNotFoundError",
            format!("JSON file not found: '{}'", path.display()),
        ));
    }
    let text = read_text_file(&path, enc, Errors::Strict)?;
    let body = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let data = Value::parse_json(body)
        .map_err(|e| NodeError::value(format!("invalid JSON in '{}': {e}", path.display())))?;
    ctx.set_output("data", data);
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

/// `WriteJSONFileNode`: `json.dumps(data, indent=indent, ensure_ascii=ensure_ascii)` written
/// atomically (`indent` empty or null → compact).
fn write_json_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let data = ctx.param("data");
    let indent = ctx
        .param_opt_i64("indent")?
        .map(|i| usize::try_from(i.clamp(0, 64)).unwrap_or(0));
    let ensure_ascii = ctx.param_bool("ensure_ascii");
    let enc = encoding(ctx)?;
    let text = data.to_py_json(indent, false, ensure_ascii);
    let bytes = encode_text(&text, &path, enc, Errors::Strict, true)?;
    write_atomic(&path, &bytes, true, &stopper(ctx))?;
    ctx.set_output("file_path", path_text(&path));
    ctx.set_output("attachment_file", Value::list(vec![path_text(&path)]));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

/// Check a path that does not come from a single parameter (list items, zip entries).
pub(crate) fn check_path(ctx: &NodeCtx<'_>, raw: &str) -> Result<PathBuf, NodeError> {
    safety::check_path(raw, &ctx.options().safety)
}

#[cfg(test)]
mod tests;
