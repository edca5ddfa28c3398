//! Replacing a state file so that a crash or a full disk never leaves it half written.
//!
//! [`replace`] writes the new contents to a temporary file beside the target, fsyncs it, renames
//! it over the target and fsyncs the directory, so the target holds either the old contents or
//! the new ones, whole. When anything fails (the disk is full, the file size limit is reached,
//! the directory is read-only) the temporary file is removed and the old contents stay; the error
//! names what failed. load-monitor's snapshots and allocate's live inventory both use it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Replace `path` with what `write` writes, through the temporary file `tmp` (in the same
/// directory, so the rename is atomic). Returns what `write` returned.
pub fn replace<T>(
    path: &Path,
    tmp: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T>,
) -> Result<T> {
    let result = write_then_rename(path, tmp, write);
    if result.is_err() {
        // Whatever was written is incomplete: never leave it for a reader to take.
        let _ = std::fs::remove_file(tmp);
    }
    result
}

fn write_then_rename<T>(
    path: &Path,
    tmp: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T>,
) -> Result<T> {
    let file =
        File::create(tmp).map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let value = write(&mut out)?;
    let writing = |e: std::io::Error| Error::io(format!("writing {}", tmp.display()), e);
    out.flush().map_err(writing)?;
    let file = out.into_inner().map_err(|e| writing(e.into_error()))?;
    file.sync_all().map_err(writing)?;
    drop(file);
    std::fs::rename(tmp, path).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_old_contents_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let tmp = dir.path().join("state.tmp");
        replace(&path, &tmp, |w| {
            w.write_all(b"good\n").map_err(|e| Error::io("writing", e))
        })
        .unwrap();
        let err = replace(&path, &tmp, |w| {
            w.write_all(b"half").map_err(|e| Error::io("writing", e))?;
            Err::<(), _>(Error::failed("the disk is full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("the disk is full"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "good\n");
        assert!(!tmp.exists());
    }
}
