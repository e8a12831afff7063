//! Owner-only files for the robot's own data: the store, the status file, the log and the audit
//! files hold job data and error texts, so on Unix they are created mode 0600 and the
//! directories the robot creates for them 0700 (an existing file the robot owns is tightened to
//! 0600 when opened; an existing directory is left as its owner set it). On other platforms the
//! platform defaults (the user profile's ACLs) apply.
//!
//! Files that workflows write are not affected: they keep the process defaults.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `dir` and its missing parents, the new ones owner-only.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// `OpenOptions` whose newly created files are owner-only.
pub fn open_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Opens `path` for appending (created owner-only; an existing file is made owner-only).
pub fn open_append(path: &Path) -> io::Result<File> {
    let file = open_options().create(true).append(true).open(path)?;
    restrict(&file)?;
    Ok(file)
}

/// Writes `bytes` to `path` (created owner-only, or truncated and made owner-only).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut file = open_options()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    restrict(&file)?;
    file.write_all(bytes)
}

/// Makes an open file owner-only (Unix; a no-op elsewhere).
pub fn restrict(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_new_directories_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        create_dir_all(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        let file = nested.join("f");
        write(&file, b"x").unwrap();
        assert_eq!(mode(&file), 0o600);
        let old = nested.join("old");
        std::fs::write(&old, "x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_append(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
    }
}
