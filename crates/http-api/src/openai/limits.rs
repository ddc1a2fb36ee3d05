//! Gateway keys' limits on each call: the models a key may call, requests and tokens per minute, calls in
//! flight and a budget per period, for the key and for its team. Before the call, everything is reserved at
//! once in the shared store (the request, the estimated tokens, the most the call can cost); when it ends, the
//! reservation is replaced by what it used. Replicas sharing one database therefore hold one limit together,
//! and concurrent calls never pass a budget by more than what one call used beyond its estimate.

use super::errors::OpenAiError;
use axum::http::StatusCode;
use loopline_access::Principal;
use loopline_llm_gateway::observe::{CallObserver, CallRecord};
use loopline_llm_gateway::{Endpoint, Gateway};
use loopline_metadata_store::{
    GatewayKey, GatewayLimits, MetadataStore, Reservation, UsageClaim, UsageLease, UsageSettlement,
};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};

/// Output tokens reserved for a call that names no `max_tokens`.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;
/// The largest amount one call reserves (a billion dollars in micro-dollars): the ledger's sums stay far
/// from overflowing.
const MAX_AMOUNT: i64 = 1_000_000_000_000_000;
/// How long a call holds its place among a key's calls in flight if its server dies before it ends.
const LEASE_MILLIS: i64 = 15 * 60 * 1000;
const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;

/// Where a budget period starts and ends (milliseconds, UTC): `day`, `week` (from Monday), `month` or `total`.
pub fn period(name: &str, now: i64) -> (i64, i64) {
    let day = now.div_euclid(DAY);
    match name {
        "day" => (day * DAY, (day + 1) * DAY),
        "week" => {
            // 1970-01-01 was a Thursday.
            let monday = day - (day + 3).rem_euclid(7);
            (monday * DAY, (monday + 7) * DAY)
        }
        "month" => {
            let first = |day: i64| day - i64::from(loopline_core::time::civil_date(day).2) + 1;
            let start = first(day);
            (start * DAY, first(start + 32) * DAY)
        }
        _ => (0, i64::MAX),
    }
}

