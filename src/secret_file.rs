//! Files that hold secrets (the token-signing key, the pseudonym key) or personal data (the
//! database, exports): readable and writable by their owner only, whatever the process umask.
//!
//! The mode is given when a file is created (`open(2)` with 0600, which a umask can only
//! narrow), never left to the umask. A secret found readable or writable by anyone else is
//! refused rather than used or silently repaired: it may have been copied already, and only the
//! operator can judge whether to rotate it.

use std::io::Write;
use std::path::Path;

/// The permission bits of a file that only its owner may use.
pub const OWNER_ONLY: u32 = 0o600;

/// The bits that let anyone but the owner read, write or run a file.
#[cfg(unix)]
const GROUP_OR_OTHER: u32 = 0o077;

/// A secret file whose mode lets others at it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} is readable or writable by users other than its owner (mode {mode:04o}); a secret must be owner-only. \
     If someone else may have read it, replace it; then run `chmod 600 {path}`"
)]
pub struct Exposed {
    pub path: String,
    pub mode: u32,
}

/// Creates `path` (and, owner-only, any directory it needs) holding `contents`, with mode 0600.
/// Fails if the file exists: a secret is never silently replaced.
pub fn create(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    create_parent(path)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    owner_only(&mut options);
    options.open(path)?.write_all(contents)
}

/// Writes `contents` to `path`, creating it with mode 0600 or replacing what an existing regular
/// file held and making it owner-only (an export written over an older one, say). Anything
/// else at the path (a terminal, `/dev/null`) is written to and left as it is.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    owner_only(&mut options);
    let mut file = options.open(path)?;
    restrict_regular_file(&file)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Opens `path` for writing, owner-only (created with mode 0600, or an existing regular file made
/// so), without truncating it: a report a resumed run goes on writing.
pub fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    owner_only(&mut options);
    let file = options.open(path)?;
    restrict_regular_file(&file)?;
    Ok(file)
}

/// Creates an empty `path` with mode 0600 if there is none, so that what later opens it (SQLite)
/// finds an owner-only file instead of creating one under the umask. An existing file is left
/// as it is.
pub fn precreate(path: &Path) -> std::io::Result<()> {
    create_parent(path)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    owner_only(&mut options);
    options.open(path).map(drop)
}

/// The permission bits of `path` if it exists and anyone but its owner may read, write or run
/// it; `None` when it is owner-only, missing, or on a system without Unix modes.
pub fn too_open(path: &Path) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(m) => {
                let mode = m.permissions().mode() & 0o7777;
                Ok((mode & GROUP_OR_OTHER != 0).then_some(mode))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
    }
}

/// Makes `path` owner-only (0600).
pub fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(OWNER_ONLY))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Reads a secret, refusing one that others may read or change.
pub fn read(path: &Path) -> Result<String, ReadError> {
    if let Some(mode) = too_open(path).map_err(ReadError::Io)? {
        return Err(ReadError::Exposed(Exposed {
            path: path.display().to_string(),
            mode,
        }));
    }
    std::fs::read_to_string(path).map_err(ReadError::Io)
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Exposed(Exposed),
    #[error(transparent)]
    Io(std::io::Error),
}

fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => create_dir(dir),
        None => Ok(()),
    }
}

/// Creates `dir` and its missing parents, each new one owner-only (0700): a directory made for a
/// secret or the database lists nothing to anyone else.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn owner_only(options: &mut std::fs::OpenOptions) {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, OWNER_ONLY);
    #[cfg(not(unix))]
    let _ = options;
}

/// `open(2)` applies the mode only to a file it creates: an existing regular file is made
/// owner-only here.
fn restrict_regular_file(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = file.metadata()?;
        if meta.is_file() && meta.permissions().mode() & GROUP_OR_OTHER != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(OWNER_ONLY))?;
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
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_files_and_directories_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("made/for/it/key");
        create(&secret, b"s").unwrap();
        assert_eq!(mode(&secret), 0o600);
        assert_eq!(mode(&dir.path().join("made/for")), 0o700);
        assert!(create(&secret, b"again").is_err(), "never replaced");

        let empty = dir.path().join("db/whg.db");
        precreate(&empty).unwrap();
        assert_eq!(mode(&empty), 0o600);
        std::fs::write(&empty, b"kept").unwrap();
        precreate(&empty).unwrap();
        assert_eq!(std::fs::read(&empty).unwrap(), b"kept", "contents kept");
    }

    #[test]
    fn an_existing_export_is_replaced_and_made_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export.ndjson");
        std::fs::write(&out, b"old, longer contents").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&out, b"new").unwrap();
        assert_eq!(mode(&out), 0o600);
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
    }

    #[test]
    fn a_secret_others_can_read_or_write_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        create(&key, b"secret").unwrap();
        assert_eq!(read(&key).unwrap(), "secret");
        for open in [0o644, 0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(open)).unwrap();
            let err = read(&key).unwrap_err().to_string();
            assert!(
                err.contains(&format!("mode {open:04o}"))
                    && err.contains(&format!("chmod 600 {}", key.display())),
                "{err}"
            );
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(
            read(&key).unwrap(),
            "secret",
            "read-only for the owner is fine"
        );
        assert_eq!(too_open(&dir.path().join("missing")).unwrap(), None);
    }
}

/// The shortest random key kept in a key file: 256 bits.
const KEY_BYTES: usize = 32;

/// A random key kept as hex in `path` (the pseudonym key, the session key): read if the file
/// exists (refused if others can read it, or it is shorter than 32 bytes), else created with 32
/// random bytes, owner-only. The error says what is wrong with the file, in words.
pub fn load_or_create_key(path: &Path) -> Result<Vec<u8>, String> {
    if path.exists() {
        let text = read(path).map_err(|e| e.to_string())?;
        let bytes = hex::decode(text.trim()).map_err(|e| e.to_string())?;
        if bytes.len() < KEY_BYTES {
            return Err("must hold at least 32 bytes, as hex".into());
        }
        return Ok(bytes);
    }
    let mut bytes = vec![0u8; KEY_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no system randomness".to_string())?;
    create(path, hex::encode(&bytes).as_bytes()).map_err(|e| e.to_string())?;
    Ok(bytes)
}
