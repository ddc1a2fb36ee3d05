//! Callers remembered for a few seconds by a fingerprint of what they presented (a verified OIDC ID token, a
//! browser session cookie), so the signature and store work is not repeated on every request. An entry holds
//! only while the access generation it was made under is current: any change to users, roles or grants, on
//! any replica, ends it at the next generation read.

use crate::principal::Principal;
use crate::service::Access;
use loopline_metadata_store::StoreResult;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most callers remembered before the cache starts over.
const LIMIT: usize = 10_000;

/// A fingerprint of presented credentials (never the credentials themselves).
pub type Fingerprint = [u8; 32];

/// Remembered callers.
pub struct RememberedCallers {
    longest: Duration,
    entries: Mutex<HashMap<Fingerprint, Remembered>>,
}

struct Remembered {
    principal: Principal,
    until: Instant,
    generation: i64,
}

/// What a lookup found: the caller, or the generation to remember one under once it is checked.
pub enum Lookup {
    /// Remembered and still current.
    Known(Principal),
    /// Not remembered: check the credentials, then `remember` under this generation.
    Unknown(i64),
}

impl RememberedCallers {
    /// Remembers each caller for at most `longest`.
    pub fn new(longest: Duration) -> RememberedCallers {
        RememberedCallers {
            longest,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The fingerprint of presented text.
    pub fn fingerprint(text: &str) -> Fingerprint {
        Sha256::digest(text.as_bytes()).into()
    }

    /// The caller remembered for `fingerprint`, if still current.
    pub async fn lookup(&self, access: &Access, fingerprint: &Fingerprint) -> StoreResult<Lookup> {
        let generation = access.generation().await?;
        let entries = self.entries.lock().expect("remembered callers");
        Ok(match entries.get(fingerprint) {
            Some(entry) if entry.generation == generation && Instant::now() < entry.until => {
                Lookup::Known(entry.principal.clone())
            }
            _ => Lookup::Unknown(generation),
        })
    }

    /// Remembers a checked caller for the shorter of `valid_for` and the cache's longest time.
    pub fn remember(&self, fingerprint: Fingerprint, principal: &Principal, generation: i64, valid_for: Duration) {
        let mut entries = self.entries.lock().expect("remembered callers");
        if entries.len() >= LIMIT {
            entries.clear();
        }
        entries.insert(
            fingerprint,
            Remembered {
                principal: principal.clone(),
                until: Instant::now() + self.longest.min(valid_for),
                generation,
            },
        );
    }
}
