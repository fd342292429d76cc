//! Writing certificate and key files: never over an existing file without `--force`, keys
//! readable by their owner only.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The mode of a private key file.
const KEY_MODE: u32 = 0o600;
/// The mode of a certificate file.
const CERT_MODE: u32 = 0o644;

/// Refuses when any of `paths` exists and `force` is not given.
pub fn check_free(paths: &[&Path], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        bail!(
            "{} already exists; pass --force to replace it",
            existing.display()
        );
    }
    Ok(())
}

/// Writes a private key, mode 0600.
pub fn write_key(path: &Path, pem: &str) -> anyhow::Result<PathBuf> {
    write(path, pem, KEY_MODE)
}

/// Writes a certificate, mode 0644.
pub fn write_cert(path: &Path, pem: &str) -> anyhow::Result<PathBuf> {
    write(path, pem, CERT_MODE)
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<PathBuf> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // A file that existed (--force) keeps its old mode through `open`: set it.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.to_owned())
}
