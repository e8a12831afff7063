//! ZipFiles and UnzipFiles on the `zip` crate.
//!
//! ZipFiles takes a `files` list, else `source_path` (a folder: every file below it; a glob
//! pattern: the matching files, hidden names skipped as Python's `glob`; a file). Archive names
//! are relative to `base_dir` (default: the folder, or the pattern's fixed prefix) with `/`
//! separators, else the file name. Every file goes through the safety rules.
//!
//! UnzipFiles checks every entry before writing anything: entries with `..`, absolute or
//! drive-letter paths, NUL bytes or device names are refused (zip slip), as are archives with
//! more than [`MAX_ENTRIES`] entries or more than [`MAX_UNZIPPED_BYTES`] of content, counted
//! while inflating (zip bombs lie about sizes). Extraction never writes through a symbolic link.

use super::glob::{has_magic, Glob};
use super::{check_path, io_err, path_text, stopper};
use crate::engine::node::{Flow, NodeCtx, NodeError};
use crate::engine::value::Value;
use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Most entries an archive may have (to zip or to unzip).
pub const MAX_ENTRIES: usize = 100_000;
/// Most bytes UnzipFiles writes for one archive (1 GiB).
pub const MAX_UNZIPPED_BYTES: u64 = 1024 * 1024 * 1024;

#[cfg(test)]
thread_local! {
    /// Tests lower the size cap for their own thread.
    pub static TEST_CAP: std::cell::Cell<u64> = const { std::cell::Cell::new(MAX_UNZIPPED_BYTES) };
}

fn unzip_cap() -> u64 {
    #[cfg(test)]
    {
        TEST_CAP.with(std::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        MAX_UNZIPPED_BYTES
    }
}

fn zip_err(zip: &Path, e: impl std::fmt::Display) -> NodeError {
    NodeError::new(
        "BadZipFile",
        format!("cannot read ZIP archive '{}': {e}", zip.display()),
    )
}

fn refuse_entry(zip: &Path, name: &str, rule: &str) -> NodeError {
    NodeError::new(
        "PermissionError",
        format!(
            "refused ZIP entry '{}' in '{}': {rule}",
            name.replace('\0', "\\0"),
            zip.display()
        ),
    )
}

/// The relative components of an entry name, or a refusal (zip slip).
fn entry_parts(zip: &Path, name: &str) -> Result<Vec<String>, NodeError> {
    if name.contains('\0') {
        return Err(refuse_entry(zip, name, "it contains a NUL byte"));
    }
    let bytes = name.as_bytes();
    if name.starts_with(['/', '\\']) || (bytes.len() >= 2 && bytes[1] == b':') {
        return Err(refuse_entry(
            zip,
            name,
            "absolute paths would extract outside the destination",
        ));
    }
    let mut parts = Vec::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                return Err(refuse_entry(
                    zip,
                    name,
                    "'..' components would extract outside the destination",
                ))
            }
            p => parts.push(p.to_string()),
        }
    }
    Ok(parts)
}

fn mtime_of(meta: &fs::Metadata) -> Option<zip::DateTime> {
    use chrono::{Datelike, Timelike};
    let t: chrono::DateTime<chrono::Local> = meta.modified().ok()?.into();
    zip::DateTime::from_date_and_time(
        u16::try_from(t.year()).ok()?,
        u8::try_from(t.month()).ok()?,
        u8::try_from(t.day()).ok()?,
        u8::try_from(t.hour()).ok()?,
        u8::try_from(t.minute()).ok()?,
        u8::try_from(t.second()).ok()?,
    )
    .ok()
}

/// Every regular file below `dir` (`**/*`, hidden names included).
fn files_below(
    dir: &Path,
    check: &dyn Fn() -> Result<(), NodeError>,
) -> Result<Vec<PathBuf>, NodeError> {
    Ok(Glob::new("*", true, false)?
        .matches(dir, check)?
        .into_iter()
        .filter(|p| p.is_file())
        .collect())
}

