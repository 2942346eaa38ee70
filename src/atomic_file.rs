//! Writing files so that readers see the old content or the new, never a part.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
/// The file is readable by its owner only (0600): exports, archives and plans hold what the
/// organisation said.
///
/// # Errors
/// Any I/O failure; the temporary file is removed then.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_beside(path);
    let result = (|| {
        let mut file = create_private(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

fn temporary_beside(path: &Path) -> std::path::PathBuf {
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("perch");
    directory.join(format!(".{file_name}.{}.tmp", std::process::id()))
}

/// A file written a piece at a time that appears at its path only when [`Staged::commit`]
/// has synced it whole; dropped before that, it leaves nothing behind. For output too large
/// to hold in memory (a backup).
pub struct Staged {
    path: std::path::PathBuf,
    temporary: std::path::PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Staged {
    /// Creates the temporary file (0600) beside `path`.
    ///
    /// # Errors
    /// Any I/O failure.
    pub fn create(path: &Path) -> std::io::Result<Staged> {
        let temporary = temporary_beside(path);
        let file = create_private(&temporary)?;
        Ok(Staged {
            path: path.to_path_buf(),
            temporary,
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Flushes and syncs the file and renames it over the path.
    ///
    /// # Errors
    /// Any I/O failure; the temporary file is removed then.
    pub fn commit(mut self) -> std::io::Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let result = file
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)
            .and_then(|file| file.sync_all())
            .and_then(|()| std::fs::rename(&self.temporary, &self.path));
        if result.is_err() {
            let _ = std::fs::remove_file(&self.temporary);
        }
        result
    }
}

impl Write for Staged {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match &mut self.file {
            Some(file) => file.write(bytes),
            None => Err(std::io::Error::other(
                "the staged file is already committed",
            )),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Creates (or truncates) a file that only its owner may read and write.
///
/// # Errors
/// Any I/O failure.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}
