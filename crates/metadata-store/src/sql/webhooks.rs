//! Registry webhooks on SQL: one row each, soft-deleted as MLflow does.

use super::rows::{integer, text};
use super::{SqlStore, into_page, page_limits};
use crate::entities::Page;
use crate::error::{StoreError, StoreResult};
use crate::queries::{PageRequest, Webhook, WebhookChange};
use crate::traits::WebhookStore;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str =
    "webhook_id, name, description, url, events, status, secret, creation_timestamp, last_updated_timestamp";
/// The most webhooks one server keeps (each event is delivered to every subscriber).
const MAX_WEBHOOKS: i64 = 1_000;

fn not_found(webhook_id: &str) -> StoreError {
    StoreError::NotFound(format!("Webhook with ID {webhook_id} not found."))
}

fn events_json(events: &[(String, String)]) -> String {
    serde_json::Value::Array(
        events
            .iter()
            .map(|(entity, action)| serde_json::json!({"entity": entity, "action": action}))
            .collect(),
    )
    .to_string()
}

fn from_row(row: &AnyRow) -> StoreResult<Webhook> {
    let events: serde_json::Value = serde_json::from_str(&text(row, "events")?).unwrap_or_default();
    Ok(Webhook {
        webhook_id: text(row, "webhook_id")?,
        name: text(row, "name")?,
        description: row.try_get::<Option<String>, _>("description")?,
        url: text(row, "url")?,
        events: events
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|event| {
                Some((
                    event.get("entity")?.as_str()?.to_string(),
                    event.get("action")?.as_str()?.to_string(),
                ))
            })
            .collect(),
        status: text(row, "status")?,
        secret: row.try_get::<Option<String>, _>("secret")?,
        creation_timestamp: integer(row, "creation_timestamp")?,
        last_updated_timestamp: integer(row, "last_updated_timestamp")?,
    })
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn create_webhook(&self, webhook: &Webhook) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let held = sqlx::query("SELECT COUNT(*) AS webhooks FROM webhooks WHERE deleted_timestamp IS NULL")
            .fetch_one(&mut *transaction)
            .await?;
        if integer(&held, "webhooks")? >= MAX_WEBHOOKS {
            return Err(StoreError::InvalidParameter(format!(
                "a server keeps at most {MAX_WEBHOOKS} webhooks: delete unused ones first"
            )));
        }
        sqlx::query(
            "INSERT INTO webhooks (webhook_id, name, description, url, events, status, secret, creation_timestamp, \
             last_updated_timestamp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(webhook.webhook_id.clone())
        .bind(webhook.name.clone())
        .bind(webhook.description.clone())
        .bind(webhook.url.clone())
        .bind(events_json(&webhook.events))
        .bind(webhook.status.clone())
        .bind(webhook.secret.clone())
        .bind(webhook.creation_timestamp)
        .bind(webhook.last_updated_timestamp)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn get_webhook(&self, webhook_id: &str) -> StoreResult<Webhook> {
        let row = super::query_text(format!(
            "SELECT {COLUMNS} FROM webhooks WHERE webhook_id = $1 AND deleted_timestamp IS NULL"
        ))
        .bind(webhook_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found(webhook_id))?;
        from_row(&row)
    }

    async fn list_webhooks(&self, page: &PageRequest) -> StoreResult<Page<Webhook>> {
        let (max_results, offset) = page_limits(page, 100, 1_000, "list_webhooks")?;
        let rows = super::query_text(format!(
            "SELECT {COLUMNS} FROM webhooks WHERE deleted_timestamp IS NULL \
             ORDER BY creation_timestamp DESC, webhook_id LIMIT {} OFFSET {offset}",
            max_results + 1
        ))
        .fetch_all(&self.pool)
        .await?;
        let webhooks = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(webhooks, max_results, offset))
    }

    async fn update_webhook(&self, webhook_id: &str, change: &WebhookChange) -> StoreResult<Webhook> {
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            let row = super::query_text(format!(
                "SELECT {COLUMNS} FROM webhooks WHERE webhook_id = $1 AND deleted_timestamp IS NULL"
            ))
            .bind(webhook_id.to_string())
            .fetch_optional(&mut *transaction)
            .await?
            .ok_or_else(|| not_found(webhook_id))?;
            let mut webhook = from_row(&row)?;
            if let Some(name) = &change.name {
                webhook.name = name.clone();
            }
            if let Some(description) = &change.description {
                webhook.description = description.clone();
            }
            if let Some(url) = &change.url {
                webhook.url = url.clone();
            }
            if let Some(events) = &change.events {
                webhook.events = events.clone();
            }
            if let Some(secret) = &change.secret {
                webhook.secret = secret.clone();
            }
            if let Some(status) = &change.status {
                webhook.status = status.clone();
            }
            sqlx::query(
                "UPDATE webhooks SET name = $1, description = $2, url = $3, events = $4, secret = $5, status = $6, \
                 last_updated_timestamp = $7 WHERE webhook_id = $8",
            )
            .bind(webhook.name)
            .bind(webhook.description)
            .bind(webhook.url)
            .bind(events_json(&webhook.events))
            .bind(webhook.secret)
            .bind(webhook.status)
            .bind(loopline_core::time::now_millis())
            .bind(webhook_id.to_string())
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
        }
        self.get_webhook(webhook_id).await
    }

    async fn delete_webhook(&self, webhook_id: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let deleted = sqlx::query(
            "UPDATE webhooks SET deleted_timestamp = $1 WHERE webhook_id = $2 AND deleted_timestamp IS NULL",
        )
        .bind(loopline_core::time::now_millis())
        .bind(webhook_id.to_string())
        .execute(&self.pool)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(not_found(webhook_id));
        }
        Ok(())
    }

    async fn webhooks_for_event(&self, entity: &str, action: &str) -> StoreResult<Vec<Webhook>> {
        // Few rows (bounded); the event list is matched here rather than in SQL's JSON dialects.
        let rows = super::query_text(format!(
            "SELECT {COLUMNS} FROM webhooks WHERE deleted_timestamp IS NULL AND status = 'ACTIVE' \
             ORDER BY creation_timestamp LIMIT {MAX_WEBHOOKS}"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(from_row)
            .collect::<StoreResult<Vec<_>>>()?
            .into_iter()
            .filter(|webhook| webhook.events.iter().any(|(e, a)| e == entity && a == action))
            .collect())
    }
}