/// Split a glob into its fixed directory prefix and the pattern below it.
fn split_glob(raw: &str) -> (String, String) {
    let parts: Vec<&str> = raw.split(['/', '\\']).collect();
    let fixed = parts.iter().take_while(|p| !has_magic(p)).count();
    let prefix = parts[..fixed].join("/");
    let rest = parts[fixed..].join("/");
    let prefix = if prefix.is_empty() && raw.starts_with(['/', '\\']) {
        "/".to_string()
    } else if prefix.is_empty() {
        ".".to_string()
    } else {
        prefix
    };
    (prefix, rest)
}

/// `ZipFilesNode`: create `zip_path` from `files` or `source_path` (see the module doc),
/// `compression` ZIP_DEFLATED (default) or ZIP_STORED; files that do not exist are skipped with
/// a warning, as upstream. The archive is written to a temporary file and renamed into place.
pub fn zip_files(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let zip_path = ctx.path_param("zip_path")?;
    let method = match ctx
        .param_str("compression")
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "" | "ZIP_DEFLATED" | "DEFLATED" => zip::CompressionMethod::Deflated,
        "ZIP_STORED" | "STORED" => zip::CompressionMethod::Stored,
        other => {
            return Err(NodeError::value(format!(
                "compression must be 'ZIP_STORED' or 'ZIP_DEFLATED', got '{other}'"
            )))
        }
    };
    let check = stopper(ctx);
    let listed = ctx.param_list("files")?;
    let source_raw = ctx.param_str("source_path").trim().to_string();
    let base_raw = ctx.param_str("base_dir").trim().to_string();
    let mut base = if base_raw.is_empty() {
        None
    } else {
        Some(check_path(ctx, &base_raw)?)
    };
    let mut files: Vec<PathBuf> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    if !listed.is_empty() {
        for item in listed.iter() {
            let raw = item.py_str();
            let p = check_path(ctx, &raw)?;
            if p.is_dir() {
                files.extend(files_below(&p, &check)?);
            } else if p.is_file() {
                files.push(p);
            } else {
                missing.push(raw);
            }
        }
    } else if !source_raw.is_empty() {
        if has_magic(&source_raw) {
            let (prefix, rest) = split_glob(&source_raw);
            let dir = check_path(ctx, &prefix)?;
            files = Glob::new(&rest, false, true)?
                .matches(&dir, &check)?
                .into_iter()
                .filter(|p| p.is_file())
                .collect();
            base.get_or_insert(dir);
        } else {
            let p = check_path(ctx, &source_raw)?;
            if p.is_dir() {
                files = files_below(&p, &check)?;
                base.get_or_insert(p);
            } else if p.is_file() {
                files.push(p);
            } else {
                return Err(NodeError::new(
                    "FileNotFoundError",
                    format!("source_path not found: '{}'", p.display()),
                ));
            }
        }
    }
    for m in &missing {
        ctx.log(
            log::Level::Warn,
            format!("ZipFiles: skipping '{m}': no such file"),
        );
    }
    files.retain(|f| f != &zip_path);
    // Files found below a folder or by a pattern may be symlinks out of the allowed paths.
    for f in &files {
        check_path(ctx, &f.to_string_lossy())?;
    }
    if files.is_empty() {
        return Err(NodeError::value(
            "no files to zip: set 'source_path' (a folder, a file or a glob pattern) or \
             connect a 'files' list",
        ));
    }
    if files.len() > MAX_ENTRIES {
        return Err(NodeError::value(format!(
            "{} files to zip; at most {MAX_ENTRIES} per archive",
            files.len()
        )));
    }
    // Archive names first, so duplicates fail before anything is written.
    let mut names = Vec::with_capacity(files.len());
    let mut seen = HashSet::new();
    for f in &files {
        let rel = base
            .as_ref()
            .and_then(|b| f.strip_prefix(b).ok())
            .filter(|r| !r.as_os_str().is_empty());
        let name = match rel {
            Some(r) => r
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/"),
            None => f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if !seen.insert(name.clone()) {
            return Err(NodeError::value(format!(
                "two files would be stored as '{name}' in the archive (the second is '{}'); \
                 set base_dir to keep their folders",
                f.display()
            )));
        }
        names.push(name);
    }
    super::create_parent(&zip_path)?;
    let dir = zip_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{:08x}.tmp",
        zip_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        fastrand::u32(..)
    ));
    let result = write_zip(&tmp, &zip_path, &files, &names, method, &check)
        .and_then(|()| fs::rename(&tmp, &zip_path).map_err(|e| io_err("write", &zip_path, &e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    ctx.set_output("zip_path", path_text(&zip_path));
    ctx.set_output("attachment_file", Value::list(vec![path_text(&zip_path)]));
    ctx.set_output("file_count", Value::from(files.len()));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

fn write_zip(
    tmp: &Path,
    zip_path: &Path,
    files: &[PathBuf],
    names: &[String],
    method: zip::CompressionMethod,
    check: &dyn Fn() -> Result<(), NodeError>,
) -> Result<(), NodeError> {
    let out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| io_err("write", zip_path, &e))?;
    let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(out));
    let werr = |e: zip::result::ZipError| {
        NodeError::new(
            "OSError",
            format!("cannot write '{}': {e}", zip_path.display()),
        )
    };
    let mut buf = vec![0u8; 256 * 1024];
    for (f, name) in files.iter().zip(names) {
        check()?;
        let meta = fs::metadata(f).map_err(|e| io_err("read", f, &e))?;
        let mut opts = zip::write::SimpleFileOptions::default()
            .compression_method(method)
            .large_file(meta.len() >= 0xFFFF_FFFF);
        if let Some(t) = mtime_of(&meta) {
            opts = opts.last_modified_time(t);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            opts = opts.unix_permissions(meta.permissions().mode() & 0o777);
        }
        let mut src = fs::File::open(f).map_err(|e| io_err("read", f, &e))?;
        zw.start_file(name.as_str(), opts).map_err(werr)?;
        loop {
            let n = src.read(&mut buf).map_err(|e| io_err("read", f, &e))?;
            if n == 0 {
                break;
            }
            zw.write_all(&buf[..n])
                .map_err(|e| io_err("write", zip_path, &e))?;
            check()?;
        }
    }
    let mut inner = zw.finish().map_err(werr)?;
    inner.flush().map_err(|e| io_err("write", zip_path, &e))
}

/// `UnzipFilesNode`: extract `zip_path` into `extract_to` (created if needed; existing files
/// are overwritten, as Python's zipfile). `files` lists every extracted path, directory entries
/// included (upstream counts them too).
pub fn unzip_files(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let zip_path = ctx.path_param("zip_path")?;
    let dest = ctx.path_param("extract_to")?;
    let file = match fs::File::open(&zip_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NodeError::new(
                "FileNotFoundError",
                format!("ZIP file not found: '{}'", zip_path.display()),
            ))
        }
        other => other.map_err(|e| io_err("read", &zip_path, &e))?,
    };
    let mut archive =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| zip_err(&zip_path, e))?;
    if archive.len() > MAX_ENTRIES {
        return Err(NodeError::value(format!(
            "'{}' has {} entries; at most {MAX_ENTRIES} are extracted (zip bomb guard)",
            zip_path.display(),
            archive.len()
        )));
    }
    let check = stopper(ctx);
    // Pass 1: every entry name is checked before anything is written.
    let mut plan: Vec<(usize, PathBuf, bool, String)> = Vec::with_capacity(archive.len());
    let mut declared: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| zip_err(&zip_path, e))?;
        let name = entry.name().map_err(|e| zip_err(&zip_path, e))?.to_string();
        let is_dir = entry.is_dir();
        declared = declared.saturating_add(entry.size());
        let parts = entry_parts(&zip_path, &name)?;
        if parts.is_empty() {
            continue;
        }
        let mut target = dest.clone();
        for p in &parts {
            target.push(p);
        }
        // Device names, allowed roots: the same rules as any path a node touches.
        check_path(ctx, &target.to_string_lossy())
            .map_err(|e| refuse_entry(&zip_path, &name, &e.message))?;
        plan.push((i, target, is_dir, name));
    }
    let cap = unzip_cap();
    if declared > cap {
        return Err(NodeError::value(format!(
            "'{}' would extract {declared} bytes; at most {cap} are extracted (zip bomb guard)",
            zip_path.display()
        )));
    }
    fs::create_dir_all(&dest).map_err(|e| io_err("create directory", &dest, &e))?;
    let root = fs::canonicalize(&dest).map_err(|e| io_err("extract to", &dest, &e))?;
    let mut written: u64 = 0;
    let mut extracted = Vec::with_capacity(plan.len());
    let mut buf = vec![0u8; 256 * 1024];
    for (i, target, is_dir, name) in &plan {
        check()?;
        let dir = if *is_dir {
            target.as_path()
        } else {
            target.parent().unwrap_or(&dest)
        };
        fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, &e))?;
        let real = fs::canonicalize(dir).map_err(|e| io_err("extract to", dir, &e))?;
        if !real.starts_with(&root) {
            return Err(refuse_entry(
                &zip_path,
                name,
                "a symbolic link in the destination leads outside it",
            ));
        }
        if !*is_dir {
            if fs::symlink_metadata(target).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(refuse_entry(
                    &zip_path,
                    name,
                    "it would overwrite a symbolic link",
                ));
            }
            let mut entry = archive.by_index(*i).map_err(|e| zip_err(&zip_path, e))?;
            let mut out = fs::File::create(target).map_err(|e| io_err("write", target, &e))?;
            loop {
                let n = match entry.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        drop(out);
                        let _ = fs::remove_file(target);
                        return Err(zip_err(&zip_path, e));
                    }
                };
                if n == 0 {
                    break;
                }
                written += n as u64;
                if written > cap {
                    drop(out);
                    let _ = fs::remove_file(target);
                    return Err(NodeError::value(format!(
                        "'{}' inflates to more than {cap} bytes; extraction stopped \
                         (zip bomb guard)",
                        zip_path.display()
                    )));
                }
                out.write_all(&buf[..n])
                    .map_err(|e| io_err("write", target, &e))?;
                check()?;
            }
        }
        extracted.push(path_text(target));
    }
    ctx.set_output("extract_to", path_text(&dest));
    ctx.set_output("file_count", Value::from(extracted.len()));
    ctx.set_output("files", Value::list(extracted));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        let z = Path::new("a.zip");
        assert_eq!(entry_parts(z, "a/b\\c.txt").unwrap(), ["a", "b", "c.txt"]);
        assert_eq!(entry_parts(z, "./a//b/").unwrap(), ["a", "b"]);
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "\\x",
            "C:/x",
            "c:x",
            "a\0b",
            "a\\..\\b",
        ] {
            let e = entry_parts(z, bad).unwrap_err();
            assert_eq!(e.kind, "PermissionError", "{bad}");
            assert!(e.message.starts_with("refused ZIP entry"), "{}", e.message);
        }
    }

    #[test]
    fn glob_prefix() {
        assert_eq!(split_glob("out/*.txt"), ("out".into(), "*.txt".into()));
        assert_eq!(
            split_glob("out\\sub\\**\\*.csv"),
            ("out/sub".into(), "**/*.csv".into())
        );
        assert_eq!(split_glob("*.txt"), (".".into(), "*.txt".into()));
    }
}
