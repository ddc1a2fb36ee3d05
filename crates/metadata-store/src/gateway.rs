//! LLM gateway keys, team limits and the usage ledger they are held to. Reservations are all-or-nothing and
//! conditional (`used + reserved + amount <= limit` in one statement per row), so replicas sharing one
//! database never together pass a limit; settlement replaces a reservation by what the call used.

use crate::error::StoreResult;
use async_trait::async_trait;

/// Limits of a key or a team (`None`: no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayLimits {
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens (prompt and completion) per minute.
    pub tpm: Option<i64>,
    /// Calls in flight at once.
    pub max_parallel: Option<i64>,
    /// Spend per budget period, in millionths of a US dollar.
    pub budget_micros: Option<i64>,
    /// `day`, `week`, `month` (UTC) or `total`.
    pub budget_period: String,
}

/// A gateway key: an access token with limits and the models it may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayKey {
    /// The access token it is.
    pub token_id: String,
    /// The team whose limits also apply, and whose spend it adds to.
    pub team: Option<String>,
    /// Gateway models it may call (empty: any its owner may use).
    pub models: Vec<String>,
    /// Its own limits.
    pub limits: GatewayLimits,
    /// Milliseconds since the epoch.
    pub created_time: i64,
    /// Milliseconds since the epoch.
    pub updated_time: i64,
}

/// A team's limits, shared by its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayTeam {
    /// Its name.
    pub team: String,
    /// Its limits.
    pub limits: GatewayLimits,
    /// Milliseconds since the epoch.
    pub created_time: i64,
    /// Milliseconds since the epoch.
    pub updated_time: i64,
}

/// One amount to reserve: `subject` (`key:..`, `team:..`, `model:..`), `kind` (`requests`, `tokens`, `spend`)
/// in the window starting at `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageClaim {
    /// Whose usage.
    pub subject: String,
    /// What is counted.
    pub kind: String,
    /// Start of the window (milliseconds since the epoch; 0 for all time).
    pub window: i64,
    /// How much to reserve.
    pub amount: i64,
    /// The limit `used + reserved` may reach (`None`: only tallied).
    pub limit: Option<i64>,
}

/// A call in flight held against `limit` calls of `subject`, lapsing at `expires_time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLease {
    /// Its id.
    pub lease_id: String,
    /// Whose calls.
    pub subject: String,
    /// Calls in flight allowed.
    pub limit: i64,
    /// Milliseconds since the epoch.
    pub expires_time: i64,
}

/// What a reservation turned into: `reserved` is taken back and `actual` counted as used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSettlement {
    /// Whose usage.
    pub subject: String,
    /// What is counted.
    pub kind: String,
    /// Start of the window the reservation was made in.
    pub window: i64,
    /// What was reserved.
    pub reserved: i64,
    /// What was used.
    pub actual: i64,
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// Whose usage.
    pub subject: String,
    /// What is counted.
    pub kind: String,
    /// Start of its window.
    pub window: i64,
    /// Used.
    pub used: i64,
    /// Reserved by calls in flight.
    pub reserved: i64,
}

/// What a reservation answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Everything was reserved; the level (`used + reserved`) of each claim after it, in order.
    Granted(Vec<i64>),
    /// Nothing was reserved: the claim at this index would pass its limit (an index past the claims: the
    /// lease at that index less the number of claims would).
    Refused(usize),
}

/// Gateway keys, team limits and the usage ledger.
#[async_trait]
pub trait GatewayKeyStore: Send + Sync {
    /// Stores a key (replacing one with the same token).
    async fn put_gateway_key(&self, key: &GatewayKey) -> StoreResult<()>;
    /// The key a token is, if it is one.
    async fn get_gateway_key(&self, token_id: &str) -> StoreResult<Option<GatewayKey>>;
    /// Every key.
    async fn list_gateway_keys(&self) -> StoreResult<Vec<GatewayKey>>;
    /// Forgets a key (its usage stays in the ledger).
    async fn delete_gateway_key(&self, token_id: &str) -> StoreResult<()>;
    /// Stores a team's limits (replacing earlier ones).
    async fn put_gateway_team(&self, team: &GatewayTeam) -> StoreResult<()>;
    /// A team's limits, if set.
    async fn get_gateway_team(&self, team: &str) -> StoreResult<Option<GatewayTeam>>;
    /// Every team with limits.
    async fn list_gateway_teams(&self) -> StoreResult<Vec<GatewayTeam>>;
    /// Forgets a team's limits.
    async fn delete_gateway_team(&self, team: &str) -> StoreResult<()>;
    /// Reserves every claim and takes every lease, or nothing. Windows of `requests` and `tokens` older than
    /// a claim's are dropped; leases past their time lapse.
    async fn reserve_usage(&self, claims: &[UsageClaim], leases: &[UsageLease], now: i64) -> StoreResult<Reservation>;
    /// Settles reservations (and ends the leases).
    async fn settle_usage(&self, settlements: &[UsageSettlement], lease_ids: &[String]) -> StoreResult<()>;
    /// The ledger's rows of `kind` with a window of at least `from_window`, by subject.
    async fn usage_rows(&self, kind: &str, from_window: i64) -> StoreResult<Vec<UsageRow>>;
    /// The gateway catalog document and its generation (`None`: never written).
    async fn gateway_catalog(&self) -> StoreResult<Option<(i64, String)>>;
    /// The catalog's generation alone (0: never written).
    async fn gateway_catalog_generation(&self) -> StoreResult<i64>;
    /// Replaces the catalog with `body` as generation `expected + 1` if its generation is still `expected`
    /// (0: never written); false when another writer came first (read it again and retry).
    async fn put_gateway_catalog(&self, expected: i64, body: &str) -> StoreResult<bool>;
}
