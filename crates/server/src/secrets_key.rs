//! The key that seals secrets the server stores (webhook signing secrets): `LOOPLINE_SECRETS_KEY` (64 hex
//! characters; replicas sharing a database must share it), else a key file made once in the data directory,
//! readable by its owner only.

use anyhow::Context;
pub use loopline_http_api::webhooks::seal::SECRETS_KEY_ENV;
use loopline_http_api::webhooks::seal::{Sealer, key_from_hex, key_to_hex};
use std::io::Write;
use std::path::Path;

const KEY_FILE: &str = "secrets.key";

/// The secrets key, from the environment or the data directory's key file (made on first use).
pub fn secrets_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    if let Ok(text) = std::env::var(SECRETS_KEY_ENV) {
        return key_from_hex(&text).map_err(|reason| anyhow::anyhow!("{SECRETS_KEY_ENV}: {reason}"));
    }
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return key_from_hex(&text).map_err(|reason| {
                anyhow::anyhow!(
                    "{}: {reason}; restore the file or set {SECRETS_KEY_ENV}",
                    path.display()
                )
            });
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let key = Sealer::generate_key();
    let temporary = data_dir.join(format!("{KEY_FILE}.{}.tmp", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(key_to_hex(&key).as_bytes())?;
        file.sync_all()?;
    }
    // Two servers starting together: the first key written wins, the other reads it.
    match std::fs::hard_link(&temporary, &path) {
        Ok(()) => {
            let _ = std::fs::remove_file(&temporary);
            tracing::info!(
                path = %path.display(),
                "made a key for stored secrets; servers sharing a database need the same key in {SECRETS_KEY_ENV}"
            );
            Ok(key)
        }
        Err(_) => {
            let _ = std::fs::remove_file(&temporary);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            key_from_hex(&text).map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_made_once_and_kept_private() {
        let directory = tempfile::tempdir().unwrap();
        let first = secrets_key(directory.path()).unwrap();
        assert_eq!(secrets_key(directory.path()).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(directory.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only");
        }
        std::fs::write(directory.path().join(KEY_FILE), "short").unwrap();
        assert!(secrets_key(directory.path()).is_err());
    }
}
