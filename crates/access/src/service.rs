//! The access service: authenticates credentials (cached, so neither a password hash nor a store read sits
//! on the hot path), loads what a caller holds, and changes users, roles, grants and tokens.
//!
//! Caches are keyed to the store's access generation: a change on any replica increments it, and each replica
//! reads it at most every `generation_check` (default 500 ms), dropping everything it cached when it moved.

use crate::level::{Grant, Held, Level, RESOURCE_TYPES};
use crate::principal::{Principal, Scope};
use crate::{password, token};
use loopline_metadata_store::{AccessStore, AccessUser, StoreError, StoreResult};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workspace roles live in (Loopline has one).
pub const DEFAULT_WORKSPACE: &str = "default";
/// Built-in roles, created at start when missing.
pub const BUILTIN_ROLES: &[(&str, &str, &str)] = &[
    ("admin", "MANAGE", "Everything, including users, roles and tokens."),
    ("editor", "EDIT", "Read, use, create and change every resource."),
    ("viewer", "READ", "Read every resource."),
];
/// Most entries each cache holds before it starts over.
const CACHE_LIMIT: usize = 10_000;
/// How often a token's last-used time is written.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// Times a check is made again when access changed while it was made, before it is answered unremembered.
const CHECK_ATTEMPTS: u32 = 3;
/// `checked` before the first read of the generation.
const NEVER_CHECKED: i64 = i64::MIN;

/// Settings.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// Level on resources no grant names (MLflow's `default_permission`).
    pub default_level: Level,
    /// Password failures before the account is locked.
    pub lockout_after: i64,
    /// Longest lock; each further failure doubles it from one second up to this.
    pub lockout_max: Duration,
    /// How often the store's generation is read.
    pub generation_check: Duration,
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings {
            default_level: Level::Read,
            lockout_after: 5,
            lockout_max: Duration::from_secs(15 * 60),
            generation_check: Duration::from_millis(500),
        }
    }
}

/// Why credentials were not accepted. Deliberately vague to the client: it never says whether a user exists.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong, unknown, expired, revoked or locked.
    #[error("the credentials were not accepted")]
    Rejected,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Credentials taken from a request.
pub enum Credentials<'a> {
    /// HTTP Basic.
    Password {
        /// User name.
        username: &'a str,
        /// Password.
        password: &'a str,
    },
    /// A Loopline API token.
    Token(&'a str),
}

#[derive(Clone)]
struct Cached {
    user: AccessUser,
    held: Arc<Vec<Held>>,
    holds_admin_role: bool,
}

pub(crate) struct CachedToken {
    /// When this replica last recorded the token's use (ms since the epoch; 0: not yet).
    touched: AtomicI64,
    /// The stored SHA-256 of the secret (`None`: the stored text is not one, so nothing matches it).
    secret_digest: Option<[u8; 32]>,
    pub(crate) expires_time: Option<i64>,
    /// The caller the token stands for, built once.
    pub(crate) principal: Principal,
}

#[derive(Default)]
struct Caches {
    passwords: HashMap<String, ([u8; 32], Principal)>,
    tokens: HashMap<String, Arc<CachedToken>>,
}

/// Users, roles, grants and tokens, and the checks that read them.
pub struct Access {
    /// At most this many password hashes run at once (each takes 7 MiB and a core for tens of ms): a flood of
    /// guesses queues instead of exhausting memory.
    hashing: tokio::sync::Semaphore,
    /// Password checks of one user run one at a time, so parallel guesses each see the failures before them.
    checking: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    store: Arc<dyn AccessStore>,
    settings: AccessSettings,
    generation: AtomicI64,
    /// When the generation was last read, in ms since `started` (`NEVER_CHECKED`: not yet).
    checked: AtomicI64,
    started: Instant,
    caches: Mutex<Caches>,
    /// Moves (under the caches' lock, after they are emptied) each time they are: a check made at an earlier
    /// epoch may no longer hold.
    pub(crate) epoch: AtomicU64,
    cache_key: [u8; 32],
}

fn now_ms() -> i64 {
    loopline_core::time::now_millis()
}

/// True when a user name and password are within what a sign-in takes (an empty password never is).
pub(crate) fn checkable(username: &str, password: &str) -> bool {
    !password.is_empty() && password.len() <= password::MAX_PASSWORD_BYTES && username.len() <= 256
}

