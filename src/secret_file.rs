//! Files that hold secrets (the token-signing key, the pseudonym key): created once, never
//! overwritten, readable by the owner only.

use std::io::Write;
use std::path::Path;

/// Creates `path` (and its directory) holding `contents`, with mode 0600 on Unix. Fails if the
/// file exists: a secret is never silently replaced.
pub fn create(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)
}
