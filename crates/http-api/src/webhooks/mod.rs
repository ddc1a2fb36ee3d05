//! Registry webhooks as MLflow 3 delivers them: after a registry change succeeds, each active webhook
//! subscribed to the event gets `POST {entity, action, timestamp, data}` with `X-MLflow-Delivery-Id`,
//! `X-MLflow-Timestamp` and, when it has a secret, `X-MLflow-Signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`. Deliveries run in the background, are retried on 429 and 5xx (and network
//! errors) with exponential backoff honouring `Retry-After`, and never follow redirects or proxies.

pub mod address;
pub mod seal;

use address::{Destination, DestinationPolicy};
use base64::Engine;
use loopline_metadata_store::{MetadataStore, Webhook};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Entities and the actions each can have (MLflow's `VALID_ENTITY_ACTIONS`).
pub const ENTITY_ACTIONS: &[(&str, &[&str])] = &[
    ("registered_model", &["created"]),
    ("model_version", &["created"]),
    ("model_version_tag", &["set", "deleted"]),
    ("model_version_alias", &["created", "deleted"]),
    ("prompt", &["created"]),
    ("prompt_version", &["created"]),
    ("prompt_tag", &["set", "deleted"]),
    ("prompt_version_tag", &["set", "deleted"]),
    ("prompt_alias", &["created", "deleted"]),
    ("budget_policy", &["exceeded"]),
];

/// The longest response body kept from a test delivery.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff (doubled each retry, capped at a minute).
    pub backoff: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            max_retries: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
        }
    }
}

/// What one delivery came to (the test endpoint answers it).
#[derive(Debug, Clone, Default)]
pub struct DeliveryOutcome {
    pub success: bool,
    pub response_status: Option<u16>,
    pub response_body: Option<String>,
    pub error_message: Option<String>,
}

/// Webhook checks, secrets and deliveries.
#[derive(Clone)]
pub struct Webhooks {
    pub policy: DestinationPolicy,
    pub settings: DeliverySettings,
    sealer: Arc<seal::Sealer>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Webhooks")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Webhooks {
    /// Webhooks with a destination policy, delivery settings and the secrets key.
    pub fn new(policy: DestinationPolicy, settings: DeliverySettings, key: &[u8; 32]) -> Self {
        Webhooks {
            policy,
            settings,
            sealer: Arc::new(seal::Sealer::new(key)),
        }
    }

    /// The sealer of stored secrets (the AI gateway's provider keys use it too).
    pub fn sealer(&self) -> Arc<seal::Sealer> {
        self.sealer.clone()
    }

    /// Seals a secret for storage.
    pub fn seal(&self, secret: &str) -> String {
        self.sealer.seal(secret)
    }

    /// Tells subscribers of an event, in the background.
    pub fn emit(&self, store: Arc<dyn MetadataStore>, entity: &'static str, action: &'static str, data: Value) {
        let webhooks = self.clone();
        tokio::spawn(async move {
            let subscribers = match store.webhooks_for_event(entity, action).await {
                Ok(subscribers) => subscribers,
                Err(error) => {
                    tracing::warn!(%error, entity, action, "webhooks for a registry event could not be read");
                    return;
                }
            };
            // Each subscriber on its own: one slow receiver does not hold up the others.
            for webhook in subscribers {
                let webhooks = webhooks.clone();
                let data = data.clone();
                tokio::spawn(async move {
                    let outcome = webhooks.deliver(&webhook, entity, action, &data).await;
                    if !outcome.success {
                        tracing::warn!(
                            webhook = %webhook.webhook_id,
                            name = %webhook.name,
                            entity,
                            action,
                            status = ?outcome.response_status,
                            error = outcome.error_message.as_deref().unwrap_or(""),
                            "webhook delivery failed"
                        );
                    }
                });
            }
        });
    }

