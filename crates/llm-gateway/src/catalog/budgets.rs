//! MLflow's gateway budget policies: a limit in US dollars per fixed window (minutes to months, aligned to
//! the epoch in UTC) on all calls, one endpoint's or one user's, that alerts (a webhook, once per window) or
//! rejects calls. Kept in the catalog with its other entities; enforced by the server on each call with the
//! same reserve-then-settle ledger as gateway keys' budgets, so the limit holds across replicas.

use super::{Catalog, CatalogError, MAX_ENTRIES, Result, check_text};
use loopline_core::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A window's length unit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum DurationUnit {
    #[serde(rename = "MINUTES")]
    Minutes,
    #[serde(rename = "HOURS")]
    Hours,
    #[serde(rename = "DAYS")]
    Days,
    #[serde(rename = "WEEKS")]
    Weeks,
    #[serde(rename = "MONTHS")]
    Months,
}

/// Which calls a policy counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Scope {
    #[serde(rename = "GLOBAL")]
    Global,
    /// One workspace's calls; this server has one workspace, so all of them.
    #[serde(rename = "WORKSPACE")]
    Workspace,
    /// One endpoint's calls (`target_value` is its id).
    #[serde(rename = "ENDPOINT")]
    Endpoint,
    /// One signed-in user's calls (`target_value` is the username).
    #[serde(rename = "USER")]
    User,
}

/// What happens once the limit is reached.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Action {
    /// A `budget_policy.exceeded` webhook, once per window.
    #[serde(rename = "ALERT")]
    Alert,
    /// Calls that would pass the limit are refused (429).
    #[serde(rename = "REJECT")]
    Reject,
}

/// Reads an enum field as MLflow's clients send it: its name, or its number (0 is unspecified).
fn enum_of<T: Copy>(value: &Value, names: &[(&str, T)]) -> Option<T> {
    match value {
        Value::String(text) => names.iter().find(|(name, _)| name == text).map(|(_, item)| *item),
        Value::Number(number) => {
            let index = usize::try_from(number.as_u64()?).ok()?;
            names.get(index.checked_sub(1)?).map(|(_, item)| *item)
        }
        _ => None,
    }
}

/// Something that has an MLflow enum name.
pub trait Named: Copy + Sized + 'static {
    /// Names in the proto's order (1 first).
    const NAMES: &'static [(&'static str, Self)];
    /// Its name.
    fn name(self) -> &'static str;
    /// From its name or number.
    fn parse(value: &Value) -> Option<Self> {
        enum_of(value, Self::NAMES)
    }
}

macro_rules! named {
    ($kind:ty, $($name:literal => $item:expr),+) => {
        impl Named for $kind {
            const NAMES: &'static [(&'static str, Self)] = &[$(($name, $item)),+];
            fn name(self) -> &'static str {
                Self::NAMES.iter().find(|(_, item)| *item == self).map_or("", |(name, _)| name)
            }
        }
    };
}

named!(DurationUnit, "MINUTES" => DurationUnit::Minutes, "HOURS" => DurationUnit::Hours,
    "DAYS" => DurationUnit::Days, "WEEKS" => DurationUnit::Weeks, "MONTHS" => DurationUnit::Months);
named!(Scope, "GLOBAL" => Scope::Global, "WORKSPACE" => Scope::Workspace, "ENDPOINT" => Scope::Endpoint,
    "USER" => Scope::User);
named!(Action, "ALERT" => Action::Alert, "REJECT" => Action::Reject);

/// A budget policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BudgetPolicy {
    pub budget_policy_id: String,
    pub budget_amount: f64,
    pub duration_unit: DurationUnit,
    pub duration_value: u32,
    pub target_scope: Scope,
    #[serde(default)]
    pub target_value: Option<String>,
    pub budget_action: Action,
    pub created_at: i64,
    pub last_updated_at: i64,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub last_updated_by: Option<String>,
}

/// What a create or update asks for (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct BudgetChange {
    pub budget_amount: Option<f64>,
    pub duration: Option<(DurationUnit, u32)>,
    pub target_scope: Option<Scope>,
    pub target_value: Option<String>,
    pub budget_action: Option<Action>,
}

const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// The longest window: a hundred years of months (anything longer is "total").
const MAX_DURATION_VALUE: u32 = 1_200;