/// What admitting a call gave: headers for the answer, and the settlement to hand the gateway.
#[derive(Default)]
pub struct Admitted {
    /// `x-ratelimit-*` headers.
    pub headers: Vec<(&'static str, String)>,
    /// Settles the reservation when the call ends.
    pub settle: Option<Arc<dyn CallObserver>>,
}

/// One reserved amount, to settle.
#[derive(Debug, Clone)]
struct Held {
    subject: String,
    kind: &'static str,
    window: i64,
    amount: i64,
}

/// The reservation of one call, settled once when it ends (or, if it never reports, as reserved).
struct Settler {
    store: Arc<dyn MetadataStore>,
    pending: Mutex<Option<(Vec<Held>, Vec<String>)>>,
    prompt_estimate: i64,
    model: String,
    /// The model that embeds the request for the semantic cache: its share of the spend is tallied under it.
    embedding_model: Option<String>,
    /// Subjects whose spend is also tallied per day (for the spend report): the key's and its team's.
    tallied: Vec<String>,
    /// Whether the spend is tallied per model too (keyed calls; the spend report covers those).
    tally_models: bool,
    /// The budget policies counting the call, with their windows (ALERT ones may alert once it is settled).
    policies: Vec<(loopline_llm_gateway::catalog::BudgetPolicy, (i64, i64))>,
    /// Where alerts go.
    webhooks: Option<crate::webhooks::Webhooks>,
}

impl Settler {
    fn settlements(&self, held: &[Held], record: Option<&CallRecord>) -> Vec<UsageSettlement> {
        let served = record.is_some_and(|record| !record.cache_hit && record.deployment.is_some());
        // A stream the caller left without a usage chunk may have gone on at the provider: it costs what was
        // reserved, as a call that never reported does.
        let unknown = record.is_none_or(|record| record.tokens.is_none() && record.outcome == "cancelled");
        let (tokens, spend) = match record {
            Some(record) if served && !unknown => {
                // No usage reported: the prompt as estimated and the answer at four characters a token.
                let (prompt, completion) = record
                    .tokens
                    .unwrap_or((self.prompt_estimate as u64, record.answer_chars.div_ceil(4)));
                let cost = record
                    .price
                    .map(|price| price.cost(prompt, completion, record.cached_tokens))
                    .map_or(0.0, |cost| cost.total());
                (
                    clamp(prompt.saturating_add(completion)),
                    clamp((cost * 1_000_000.0).ceil().min(1e15) as u64),
                )
            }
            _ => (0, 0),
        };
        // The semantic cache's embedding of the request is the caller's too, hit or miss.
        let (embedding_tokens, embedding_spend) = record
            .and_then(|record| record.embedding)
            .map_or((0, 0), |(tokens, cost)| {
                (clamp(tokens), clamp((cost * 1_000_000.0).ceil().min(1e15) as u64))
            });
        let (tokens, spend) = (
            tokens.saturating_add(embedding_tokens),
            spend.saturating_add(embedding_spend),
        );
        let actual = |held: &Held| match (unknown && served || record.is_none(), held.kind) {
            (true, "requests") => 1,
            (true, _) => held.amount,
            (false, "requests") => 1,
            (false, "tokens") => tokens,
            (false, _) => spend,
        };
        let mut settlements: Vec<UsageSettlement> = held
            .iter()
            .map(|held| UsageSettlement {
                subject: held.subject.clone(),
                kind: held.kind.to_string(),
                window: held.window,
                reserved: held.amount,
                actual: actual(held),
            })
            .collect();
        let charged = held.iter().find(|held| held.kind == "spend").map_or(spend, actual);
        if charged > 0 {
            let day = period("day", loopline_core::time::now_millis()).0;
            // The key and team are charged the whole; each model its own share (the embedding's under the
            // embedding model, as the metrics count it).
            let embedding_share = embedding_spend.min(charged);
            let shares = [
                (format!("model:{}", self.model), charged - embedding_share),
                (
                    format!("model:{}", self.embedding_model.as_deref().unwrap_or_default()),
                    embedding_share,
                ),
            ];
            let whole = self.tallied.iter().map(|subject| (subject.clone(), charged));
            let shares = shares.into_iter().filter(|_| self.tally_models);
            for (subject, actual) in whole.chain(shares).filter(|(_, actual)| *actual > 0) {
                settlements.push(UsageSettlement {
                    subject,
                    kind: "daily".into(),
                    window: day,
                    reserved: 0,
                    actual,
                });
            }
        }
        settlements
    }

