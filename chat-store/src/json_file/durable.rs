//! The few file-system moves the store relies on for crash safety, each with its fsyncs.
//!
//! Appends become durable by `fsync`ing the file (and its directory when the file is new).
//! Whole-file replacements (the id counter, a partly delivered mailbox) write a temporary file,
//! fsync it, rename it over the old one and fsync the directory: a crash leaves either the old
//! file or the new one, never a mix. Removing a delivered mailbox is one `unlink` made durable by
//! fsyncing the directory: before it the mailbox is whole, after it it is gone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::layout::TMP_SUFFIX;
use crate::store::StoreError;

/// Fsyncs a directory, so that the entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// The temporary sibling `path` is written to before it is renamed into place.
pub(crate) fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// Replaces `path` with `contents` atomically and durably (temporary file, fsync, rename, fsync
/// of the directory).
pub(crate) fn replace(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let tmp = temporary(path);
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()
    };
    write().map_err(|e| StoreError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
    sync_dir(parent(path))
}

/// Removes `path` (if it exists) durably.
pub(crate) fn remove(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// The directory holding `path` (every path the store builds has one).
pub(crate) fn parent(path: &Path) -> &Path {
    path.parent()
        .expect("store paths are built as DIR/<file> or DIR/<subdir>/<file>")
}
