//! Dataset versions a pipeline step reads: put in the project under `.loopline/datasets/ID/NAME` from the
//! cache as read-only copies. Copies, not hard links: a step running as root ignores the read-only mode, and
//! writing through a link would change the cached object under its id for every later run.

use std::path::{Path, PathBuf};

use super::{ContentId, Project};

impl Project {
    /// Makes the content `id` (complete in the cache) available as `.loopline/datasets/HEX/NAME` and returns
    /// that path. Built in a staging directory renamed into place, so an interrupted run leaves either
    /// nothing or the whole version.
    pub fn materialize(&self, id: &ContentId, name: &str) -> Result<PathBuf, String> {
        if name.is_empty()
            || name.len() > 255
            || name.contains(['/', '\\', '\0'])
            || name == "."
            || name == ".."
            || super::manifest::is_reserved_name(name)
        {
            return Err(format!("'{name}' cannot name a dataset's data"));
        }
        let base = self.root().join(".loopline/datasets");
        let home = base.join(id.hex());
        let data = home.join(name);
        if std::fs::symlink_metadata(&data).is_ok() {
            return Ok(data);
        }
        std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
        let staging = base.join(format!(".staging-{}", uuid::Uuid::new_v4().simple()));
        let built = self.build(id, &staging.join(name));
        let placed = built.and_then(|()| {
            if home.exists() {
                // Another version's name for the same content: add this name beside it.
                std::fs::rename(staging.join(name), &data).map_err(|e| format!("placing {}: {e}", data.display()))
            } else {
                std::fs::rename(&staging, &home).map_err(|e| format!("placing {}: {e}", home.display()))
            }
        });
        let _ = std::fs::remove_dir_all(&staging);
        placed.map(|()| data)
    }

    fn build(&self, id: &ContentId, target: &Path) -> Result<(), String> {
        let parent = target.parent().ok_or("a dataset's data has a parent directory")?;
        std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        if !id.is_directory() {
            return copy(&self.cache().path_of(id), target);
        }
        let manifest = self.cache().manifest(id)?;
        for entry in manifest.entries() {
            super::manifest::check_relative_path(&entry.path)?;
            let file = target.join(&entry.path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            copy(&self.cache().path_of(&entry.id()?), &file)?;
        }
        Ok(())
    }
}

fn copy(object: &Path, target: &Path) -> Result<(), String> {
    std::fs::copy(object, target)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", object.display(), target.display()))
}