    /// Delivers one event to one webhook, retrying as MLflow does.
    pub async fn deliver(&self, webhook: &Webhook, entity: &str, action: &str, data: &Value) -> DeliveryOutcome {
        let destination = match self.policy.check(&webhook.url).await {
            Ok(destination) => destination,
            Err(reason) => return failed(reason),
        };
        let secret = match &webhook.secret {
            None => None,
            Some(sealed) => match self.sealer.open(sealed) {
                Some(secret) => Some(secret),
                None => {
                    return failed(
                        "the webhook's secret was sealed under another key: give every replica the same \
                         LOOPLINE_SECRETS_KEY, or set the secret again"
                            .into(),
                    );
                }
            },
        };
        let body = json!({
            "entity": entity,
            "action": action,
            "timestamp": iso_now(),
            "data": data,
        })
        .to_string();
        let delivery_id = uuid_v4();
        let timestamp = (loopline_core::time::now_millis() / 1000).to_string();
        let signature = secret.map(|secret| signature(&secret, &delivery_id, &timestamp, &body));
        let client = match client_for(&destination, self.settings.timeout) {
            Ok(client) => client,
            Err(reason) => return failed(reason),
        };
        let mut attempt = 0;
        loop {
            let mut request = client
                .post(destination.url.clone())
                .header("Content-Type", "application/json")
                .header("X-MLflow-Delivery-Id", &delivery_id)
                .header("X-MLflow-Timestamp", &timestamp)
                .body(body.clone());
            if let Some(signature) = &signature {
                request = request.header("X-MLflow-Signature", signature);
            }
            let (outcome, retry_after) = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = read_bounded(response).await;
                    (
                        DeliveryOutcome {
                            success: status < 400,
                            response_status: Some(status),
                            response_body: Some(text),
                            error_message: None,
                        },
                        retry_after,
                    )
                }
                Err(error) => (failed(format!("Failed to deliver webhook: {error}")), None),
            };
            let retryable = match outcome.response_status {
                Some(status) => matches!(status, 429 | 500 | 502 | 503 | 504),
                None => true,
            };
            if outcome.success || !retryable || attempt >= self.settings.max_retries {
                return outcome;
            }
            let backoff = self
                .settings
                .backoff
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(60));
            tokio::time::sleep(retry_after.map_or(backoff, |after| after.min(Duration::from_secs(60)))).await;
            attempt += 1;
        }
    }
}

fn failed(reason: String) -> DeliveryOutcome {
    DeliveryOutcome {
        success: false,
        error_message: Some(reason),
        ..Default::default()
    }
}

/// A client that connects to the checked address only: no proxy, no redirects.
fn client_for(destination: &Destination, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .resolve(&destination.host, destination.address)
        .build()
        .map_err(|error| format!("Failed to prepare the webhook request: {error}"))
}

async fn read_bounded(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the secret (MLflow's scheme).
pub fn signature(secret: &str, delivery_id: &str, timestamp: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{delivery_id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
}

fn iso_now() -> String {
    let text = loopline_core::time::rfc3339_millis(loopline_core::time::now_millis());
    format!("{}+00:00", text.trim_end_matches('Z'))
}

fn uuid_v4() -> String {
    let simple = loopline_core::ids::new_run_id();
    format!(
        "{}-{}-{}-{}-{}",
        &simple[0..8],
        &simple[8..12],
        &simple[12..16],
        &simple[16..20],
        &simple[20..32]
    )
}

/// The example payload MLflow's test endpoint sends for an event.
pub fn example_payload(entity: &str, action: &str) -> Value {
    match (entity, action) {
        ("registered_model", _) => {
            json!({"name": "example_model", "tags": {"example_key": "example_value"}, "description": "An example registered model"})
        }
        ("model_version", _) => json!({"name": "example_model", "version": "1", "source": "models:/123",
            "run_id": "abcd1234abcd5678", "tags": {"example_key": "example_value"}, "description": "An example model version"}),
        ("model_version_tag", "set") => {
            json!({"name": "example_model", "version": "1", "key": "example_key", "value": "example_value"})
        }
        ("model_version_tag", _) => json!({"name": "example_model", "version": "1", "key": "example_key"}),
        ("model_version_alias", "created") => {
            json!({"name": "example_model", "alias": "example_alias", "version": "1"})
        }
        ("model_version_alias", _) => json!({"name": "example_model", "alias": "example_alias"}),
        ("prompt", _) => {
            json!({"name": "example_prompt", "tags": {"example_key": "example_value"}, "description": "An example prompt"})
        }
        ("prompt_version", _) => json!({"name": "example_prompt", "version": "1", "template": "Hello {{name}}!",
            "tags": {"example_key": "example_value"}, "description": "An example prompt version"}),
        ("prompt_tag", "set") => json!({"name": "example_prompt", "key": "example_key", "value": "example_value"}),
        ("prompt_tag", _) => json!({"name": "example_prompt", "key": "example_key"}),
        ("prompt_version_tag", "set") => {
            json!({"name": "example_prompt", "version": "1", "key": "example_key", "value": "example_value"})
        }
        ("prompt_version_tag", _) => json!({"name": "example_prompt", "version": "1", "key": "example_key"}),
        ("prompt_alias", "created") => json!({"name": "example_prompt", "alias": "example_alias", "version": "1"}),
        ("prompt_alias", _) => json!({"name": "example_prompt", "alias": "example_alias"}),
        _ => json!({"budget_policy_id": "bp-example", "budget_unit": "USD", "budget_amount": 100.0,
            "current_spend": 120.0, "duration_unit": "DAYS", "duration_value": 30, "target_scope": "GLOBAL",
            "workspace": "default", "target_value": null, "window_start": 0}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_mlflows_scheme() {
        // HMAC-SHA256("secret", "id.1700000000.{}") computed independently with Python's hmac module.
        assert_eq!(
            signature("secret", "id", "1700000000", "{}"),
            "v1,GBemBzTgbKoVEGKycqyY3615LbdJbhFLE1oQk+zZ+lo="
        );
        assert_eq!(uuid_v4().len(), 36);
    }
}