    fn settle(&self, record: Option<&CallRecord>) {
        let Some((held, leases)) = self.pending.lock().expect("settlement").take() else {
            return;
        };
        let settlements = self.settlements(&held, record);
        let store = self.store.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let alerting: Vec<_> = self
            .policies
            .iter()
            .filter(|(policy, _)| policy.budget_action == loopline_llm_gateway::catalog::Action::Alert)
            .cloned()
            .collect();
        let webhooks = self.webhooks.clone();
        runtime.spawn(async move {
            if let Err(error) = store.settle_usage(&settlements, &leases).await {
                tracing::warn!(%error, "settling a gateway call's usage failed; its reservation stays counted");
                return;
            }
            if !alerting.is_empty() {
                super::budget_policies::alert(store, webhooks, alerting).await;
            }
        });
    }
}

impl CallObserver for Settler {
    fn observe(&self, record: CallRecord) {
        self.settle(Some(&record));
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        self.settle(None);
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Tokens a request takes, estimated from its whole JSON (messages, tools, schemas) at four bytes a token.
fn prompt_estimate(body: &Map<String, Value>) -> i64 {
    let bytes = serde_json::to_vec(body).map_or(0, |text| text.len());
    clamp((bytes as u64).div_ceil(4) + 1)
}

/// The output tokens a request asks for at most, if it says.
fn asked_output(body: &Map<String, Value>) -> Option<u64> {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|field| body.get(*field).and_then(Value::as_u64))
}

/// How many answers a request may be billed for, each up to the output asked for: `n` (or `best_of`, which a
/// provider generates and bills in full) for each of a legacy completion's prompts (a list of texts or of
/// token lists is one prompt each).
fn answers_billed(endpoint: Endpoint, body: &Map<String, Value>) -> u64 {
    let per_prompt = ["n", "best_of"]
        .iter()
        .filter_map(|field| body.get(*field).and_then(Value::as_u64))
        .max()
        .unwrap_or(1)
        .clamp(1, 128);
    let prompts = match (endpoint, body.get("prompt")) {
        (Endpoint::Completions, Some(Value::Array(items)))
            if items.first().is_some_and(|item| item.is_string() || item.is_array()) =>
        {
            items.len() as u64
        }
        _ => 1,
    };
    per_prompt.saturating_mul(prompts.max(1))
}

/// The model whose embeddings the semantic cache of a model's chat or completion calls uses.
fn semantic_embedding(gateway: &Gateway, group: usize, endpoint: Endpoint) -> Option<usize> {
    if !matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions) {
        return None;
    }
    let config = gateway.config();
    let settings = config.models.get(group)?.semantic.as_ref()?;
    config
        .models
        .iter()
        .position(|model| model.name == settings.embedding_model)
}

/// The highest input and output prices among the deployments a model's call may reach (fallbacks included).
fn dearest(gateway: &Gateway, group: usize) -> (f64, f64) {
    let config = gateway.config();
    std::iter::once(group)
        .chain(config.models[group].fallbacks.iter().copied())
        .flat_map(|group| config.models[group].deployments.iter())
        .filter_map(|deployment| deployment.price)
        .fold((0.0, 0.0), |(input, output), price| {
            (
                f64::max(input, price.input.max(price.cached_input)),
                f64::max(output, price.output),
            )
        })
}

/// The claims of one subject's limits.
fn claims_of(subject: &str, limits: &GatewayLimits, now: i64, tokens: i64, cost: i64, out: &mut Vec<UsageClaim>) {
    let minute = now - now.rem_euclid(MINUTE);
    if let Some(rpm) = limits.rpm {
        out.push(claim(subject, "requests", minute, 1, Some(rpm)));
    }
    if let Some(tpm) = limits.tpm {
        out.push(claim(subject, "tokens", minute, tokens, Some(tpm)));
    }
    out.push(claim(
        subject,
        "spend",
        period(&limits.budget_period, now).0,
        cost,
        limits.budget_micros,
    ));
}

fn claim(subject: &str, kind: &str, window: i64, amount: i64, limit: Option<i64>) -> UsageClaim {
    UsageClaim {
        subject: subject.to_string(),
        kind: kind.to_string(),
        window,
        amount,
        limit,
    }
}

/// A 429; `retry_after` when waiting can help (a request larger than the limit itself says none).
fn too_many(message: String, code: &'static str, retry_after: Option<u64>) -> OpenAiError {
    OpenAiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        message,
        kind: if code == "insufficient_quota" {
            "insufficient_quota"
        } else {
            "rate_limit_error"
        },
        param: None,
        code: Some(code),
        retry_after: retry_after.map(|seconds| seconds.max(1)),
    }
}

