//! The few file-system moves the store relies on for crash safety, each with its fsyncs.
//!
//! Appends become durable by `fsync`ing the file (and its directory when the file is new).
//! Whole-file replacements (the id counter, a partly delivered mailbox) write a temporary file,
//! fsync it, rename it over the old one and fsync the directory: a crash leaves either the old
//! file or the new one, never a mix. Removing a delivered mailbox is one `unlink` made durable by
//! fsyncing the directory: before it the mailbox is whole, after it it is gone.
//!
//! After a failed write the writer puts things back with [`truncate`] (an append undone, which
//! needs no free space) and checks with [`probe`] that the disk takes writes again.

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
/// of the directory). If writing or renaming the temporary file fails, it is removed (best
/// effort) and `path` is as it was; if only the last fsync fails, the new contents are in place
/// but perhaps not durable, which the caller undoes if it must.
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
    let renamed = write()
        .map_err(|e| StoreError::io(&tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e)));
    if let Err(e) = renamed {
        // A half-written temporary file must not take the space a retry needs.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent(path))
}

/// Cuts the file at `path` back to `len` bytes, durably (nothing to do if it is not longer).
/// Shrinking a file needs no free space, so this works on a full disk.
pub(crate) fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let cut = || -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        if file.metadata()?.len() > len {
            file.set_len(len)?;
            file.sync_all()?;
        }
        Ok(())
    };
    cut().map_err(|e| StoreError::io(path, e))
}

/// The size of the [`probe`] write: one block, the least a real append can need.
const PROBE_BYTES: usize = 4096;

/// Checks that the file system takes writes again: writes a block to `path`, fsyncs it and
/// removes it (the file is a leftover to remove at open if a crash interrupts this).
pub(crate) fn probe(path: &Path) -> Result<(), StoreError> {
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.write_all(&[b'\n'; PROBE_BYTES])?;
        file.sync_all()
    };
    let written = write();
    let removed = fs::remove_file(path);
    match (written, removed) {
        (Err(e), _) | (Ok(()), Err(e)) => Err(StoreError::io(path, e)),
        (Ok(()), Ok(())) => sync_dir(parent(path)),
    }
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