/// The window holding `now` (milliseconds since the epoch, UTC) for a duration: fixed windows counted from
/// 1970-01-01 (weeks from Sunday 1969-12-28, months in blocks of `value` from January 1970), `[start, end)`.
pub fn window(unit: DurationUnit, value: u32, now: i64) -> (i64, i64) {
    let value = i64::from(value.max(1));
    let fixed = |length: i64, origin: i64| {
        let start = origin + (now - origin).div_euclid(length) * length;
        (start, start + length)
    };
    match unit {
        DurationUnit::Minutes => fixed(value * MINUTE, 0),
        DurationUnit::Hours => fixed(value * 60 * MINUTE, 0),
        DurationUnit::Days => fixed(value * DAY, 0),
        DurationUnit::Weeks => fixed(value * 7 * DAY, -4 * DAY),
        DurationUnit::Months => {
            let (year, month, _) = loopline_core::time::civil_date(now.div_euclid(DAY));
            let months = (year - 1970) * 12 + i64::from(month) - 1;
            let first = months.div_euclid(value) * value;
            (month_start(first), month_start(first + value))
        }
    }
}

/// Milliseconds at the first of the month `months` after January 1970.
fn month_start(months: i64) -> i64 {
    let year = 1970 + months.div_euclid(12);
    let month = months.rem_euclid(12) + 1;
    loopline_core::time::parse_utc_millis(&format!("{year:04}-{month:02}-01")).unwrap_or(i64::MAX)
}

impl BudgetPolicy {
    /// Whether a call of the endpoint `endpoint_id` (a catalog endpoint's; none for the configuration file's
    /// models) by `user` (the signed-in caller) counts against this policy.
    pub fn applies(&self, endpoint_id: Option<&str>, user: Option<&str>) -> bool {
        match self.target_scope {
            Scope::Global | Scope::Workspace => true,
            Scope::Endpoint => endpoint_id.is_some() && endpoint_id == self.target_value.as_deref(),
            Scope::User => user.is_some() && user == self.target_value.as_deref(),
        }
    }

    /// The limit in micro-dollars (what the ledger counts).
    pub fn limit_micros(&self) -> i64 {
        let micros = (self.budget_amount * 1_000_000.0).floor();
        if micros.is_finite() {
            micros.clamp(0.0, 1e18) as i64
        } else {
            0
        }
    }

    /// The window holding `now`.
    pub fn window(&self, now: i64) -> (i64, i64) {
        window(self.duration_unit, self.duration_value, now)
    }

    /// Why a call is refused, in MLflow's words.
    pub fn refusal(&self, window_end: i64) -> String {
        let unit = self.duration_unit.name().to_ascii_lowercase();
        let unit = if self.duration_value == 1 {
            unit.trim_end_matches('s').to_string()
        } else {
            unit
        };
        format!(
            "Budget limit exceeded. Limit: ${:.2} USD per {} {unit}. Budget resets at {}. Request rejected.",
            self.budget_amount,
            self.duration_value,
            seconds_text(window_end)
        )
    }
}

/// A time as `2026-01-01T00:00:00Z`.
fn seconds_text(millis: i64) -> String {
    let text = loopline_core::time::rfc3339_millis(millis);
    format!("{}Z", text.get(..19).unwrap_or(&text))
}

fn invalid(message: String) -> CatalogError {
    CatalogError::invalid(message)
}

/// Checks where a policy's scope points: ENDPOINT and USER need a target (an endpoint must exist), the others
/// take none.
fn check_target(catalog: &Catalog, scope: Scope, target: Option<&str>) -> Result<()> {
    match (scope, target) {
        (Scope::Endpoint | Scope::User, None) => Err(invalid(format!(
            "target_value is required when target_scope is {}.",
            scope.name()
        ))),
        (Scope::Global | Scope::Workspace, Some(_)) => Err(invalid(
            "target_value can only be set when target_scope is ENDPOINT or USER.".into(),
        )),
        (Scope::Endpoint, Some(id)) => {
            check_text(id, "target_value", 255)?;
            catalog.endpoint(id).map(|_| ()).map_err(|_| CatalogError {
                code: ErrorCode::ResourceDoesNotExist,
                message: format!("GatewayEndpoint not found (endpoint_id='{id}')"),
            })
        }
        (Scope::User, Some(user)) => check_text(user, "target_value", 255),
        _ => Ok(()),
    }
}

fn check_amount(amount: f64) -> Result<()> {
    if !amount.is_finite() || !(0.0..=1e12).contains(&amount) {
        return Err(invalid(format!(
            "budget_amount must be a number from 0 to 1e12 US dollars, got {amount}"
        )));
    }
    Ok(())
}