/// Admits a call under its key's and team's limits (calls made without a gateway key have none) and the
/// MLflow budget policies that count it.
pub async fn admit(
    api: &super::GatewayApi,
    gateway: &Gateway,
    principal: Option<&Principal>,
    endpoint: Endpoint,
    body: &Map<String, Value>,
) -> Result<Admitted, OpenAiError> {
    let store = &api.store;
    let key: Option<GatewayKey> = match principal.and_then(|principal| principal.token_id.as_deref()) {
        Some(token_id) => store.get_gateway_key(token_id).await.map_err(unavailable)?,
        None => None,
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
    if let Some(key) = &key
        && !key.models.is_empty()
        && !key.models.iter().any(|allowed| allowed == model)
    {
        return Err(OpenAiError {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "This key may not call the model '{model}'; it may call: {}.",
                key.models.join(", ")
            ),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_allowed"),
            retry_after: None,
        });
    }
    let Some(group) = gateway.config().model(model) else {
        // The gateway answers 404 for it.
        return Ok(Admitted::default());
    };
    let now = loopline_core::time::now_millis();
    let user = principal.map(|principal| &*principal.username);
    let policies = super::budget_policies::applicable(gateway, group, user, now);
    if key.is_none() && policies.is_empty() {
        return Ok(Admitted::default());
    }
    let team = match key.as_ref().and_then(|key| key.team.as_ref()) {
        Some(team) => store.get_gateway_team(team).await.map_err(unavailable)?,
        None => None,
    };
    let prompt = prompt_estimate(body);
    let asked = asked_output(body);
    let choices = answers_billed(endpoint, body);
    let output = if endpoint == Endpoint::Embeddings {
        0
    } else {
        asked.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS).saturating_mul(choices)
    };
    // The semantic cache embeds the request's text too (at most the prompt), charged with the call: it is
    // reserved with it, so concurrent calls cannot pass a budget on embeddings.
    let embedding = semantic_embedding(gateway, group, endpoint);
    let embedding_tokens = if embedding.is_some() { prompt } else { 0 };
    let tokens = prompt
        .saturating_add(clamp(asked.unwrap_or(0).saturating_mul(choices)))
        .saturating_add(embedding_tokens)
        .min(MAX_AMOUNT);
    let (input_price, output_price) = dearest(gateway, group);
    let embedding_price = embedding.map_or(0.0, |embedding| dearest(gateway, embedding).0);
    // Prices are dollars per million tokens: tokens times price is micro-dollars.
    let cost =
        (prompt as f64 * input_price + output as f64 * output_price + embedding_tokens as f64 * embedding_price).ceil();
    let cost = if cost.is_finite() {
        cost.min(MAX_AMOUNT as f64) as i64
    } else {
        MAX_AMOUNT
    };
    let key_subject = key.as_ref().map(|key| format!("key:{}", key.token_id));
    // The team's spend is tallied under its name even when it has no limits of its own.
    let team_subject = key
        .as_ref()
        .and_then(|key| key.team.as_ref())
        .map(|team| format!("team:{team}"));
    let mut claims = Vec::new();
    if let (Some(key), Some(subject)) = (&key, &key_subject) {
        claims_of(subject, &key.limits, now, tokens, cost, &mut claims);
    }
    if let (Some(team), Some(subject)) = (&team, &team_subject) {
        claims_of(subject, &team.limits, now, tokens, cost, &mut claims);
    }
    let first_policy = claims.len();
    claims.extend(
        policies
            .iter()
            .map(|(policy, window)| super::budget_policies::claim(policy, *window, cost)),
    );
    let mut leases = Vec::new();
    for (subject, limit) in [
        (
            key_subject.as_ref(),
            key.as_ref().and_then(|key| key.limits.max_parallel),
        ),
        (
            team_subject.as_ref(),
            team.as_ref().and_then(|team| team.limits.max_parallel),
        ),
    ] {
        if let (Some(subject), Some(limit)) = (subject, limit) {
            leases.push(UsageLease {
                lease_id: super::random_hex::<16>(),
                subject: subject.clone(),
                limit,
                expires_time: now + LEASE_MILLIS,
            });
        }
    }
    let levels = match store.reserve_usage(&claims, &leases, now).await.map_err(unavailable)? {
        Reservation::Granted(levels) => levels,
        Reservation::Refused(index) => {
            return Err(match (policies.get(index.wrapping_sub(first_policy)), &key) {
                (Some((policy, window)), _) if index >= first_policy => {
                    super::budget_policies::refusal(policy, *window, cost, now)
                }
                (_, Some(key)) => refusal(&claims, &leases, index, now, key, team.as_ref()),
                (_, None) => unavailable(loopline_metadata_store::StoreError::Embedded(
                    "a reservation was refused for a limit the call does not have".into(),
                )),
            });
        }
    };
    let mut headers = Vec::new();
    let reset = ((MINUTE - now.rem_euclid(MINUTE)) as f64 / 1000.0).ceil();
    for (claim, level) in claims.iter().zip(&levels) {
        let (Some(limit), true) = (claim.limit, Some(&claim.subject) == key_subject.as_ref()) else {
            continue;
        };
        let name = match claim.kind.as_str() {
            "requests" => "requests",
            "tokens" => "tokens",
            _ => continue,
        };
        headers.push((limit_header(name), limit.to_string()));
        headers.push((remaining_header(name), (limit - level).max(0).to_string()));
        headers.push((reset_header(name), format!("{reset}s")));
    }
    let held = claims
        .iter()
        .map(|claim| Held {
            subject: claim.subject.clone(),
            kind: match claim.kind.as_str() {
                "requests" => "requests",
                "tokens" => "tokens",
                _ => "spend",
            },
            window: claim.window,
            amount: claim.amount,
        })
        .collect();
    let settler = Settler {
        store: store.clone(),
        pending: Mutex::new(Some((held, leases.into_iter().map(|lease| lease.lease_id).collect()))),
        prompt_estimate: prompt,
        model: model.to_string(),
        embedding_model: embedding.map(|embedding| gateway.config().models[embedding].name.clone()),
        tally_models: key.is_some(),
        tallied: key_subject.into_iter().chain(team_subject).collect(),
        policies,
        webhooks: api.webhooks.clone(),
    };
    Ok(Admitted {
        headers,
        settle: Some(Arc::new(settler)),
    })
}

