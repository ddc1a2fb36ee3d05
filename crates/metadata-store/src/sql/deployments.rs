//! Deployments with optimistic revisions, their audit trail, and the registry's alias history.

use super::rows::{integer, optional_integer, text};
use super::{SqlStore, is_unique_violation};
use crate::entities::{AliasChange, DeploymentEvent, DeploymentRecord};
use crate::error::{StoreError, StoreResult};
use crate::traits::DeploymentStore;
use async_trait::async_trait;
use loopline_core::time::now_millis;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

fn deployment(row: &AnyRow) -> StoreResult<DeploymentRecord> {
    Ok(DeploymentRecord {
        name: text(row, "name")?,
        spec: text(row, "spec")?,
        state: text(row, "state")?,
        revision: integer(row, "revision")?,
        creation_time: integer(row, "creation_time")?,
        last_update_time: integer(row, "last_update_time")?,
    })
}

fn event(row: &AnyRow) -> StoreResult<DeploymentEvent> {
    Ok(DeploymentEvent {
        event_id: integer(row, "event_id")?,
        deployment: text(row, "deployment")?,
        timestamp_ms: integer(row, "timestamp_ms")?,
        kind: text(row, "kind")?,
        actor: text(row, "actor")?,
        message: text(row, "message")?,
        details: text(row, "details")?,
    })
}

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("Deployment '{name}' does not exist."))
}

async fn insert_events(transaction: &mut Transaction<'_, Any>, events: &[DeploymentEvent]) -> StoreResult<()> {
    for event in events {
        sqlx::query(
            "INSERT INTO deployment_events (deployment, timestamp_ms, kind, actor, message, details) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(event.deployment.clone())
        .bind(event.timestamp_ms)
        .bind(event.kind.clone())
        .bind(event.actor.clone())
        .bind(event.message.clone())
        .bind(event.details.clone())
        .execute(&mut **transaction)
        .await?;
    }
    Ok(())
}

/// Records that `alias` of `name` now points at `version` (`None`: removed), inside the caller's transaction.
pub(super) async fn record_alias_change(
    transaction: &mut Transaction<'_, Any>,
    name: &str,
    alias: &str,
    version: Option<i64>,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO registered_model_alias_history (name, alias, version, set_time) VALUES ($1, $2, $3, $4)")
        .bind(name.to_string())
        .bind(alias.to_string())
        .bind(version)
        .bind(now_millis())
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

#[async_trait]
impl DeploymentStore for SqlStore {
    async fn create_deployment(
        &self,
        name: &str,
        spec: &str,
        state: &str,
        event: &DeploymentEvent,
    ) -> StoreResult<DeploymentRecord> {
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            let now = now_millis();
            sqlx::query(
                "INSERT INTO deployments (name, spec, state, revision, creation_time, last_update_time) \
                 VALUES ($1, $2, $3, 1, $4, $5)",
            )
            .bind(name.to_string())
            .bind(spec.to_string())
            .bind(state.to_string())
            .bind(now)
            .bind(now)
            .execute(&mut *transaction)
            .await
            .map_err(|error| {
                if is_unique_violation(&error) {
                    StoreError::AlreadyExists(format!("Deployment '{name}' already exists."))
                } else {
                    StoreError::Database(error)
                }
            })?;
            insert_events(&mut transaction, std::slice::from_ref(event)).await?;
            transaction.commit().await?;
        }
        self.get_deployment(name).await
    }

    async fn get_deployment(&self, name: &str) -> StoreResult<DeploymentRecord> {
        let row = sqlx::query(
            "SELECT name, spec, state, revision, creation_time, last_update_time FROM deployments WHERE name = $1",
        )
        .bind(name.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found(name))?;
        deployment(&row)
    }

    async fn list_deployments(&self) -> StoreResult<Vec<DeploymentRecord>> {
        let rows = sqlx::query(
            "SELECT name, spec, state, revision, creation_time, last_update_time FROM deployments ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment).collect()
    }

    async fn update_deployment(
        &self,
        name: &str,
        expected_revision: i64,
        spec: &str,
        state: &str,
        events: &[DeploymentEvent],
    ) -> StoreResult<DeploymentRecord> {
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE deployments SET spec = $1, state = $2, revision = revision + 1, last_update_time = $3 \
                 WHERE name = $4 AND revision = $5",
            )
            .bind(spec.to_string())
            .bind(state.to_string())
            .bind(now_millis())
            .bind(name.to_string())
            .bind(expected_revision)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
            if updated == 0 {
                let current = sqlx::query("SELECT revision FROM deployments WHERE name = $1")
                    .bind(name.to_string())
                    .fetch_optional(&mut *transaction)
                    .await?;
                return Err(match current {
                    None => not_found(name),
                    Some(row) => StoreError::Conflict(format!(
                        "deployment '{name}' changed meanwhile (revision {} now, the change was based on {expected_revision}); read it again and retry",
                        integer(&row, "revision")?
                    )),
                });
            }
            insert_events(&mut transaction, events).await?;
            transaction.commit().await?;
        }
        self.get_deployment(name).await
    }

    async fn delete_deployment(&self, name: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM deployments WHERE name = $1")
            .bind(name.to_string())
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found(name));
        }
        sqlx::query("DELETE FROM deployment_events WHERE deployment = $1")
            .bind(name.to_string())
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn append_deployment_event(&self, event: &DeploymentEvent) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        insert_events(&mut transaction, std::slice::from_ref(event)).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn deployment_events(&self, name: &str, after: i64, limit: usize) -> StoreResult<Vec<DeploymentEvent>> {
        let rows = sqlx::query(
            "SELECT event_id, deployment, timestamp_ms, kind, actor, message, details FROM deployment_events \
             WHERE deployment = $1 AND event_id > $2 ORDER BY event_id LIMIT $3",
        )
        .bind(name.to_string())
        .bind(after)
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event).collect()
    }

    async fn alias_history(&self, name: &str, alias: Option<&str>) -> StoreResult<Vec<AliasChange>> {
        let rows = sqlx::query(
            "SELECT name, alias, version, set_time FROM registered_model_alias_history \
             WHERE name = $1 AND ($2 = '' OR alias = $3) ORDER BY change_id",
        )
        .bind(name.to_string())
        .bind(alias.unwrap_or_default().to_string())
        .bind(alias.unwrap_or_default().to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AliasChange {
                    name: text(row, "name")?,
                    alias: text(row, "alias")?,
                    version: optional_integer(row, "version")?,
                    set_time: integer(row, "set_time")?,
                })
            })
            .collect()
    }
}