fn check_duration(value: u32) -> Result<()> {
    if value == 0 || value > MAX_DURATION_VALUE {
        return Err(invalid(format!(
            "duration.value must be a positive integer up to {MAX_DURATION_VALUE}, got {value}"
        )));
    }
    Ok(())
}

impl Catalog {
    /// The policy with this id.
    pub fn budget_policy(&self, id: &str) -> Result<&BudgetPolicy> {
        self.budget_policies
            .iter()
            .find(|policy| policy.budget_policy_id == id)
            .ok_or_else(|| CatalogError::missing("BudgetPolicy", "budget_policy_id", id))
    }

    /// Adds a policy; every field but the target is required.
    pub fn create_budget_policy(
        &mut self,
        id: String,
        change: BudgetChange,
        created_by: Option<String>,
        now: i64,
    ) -> Result<&BudgetPolicy> {
        let required = |field: &str| {
            invalid(format!(
                "Missing value for required parameter '{field}'. See the API docs for more information about request parameters."
            ))
        };
        let amount = change.budget_amount.ok_or_else(|| required("budget_amount"))?;
        let (unit, value) = change.duration.ok_or_else(|| required("duration"))?;
        let scope = change.target_scope.ok_or_else(|| required("target_scope"))?;
        let action = change.budget_action.ok_or_else(|| required("budget_action"))?;
        check_amount(amount)?;
        check_duration(value)?;
        check_target(self, scope, change.target_value.as_deref())?;
        if self.budget_policies.len() >= MAX_ENTRIES {
            return Err(invalid(format!("at most {MAX_ENTRIES} budget policies are kept")));
        }
        self.budget_policies.push(BudgetPolicy {
            budget_policy_id: id,
            budget_amount: amount,
            duration_unit: unit,
            duration_value: value,
            target_scope: scope,
            target_value: change.target_value,
            budget_action: action,
            created_at: now,
            last_updated_at: now,
            last_updated_by: created_by.clone(),
            created_by,
        });
        Ok(self.budget_policies.last().expect("just added"))
    }

    /// Changes the fields given; a new scope drops the old target unless a new one is given.
    pub fn update_budget_policy(
        &mut self,
        id: &str,
        change: BudgetChange,
        updated_by: Option<String>,
        now: i64,
    ) -> Result<&BudgetPolicy> {
        let old = self.budget_policy(id)?.clone();
        if let Some(amount) = change.budget_amount {
            check_amount(amount)?;
        }
        if let Some((_, value)) = change.duration {
            check_duration(value)?;
        }
        let scope = change.target_scope.unwrap_or(old.target_scope);
        let inherited = old.target_value.filter(|_| scope == old.target_scope);
        let target = change.target_value.or(inherited);
        check_target(self, scope, target.as_deref())?;
        let policy = self
            .budget_policies
            .iter_mut()
            .find(|policy| policy.budget_policy_id == id)
            .expect("found above");
        if let Some(amount) = change.budget_amount {
            policy.budget_amount = amount;
        }
        if let Some((unit, value)) = change.duration {
            policy.duration_unit = unit;
            policy.duration_value = value;
        }
        if let Some(action) = change.budget_action {
            policy.budget_action = action;
        }
        policy.target_scope = scope;
        policy.target_value = target;
        policy.last_updated_at = now.max(policy.last_updated_at);
        if updated_by.is_some() {
            policy.last_updated_by = updated_by;
        }
        Ok(policy)
    }