fn bounded_insert<V>(map: &mut HashMap<String, V>, key: String, value: V) {
    if map.len() >= CACHE_LIMIT {
        map.clear();
    }
    map.insert(key, value);
}

impl Access {
    /// A service over `store`.
    pub fn new(store: Arc<dyn AccessStore>, settings: AccessSettings) -> Arc<Access> {
        let mut cache_key = [0u8; 32];
        rand::fill(&mut cache_key);
        Arc::new(Access {
            hashing: tokio::sync::Semaphore::new(2),
            checking: Mutex::new(HashMap::new()),
            store,
            settings,
            generation: AtomicI64::new(i64::MIN),
            checked: AtomicI64::new(NEVER_CHECKED),
            started: Instant::now(),
            caches: Mutex::new(Caches::default()),
            epoch: AtomicU64::new(0),
            cache_key,
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn AccessStore> {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &AccessSettings {
        &self.settings
    }

    /// Creates the built-in roles that are missing.
    pub async fn ensure_builtin_roles(&self) -> StoreResult<()> {
        for (name, level, description) in BUILTIN_ROLES {
            if self.store.find_role_by_name(DEFAULT_WORKSPACE, name).await?.is_some() {
                continue;
            }
            let role = match self.store.create_role(DEFAULT_WORKSPACE, name, Some(description)).await {
                Ok(role) => role,
                // Another replica created it first.
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(error) => return Err(error),
            };
            for resource_type in RESOURCE_TYPES {
                self.store.add_grant(role.role_id, resource_type, "*", level).await?;
            }
        }
        self.forget();
        Ok(())
    }

    /// Drops every cached answer (after a change made here).
    pub fn forget(&self) {
        let mut caches = self.caches.lock().expect("access caches");
        caches.passwords.clear();
        caches.tokens.clear();
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Milliseconds since this service started (a clock that never goes back).
    pub(crate) fn monotonic_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// True while the generation read last is recent enough to trust what is cached.
    pub(crate) fn fresh(&self, now: i64) -> bool {
        let last = self.checked.load(Ordering::Acquire);
        let interval = i64::try_from(self.settings.generation_check.as_millis()).unwrap_or(i64::MAX);
        last != NEVER_CHECKED && now.saturating_sub(last) < interval
    }

    async fn sync(&self) -> StoreResult<()> {
        let now = self.monotonic_ms();
        if self.fresh(now) {
            return Ok(());
        }
        // One request reads the generation; those arriving meanwhile go on with what is cached.
        let last = self.checked.load(Ordering::Acquire);
        if self
            .checked
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Ok(());
        }
        let generation = self.store.access_generation().await?;
        if self.generation.swap(generation, Ordering::AcqRel) != generation {
            self.forget();
        }
        Ok(())
    }

    /// The keyed digest a password is remembered by (never the password itself).
    pub(crate) fn password_digest(&self, password: &str) -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(self.cache_key);
        digest.update(password.as_bytes());
        digest.finalize().into()
    }

    async fn load(&self, user: AccessUser) -> StoreResult<Cached> {
        let grants = self.store.grants_of_user(user.user_id).await?;
        let roles = self.store.roles_of_user(user.user_id).await?;
        let holds_admin_role = roles
            .iter()
            .any(|role| role.workspace == DEFAULT_WORKSPACE && role.name == "admin");
        let held = grants
            .into_iter()
            .filter_map(|grant| {
                Some(Held {
                    grant: Grant::parse(&grant.permission)?,
                    resource_type: grant.resource_type,
                    pattern: grant.resource_pattern,
                })
            })
            .collect();
        Ok(Cached {
            user,
            held: Arc::new(held),
            holds_admin_role,
        })
    }

    fn principal(&self, cached: &Cached, token_id: Option<&str>, scopes: &[Scope]) -> Principal {
        Principal {
            user_id: cached.user.user_id,
            username: Arc::from(cached.user.username.as_str()),
            is_admin: cached.user.is_admin || cached.holds_admin_role,
            token_id: token_id.map(Arc::from),
            scopes: Arc::from(scopes),
            held: cached.held.clone(),
            default_level: self.settings.default_level,
        }
    }

    /// Checks credentials. Passwords are verified with Argon2id once and then remembered (as a keyed digest)
    /// until anything about access changes; tokens are checked against their stored hash.
    pub async fn authenticate(&self, credentials: Credentials<'_>) -> Result<Principal, AuthError> {
        self.sync().await?;
        match credentials {
            Credentials::Password { username, password } => self.check_password(username, password).await,
            Credentials::Token(text) => self.check_token(text).await,
        }
    }

    async fn check_password(&self, username: &str, password: &str) -> Result<Principal, AuthError> {
        if !checkable(username, password) {
            return Err(AuthError::Rejected);
        }
        let digest = self.password_digest(password);
        if let Some((principal, _)) = self.remembered_password(username, &digest) {
            return Ok(principal);
        }
        let turn = {
            let mut checking = self.checking.lock().expect("password checks");
            if checking.len() >= CACHE_LIMIT {
                checking.clear();
            }
            checking.entry(username.to_string()).or_default().clone()
        };
        let _turn = turn.lock().await;
        // What the store said is remembered only when no change to access landed while it was read and
        // checked (the hash takes tens of ms): a change made meanwhile would otherwise be outlived by an answer
        // read before it. The check is then made again on what the store says now.
        for attempt in 1..=CHECK_ATTEMPTS {
            let epoch = self.epoch.load(Ordering::Acquire);
            let cached = self.verify_password(username, password).await?;
            let principal = self.principal(&cached, None, &[Scope::All]);
            let mut caches = self.caches.lock().expect("access caches");
            if self.epoch.load(Ordering::Acquire) == epoch {
                bounded_insert(&mut caches.passwords, username.to_string(), (digest, principal.clone()));
                return Ok(principal);
            }
            if attempt == CHECK_ATTEMPTS {
                // Access keeps changing: answer this request, remember nothing.
                return Ok(principal);
            }
        }
        Err(AuthError::Rejected)
    }

    /// Reads a user and checks a password against the stored hash, counting failures and locking.
    async fn verify_password(&self, username: &str, password: &str) -> Result<Cached, AuthError> {
        let Some(user) = self.store.find_user(username).await? else {
            let password = password.to_string();
            let _ = self.hash_work(move || password::verify_nothing(&password)).await;
            return Err(AuthError::Rejected);
        };
        let now = now_ms();
        if user.locked_until > now {
            return Err(AuthError::Rejected);
        }
        let Some(stored) = user.password_hash.clone() else {
            return Err(AuthError::Rejected);
        };
        let candidate = password.to_string();
        let matches = self
            .hash_work(move || password::verify(&candidate, &stored))
            .await
            .unwrap_or(false);
        if !matches {
            let failures = user.failed_logins + 1;
            let locked_until = if failures >= self.settings.lockout_after {
                let doublings = u32::try_from(failures - self.settings.lockout_after)
                    .unwrap_or(u32::MAX)
                    .min(20);
                let lock = Duration::from_secs(1u64 << doublings).min(self.settings.lockout_max);
                now + i64::try_from(lock.as_millis()).unwrap_or(i64::MAX)
            } else {
                0
            };
            if locked_until > 0 {
                tracing::warn!(username = %user.username, failures, "account locked after repeated password failures");
            }
            self.store
                .record_password_check(user.user_id, failures, locked_until)
                .await?;
            return Err(AuthError::Rejected);
        }
        if user.failed_logins > 0 {
            self.store.record_password_check(user.user_id, 0, 0).await?;
        }
        Ok(self.load(user).await?)
    }

    async fn check_token(&self, text: &str) -> Result<Principal, AuthError> {
        let Some((token_id, secret)) = token::parse(text) else {
            return Err(AuthError::Rejected);
        };
        let presented = token::secret_digest(secret);
        if let Some((cached, _)) = self.remembered_token(token_id) {
            return self
                .token_principal(&cached, token_id, &presented)
                .ok_or(AuthError::Rejected);
        }
        // As for passwords: remembered only when no change to access landed while the store was read.
        for attempt in 1..=CHECK_ATTEMPTS {
            let epoch = self.epoch.load(Ordering::Acquire);
            let cached = self.read_token(token_id).await?;
            let unchanged = {
                let mut caches = self.caches.lock().expect("access caches");
                let unchanged = self.epoch.load(Ordering::Acquire) == epoch;
                if unchanged {
                    bounded_insert(&mut caches.tokens, token_id.to_string(), cached.clone());
                }
                unchanged
            };
            if unchanged || attempt == CHECK_ATTEMPTS {
                return self
                    .token_principal(&cached, token_id, &presented)
                    .ok_or(AuthError::Rejected);
            }
        }
        Err(AuthError::Rejected)
    }

    /// A token as the store holds it, with the caller it stands for (`Rejected`: unknown, revoked, or its user
    /// is gone).
    async fn read_token(&self, token_id: &str) -> Result<Arc<CachedToken>, AuthError> {
        let Some(stored) = self.store.find_token(token_id).await? else {
            return Err(AuthError::Rejected);
        };
        if stored.revoked_time.is_some() {
            return Err(AuthError::Rejected);
        }
        let Some(user) = self.store.find_user_by_id(stored.user_id).await? else {
            return Err(AuthError::Rejected);
        };
        let scopes: Vec<Scope> = stored.scopes.iter().filter_map(|scope| Scope::parse(scope)).collect();
        let owner = self.load(user).await?;
        Ok(Arc::new(CachedToken {
            touched: AtomicI64::new(0),
            secret_digest: token::digest_from_hex(&stored.secret_hash),
            expires_time: stored.expires_time,
            principal: self.principal(&owner, Some(token_id), &scopes),
        }))
    }

    /// The caller of a token known to this replica, when the presented secret is its own and it has not
    /// expired.
    pub(crate) fn token_principal(
        &self,
        cached: &CachedToken,
        token_id: &str,
        presented: &[u8; 32],
    ) -> Option<Principal> {
        if !cached
            .secret_digest
            .is_some_and(|digest| token::same_bytes(&digest, presented))
        {
            return None;
        }
        let now = now_ms();
        if cached.expires_time.is_some_and(|expires| expires <= now) {
            return None;
        }
        self.touch(cached, token_id, now);
        Some(cached.principal.clone())
    }

    /// A remembered token with the epoch it was read at.
    pub(crate) fn remembered_token(&self, token_id: &str) -> Option<(Arc<CachedToken>, u64)> {
        let caches = self.caches.lock().expect("access caches");
        let cached = caches.tokens.get(token_id).cloned()?;
        Some((cached, self.epoch.load(Ordering::Acquire)))
    }

    /// The caller of a remembered password, with the epoch it was read at.
    pub(crate) fn remembered_password(&self, username: &str, digest: &[u8; 32]) -> Option<(Principal, u64)> {
        let caches = self.caches.lock().expect("access caches");
        let (known, principal) = caches.passwords.get(username)?;
        token::same_bytes(known, digest).then(|| (principal.clone(), self.epoch.load(Ordering::Acquire)))
    }

    /// Runs password hashing work on a blocking thread, a few at a time.
    pub async fn hash_work<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let _permit = self.hashing.acquire().await.ok()?;
        tokio::task::spawn_blocking(work).await.ok()
    }

    /// True when `password` is `username`'s: the same check (and failure count, and lock) as a sign-in.
    pub async fn confirm_password(&self, username: &str, password: &str) -> bool {
        self.check_password(username, password).await.is_ok()
    }

    /// Records a token's use, at most once a minute, without holding the request.
    pub(crate) fn touch(&self, cached: &CachedToken, token_id: &str, now: i64) {
        let last = cached.touched.load(Ordering::Relaxed);
        let interval = i64::try_from(TOUCH_INTERVAL.as_millis()).unwrap_or(i64::MAX);
        if now.saturating_sub(last) < interval
            || cached
                .touched
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (store, token_id) = (self.store.clone(), token_id.to_string());
        tokio::spawn(async move {
            if let Err(error) = store.touch_token(&token_id, now).await {
                tracing::warn!(%error, "could not record a token's last use");
            }
        });
    }

    /// The principal of a user by id (what a verified OIDC login or the bootstrap maps to).
    pub async fn principal_of(&self, user: AccessUser, scopes: &[Scope]) -> StoreResult<Principal> {
        let cached = self.load(user).await?;
        Ok(self.principal(&cached, None, scopes))
    }

    /// The principal of a user signed in elsewhere (OIDC), holding also the roles its groups map to (read
    /// at each sign-in, so leaving a group at the provider takes the role away).
    pub async fn principal_with_roles(&self, user: AccessUser, extra_roles: &[String]) -> StoreResult<Principal> {
        let mut cached = self.load(user).await?;
        let mut held: Vec<Held> = cached.held.as_ref().clone();
        for name in extra_roles {
            let Some(role) = self.store.find_role_by_name(DEFAULT_WORKSPACE, name).await? else {
                tracing::warn!(role = %name, "an OIDC group maps to a role that does not exist");
                continue;
            };
            if role.name == "admin" {
                cached.holds_admin_role = true;
            }
            held.extend(
                self.store
                    .list_grants(role.role_id)
                    .await?
                    .into_iter()
                    .filter_map(|grant| {
                        Some(Held {
                            grant: Grant::parse(&grant.permission)?,
                            resource_type: grant.resource_type,
                            pattern: grant.resource_pattern,
                        })
                    }),
            );
        }
        cached.held = Arc::new(held);
        Ok(self.principal(&cached, None, &[Scope::All]))
    }

    /// The store's access generation, read at most every `generation_check`: callers with caches of their own
    /// keep an entry only while the generation it was made under is current.
    pub async fn generation(&self) -> StoreResult<i64> {
        self.sync().await?;
        Ok(self.generation.load(Ordering::Acquire))
    }

    /// The role that holds one user's own grants (MLflow's `__user_<id>__`), created when missing.
    pub async fn personal_role(&self, user_id: i64) -> StoreResult<i64> {
        let name = format!("__user_{user_id}__");
        if let Some(role) = self.store.find_role_by_name(DEFAULT_WORKSPACE, &name).await? {
            // Held already, as a rule; assigned again if an earlier attempt stopped between the two steps.
            match self.store.assign_role(user_id, role.role_id).await {
                Ok(()) | Err(StoreError::AlreadyExists(_)) => {}
                Err(error) => return Err(error),
            }
            return Ok(role.role_id);
        }
        let role = match self
            .store
            .create_role(DEFAULT_WORKSPACE, &name, Some("grants made to one user"))
            .await
        {
            Ok(role) => role,
            Err(StoreError::AlreadyExists(_)) => self
                .store
                .find_role_by_name(DEFAULT_WORKSPACE, &name)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("role {name}")))?,
            Err(error) => return Err(error),
        };
        match self.store.assign_role(user_id, role.role_id).await {
            Ok(()) | Err(StoreError::AlreadyExists(_)) => {}
            Err(error) => return Err(error),
        }
        Ok(role.role_id)
    }