fn limit_header(name: &str) -> &'static str {
    if name == "requests" {
        "x-ratelimit-limit-requests"
    } else {
        "x-ratelimit-limit-tokens"
    }
}
fn remaining_header(name: &str) -> &'static str {
    if name == "requests" {
        "x-ratelimit-remaining-requests"
    } else {
        "x-ratelimit-remaining-tokens"
    }
}
fn reset_header(name: &str) -> &'static str {
    if name == "requests" {
        "x-ratelimit-reset-requests"
    } else {
        "x-ratelimit-reset-tokens"
    }
}

/// The 429 for the claim that would pass its limit (a lease when `index` is past the claims).
fn refusal(
    claims: &[UsageClaim],
    leases: &[UsageLease],
    index: usize,
    now: i64,
    key: &GatewayKey,
    team: Option<&loopline_metadata_store::GatewayTeam>,
) -> OpenAiError {
    let whose = |subject: &str| match (subject.strip_prefix("team:"), team) {
        (Some(name), Some(_)) => format!("the team '{name}'"),
        _ => "this key".to_string(),
    };
    let Some(claim) = claims.get(index) else {
        let lease = &leases[(index - claims.len()).min(leases.len().saturating_sub(1))];
        return too_many(
            format!(
                "{} already has {} calls in flight, its limit; retry when one ends.",
                capitalized(&whose(&lease.subject)),
                lease.limit
            ),
            "rate_limit_exceeded",
            Some(1),
        );
    };
    let whose = whose(&claim.subject);
    let limit = claim.limit.unwrap_or(0);
    let to_next_minute = ((MINUTE - now.rem_euclid(MINUTE)) as u64).div_ceil(1000);
    match claim.kind.as_str() {
        "requests" => too_many(
            format!("Rate limit reached for {whose}: {limit} requests per minute."),
            "rate_limit_exceeded",
            Some(to_next_minute),
        ),
        "tokens" if claim.amount > limit => too_many(
            format!(
                "This request needs about {} tokens, more than {whose}'s limit of {limit} tokens per minute; \
                 send a smaller request or a lower max_tokens.",
                claim.amount
            ),
            "rate_limit_exceeded",
            None,
        ),
        "tokens" => too_many(
            format!(
                "Rate limit reached for {whose}: {limit} tokens per minute (this request needs about {}).",
                claim.amount
            ),
            "rate_limit_exceeded",
            Some(to_next_minute),
        ),
        _ => {
            let budget_period = budget_period_of(claim, key, team);
            let (_, end) = period(budget_period, now);
            let per = match budget_period {
                "day" => "a day",
                "week" => "a week",
                "month" => "a month",
                _ => "in all",
            };
            let wait = if end == i64::MAX {
                86_400
            } else {
                ((end - now).max(1000) / 1000) as u64
            };
            let message = if claim.amount > limit {
                format!(
                    "This request may cost up to ${:.6}, more than the budget of {whose} (${:.6} {}); \
                     send a smaller request or a lower max_tokens.",
                    claim.amount as f64 / 1e6,
                    limit as f64 / 1e6,
                    per
                )
            } else {
                format!(
                    "This request may cost up to ${:.6}, which would pass the budget of {whose} (${:.6} {}, \
                     counting what calls used and hold).",
                    claim.amount as f64 / 1e6,
                    limit as f64 / 1e6,
                    per
                )
            };
            too_many(message, "insufficient_quota", (claim.amount <= limit).then_some(wait))
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

fn budget_period_of<'a>(
    claim: &UsageClaim,
    key: &'a GatewayKey,
    team: Option<&'a loopline_metadata_store::GatewayTeam>,
) -> &'a str {
    match (claim.subject.starts_with("team:"), team) {
        (true, Some(team)) => &team.limits.budget_period,
        _ => &key.limits.budget_period,
    }
}

fn unavailable(error: loopline_metadata_store::StoreError) -> OpenAiError {
    tracing::warn!(%error, "reading gateway limits failed");
    OpenAiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "The gateway could not check this key's limits; retry shortly.".into(),
        kind: "api_error",
        param: None,
        code: Some("limits_unavailable"),
        retry_after: Some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_on_utc_boundaries() {
        // 2026-12-03T15:04:05Z, a Thursday.
        let now = 1_796_310_245_000;
        assert_eq!(period("day", now), (1_796_256_000_000, 1_796_342_400_000));
        assert_eq!(period("week", now).0, 1_795_996_800_000, "Monday 2026-11-30");
        assert_eq!(period("month", now), (1_796_083_200_000, 1_798_761_600_000));
        assert_eq!(period("total", now), (0, i64::MAX));
    }

    #[test]
    fn every_answer_a_request_may_be_billed_for_is_reserved() {
        let body = |value: Value| value.as_object().unwrap().clone();
        let chat = Endpoint::ChatCompletions;
        let completions = Endpoint::Completions;
        assert_eq!(answers_billed(chat, &body(serde_json::json!({}))), 1);
        assert_eq!(answers_billed(chat, &body(serde_json::json!({"n": 3}))), 3);
        assert_eq!(
            answers_billed(completions, &body(serde_json::json!({"n": 2, "best_of": 5}))),
            5
        );
        let list = serde_json::json!({"prompt": vec!["a"; 50], "best_of": 2});
        assert_eq!(
            answers_billed(completions, &body(list)),
            100,
            "two for each of fifty prompts"
        );
        let tokens = serde_json::json!({"prompt": [[1, 2], [3]]});
        assert_eq!(
            answers_billed(completions, &body(tokens)),
            2,
            "a list of token lists is two prompts"
        );
        let one = serde_json::json!({"prompt": [1, 2, 3]});
        assert_eq!(answers_billed(completions, &body(one)), 1, "a token list is one prompt");
        assert_eq!(
            answers_billed(completions, &body(serde_json::json!({"n": 1e9}))),
            1,
            "not a count"
        );
        assert_eq!(answers_billed(completions, &body(serde_json::json!({"n": 1000}))), 128);
    }
}