    /// Removes a policy.
    pub fn delete_budget_policy(&mut self, id: &str) -> Result<()> {
        self.budget_policy(id)?;
        self.budget_policies.retain(|policy| policy.budget_policy_id != id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_2026: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z, a Thursday

    #[test]
    fn windows_are_fixed_and_aligned_to_the_epoch() {
        let now = JAN_2026 + 3 * DAY + 5 * 60 * MINUTE + 7 * MINUTE; // Sunday 2026-01-04 05:07
        assert_eq!(window(DurationUnit::Minutes, 1, now), (now, now + MINUTE));
        assert_eq!(
            window(DurationUnit::Minutes, 15, now),
            (now - 7 * MINUTE, now + 8 * MINUTE)
        );
        let day = JAN_2026 + 3 * DAY;
        assert_eq!(window(DurationUnit::Hours, 24, now), (day, day + DAY));
        assert_eq!(window(DurationUnit::Days, 1, now), (day, day + DAY));
        // Weeks start on Sunday.
        assert_eq!(window(DurationUnit::Weeks, 1, now), (day, day + 7 * DAY));
        assert_eq!(window(DurationUnit::Weeks, 1, now - MINUTE * 400).0, day - 7 * DAY);
        // Months: the first of the month, in blocks of `value` from January 1970.
        assert_eq!(window(DurationUnit::Months, 1, now), (JAN_2026, JAN_2026 + 31 * DAY));
        let (start, end) = window(DurationUnit::Months, 3, JAN_2026 + 40 * DAY);
        assert_eq!((start, end), (JAN_2026, JAN_2026 + 90 * DAY));
        let (start, _) = window(DurationUnit::Months, 1, JAN_2026 - 1);
        assert_eq!(start, JAN_2026 - 31 * DAY, "December 2025");
    }

    #[test]
    fn enums_read_by_name_or_number() {
        assert_eq!(Scope::parse(&Value::from("ENDPOINT")), Some(Scope::Endpoint));
        assert_eq!(Scope::parse(&Value::from(4)), Some(Scope::User));
        assert_eq!(Scope::parse(&Value::from(0)), None);
        assert_eq!(Action::parse(&Value::from("SOMETIMES")), None);
        assert_eq!(DurationUnit::Months.name(), "MONTHS");
    }

    fn change(scope: Scope, target: Option<&str>) -> BudgetChange {
        BudgetChange {
            budget_amount: Some(10.0),
            duration: Some((DurationUnit::Days, 1)),
            target_scope: Some(scope),
            target_value: target.map(str::to_string),
            budget_action: Some(Action::Reject),
        }
    }

    #[test]
    fn policies_are_checked_as_mlflow_checks_them() {
        let mut catalog = Catalog::default();
        let made = catalog
            .create_budget_policy("bp-1".into(), change(Scope::Global, None), Some("ann".into()), 5)
            .unwrap();
        assert_eq!(made.last_updated_by.as_deref(), Some("ann"));
        let refused =
            |catalog: &mut Catalog, change| catalog.create_budget_policy("bp-2".into(), change, None, 5).map(|_| ());
        let error = refused(&mut catalog, change(Scope::Endpoint, None)).unwrap_err();
        assert_eq!(error.message, "target_value is required when target_scope is ENDPOINT.");
        let error = refused(&mut catalog, change(Scope::Global, Some("x"))).unwrap_err();
        assert!(error.message.contains("only be set"), "{}", error.message);
        let error = refused(&mut catalog, change(Scope::Endpoint, Some("e-missing"))).unwrap_err();
        assert_eq!(error.code, ErrorCode::ResourceDoesNotExist);
        let mut zero = change(Scope::Global, None);
        zero.duration = Some((DurationUnit::Days, 0));
        assert!(
            refused(&mut catalog, zero)
                .unwrap_err()
                .message
                .contains("duration.value")
        );
        let mut nan = change(Scope::Global, None);
        nan.budget_amount = Some(f64::NAN);
        assert!(refused(&mut catalog, nan).is_err());
        // An update to USER needs a target; with one, the scope changes and the rest stays.
        let to_user = BudgetChange {
            target_scope: Some(Scope::User),
            ..BudgetChange::default()
        };
        assert!(catalog.update_budget_policy("bp-1", to_user.clone(), None, 9).is_err());
        let updated = catalog
            .update_budget_policy(
                "bp-1",
                BudgetChange {
                    target_value: Some("bob".into()),
                    ..to_user
                },
                Some("eve".into()),
                9,
            )
            .unwrap();
        assert_eq!(updated.target_value.as_deref(), Some("bob"));
        assert_eq!(updated.budget_amount, 10.0);
        assert_eq!(updated.last_updated_by.as_deref(), Some("eve"));
        assert!(updated.applies(None, Some("bob")) && !updated.applies(None, Some("ann")));
        assert!(!updated.applies(None, None));
        catalog.delete_budget_policy("bp-1").unwrap();
        let error = catalog.delete_budget_policy("bp-1").unwrap_err();
        assert!(error.message.starts_with("BudgetPolicy not found"), "{}", error.message);
    }

    #[test]
    fn a_refusal_says_the_limit_and_when_it_resets() {
        let mut catalog = Catalog::default();
        let policy = catalog
            .create_budget_policy("bp-1".into(), change(Scope::Global, None), None, 0)
            .unwrap();
        assert_eq!(
            policy.refusal(JAN_2026),
            "Budget limit exceeded. Limit: $10.00 USD per 1 day. Budget resets at 2026-01-01T00:00:00Z. Request rejected."
        );
        assert_eq!(policy.limit_micros(), 10_000_000);
    }
}