    /// Sets one user's own grant on one resource (replacing an earlier one).
    pub async fn grant_to_user(
        &self,
        user_id: i64,
        resource_type: &str,
        resource_id: &str,
        grant: Grant,
    ) -> StoreResult<()> {
        let role_id = self.personal_role(user_id).await?;
        let existing = self
            .store
            .list_grants(role_id)
            .await?
            .into_iter()
            .find(|held| held.resource_type == resource_type && held.resource_pattern == resource_id);
        match existing {
            Some(held) => {
                self.store.update_grant(held.grant_id, grant.name()).await?;
            }
            None => {
                match self
                    .store
                    .add_grant(role_id, resource_type, resource_id, grant.name())
                    .await
                {
                    Ok(_) => {}
                    // Granted at the same moment by another request: this one's level wins.
                    Err(StoreError::AlreadyExists(_)) => {
                        if let Some(held) =
                            self.store.list_grants(role_id).await?.into_iter().find(|held| {
                                held.resource_type == resource_type && held.resource_pattern == resource_id
                            })
                        {
                            self.store.update_grant(held.grant_id, grant.name()).await?;
                        }
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        self.forget();
        Ok(())
    }

    /// Gives the creator of a resource MANAGE on it (admins need nothing).
    pub async fn grant_creator(
        &self,
        principal: &Principal,
        resource_type: &str,
        resource_id: &str,
    ) -> StoreResult<()> {
        // `*` means every resource of the kind: a resource of that name gets no grant of its own.
        if principal.is_admin || resource_id == "*" {
            return Ok(());
        }
        self.grant_to_user(
            principal.user_id,
            resource_type,
            resource_id,
            Grant::Level(Level::Manage),
        )
        .await
    }
}
