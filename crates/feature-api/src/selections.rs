//! Resolved feature selections kept per definitions object, so a lookup does not resolve its references and
//! parse its on-demand expressions again on every request. An entry is used only while the definitions it was
//! made from are the ones a request holds (a new version is a new object).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use loopline_features::{Definitions, FeatureError, FeatureSelection, Wanted, resolve};

/// Entries kept before the cache starts afresh.
const MAX_ENTRIES: usize = 1024;

type Key = (usize, String, bool);
/// The definitions an entry was made from, and the selection.
type Entry = (Weak<Definitions>, Arc<FeatureSelection>);

/// The cache.
#[derive(Default)]
pub struct Selections {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Selections {
    /// The selection for `wanted` in `definitions`, resolved once per definitions object.
    pub fn select(
        &self,
        definitions: &Arc<Definitions>,
        wanted: &Wanted,
        full_names: bool,
    ) -> Result<Arc<FeatureSelection>, FeatureError> {
        let asked = match wanted {
            Wanted::Service(name) => format!("s\u{1}{name}"),
            Wanted::References(references) => format!("r\u{1}{}", references.join("\u{1}")),
        };
        let key = (Arc::as_ptr(definitions) as usize, asked, full_names);
        {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((made_from, selection)) = entries.get(&key)
                && made_from.upgrade().is_some_and(|d| Arc::ptr_eq(&d, definitions))
            {
                return Ok(selection.clone());
            }
        }
        let selection = Arc::new(resolve(definitions, wanted, full_names)?);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (Arc::downgrade(definitions), selection.clone()));
        Ok(selection)
    }
}
