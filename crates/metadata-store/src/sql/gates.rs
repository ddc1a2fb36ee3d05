//! Gate policies (revisioned), evaluations and overrides.

use super::SqlStore;
use super::rows::{integer, text};
use crate::entities::{GateEvaluation, GateOverride, GatePolicyRecord};
use crate::error::{StoreError, StoreResult};
use crate::traits::GateStore;
use async_trait::async_trait;
use loopline_core::time::now_millis;
use sqlx::any::AnyRow;

const EVALUATION_COLUMNS: &str =
    "evaluation_id, name, version, policy_revision, passed, evidence, created_by, created_time";
const OVERRIDE_COLUMNS: &str = "override_id, name, alias, version, reason, created_by, created_time";

fn policy(row: &AnyRow) -> StoreResult<GatePolicyRecord> {
    Ok(GatePolicyRecord {
        name: text(row, "name")?,
        policy: text(row, "policy")?,
        revision: integer(row, "revision")?,
        updated_by: text(row, "updated_by")?,
        updated_time: integer(row, "updated_time")?,
    })
}

fn evaluation(row: &AnyRow) -> StoreResult<GateEvaluation> {
    Ok(GateEvaluation {
        evaluation_id: integer(row, "evaluation_id")?,
        name: text(row, "name")?,
        version: integer(row, "version")?,
        policy_revision: integer(row, "policy_revision")?,
        passed: integer(row, "passed")? != 0,
        evidence: text(row, "evidence")?,
        created_by: text(row, "created_by")?,
        created_time: integer(row, "created_time")?,
    })
}

fn override_record(row: &AnyRow) -> StoreResult<GateOverride> {
    Ok(GateOverride {
        override_id: integer(row, "override_id")?,
        name: text(row, "name")?,
        alias: text(row, "alias")?,
        version: integer(row, "version")?,
        reason: text(row, "reason")?,
        created_by: text(row, "created_by")?,
        created_time: integer(row, "created_time")?,
    })
}

fn sql_limit(limit: usize) -> i64 {
    limit.min(i64::MAX as usize) as i64
}

#[async_trait]
impl GateStore for SqlStore {
    async fn set_gate_policy(&self, name: &str, policy_text: &str, actor: &str) -> StoreResult<GatePolicyRecord> {
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO gate_policies (name, policy, revision, updated_by, updated_time) VALUES ($1, $2, 1, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET policy = excluded.policy, revision = gate_policies.revision + 1, \
                 updated_by = excluded.updated_by, updated_time = excluded.updated_time",
            )
            .bind(name.to_string())
            .bind(policy_text.to_string())
            .bind(actor.to_string())
            .bind(now_millis())
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
        }
        self.get_gate_policy(name).await
    }

    async fn get_gate_policy(&self, name: &str) -> StoreResult<GatePolicyRecord> {
        let row =
            sqlx::query("SELECT name, policy, revision, updated_by, updated_time FROM gate_policies WHERE name = $1")
                .bind(name.to_string())
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("Registered model '{name}' has no gate policy.")))?;
        policy(&row)
    }

    async fn delete_gate_policy(&self, name: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        sqlx::query("DELETE FROM gate_policies WHERE name = $1")
            .bind(name.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_gate_evaluation(&self, record: &GateEvaluation) -> StoreResult<GateEvaluation> {
        let created_time = now_millis();
        let row = {
            let _writer = self.writer_guard().await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO gate_evaluations (name, version, policy_revision, passed, evidence, created_by, created_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {EVALUATION_COLUMNS}"
            )))
            .bind(record.name.clone())
            .bind(record.version)
            .bind(record.policy_revision)
            .bind(i64::from(record.passed))
            .bind(record.evidence.clone())
            .bind(record.created_by.clone())
            .bind(created_time)
            .fetch_one(&self.pool)
            .await?
        };
        evaluation(&row)
    }

    async fn gate_evaluations(&self, name: &str, version: i64, limit: usize) -> StoreResult<Vec<GateEvaluation>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVALUATION_COLUMNS} FROM gate_evaluations WHERE name = $1 AND version = $2 \
             ORDER BY evaluation_id DESC LIMIT $3"
        )))
        .bind(name.to_string())
        .bind(version)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(evaluation).collect()
    }

    async fn record_gate_override(&self, record: &GateOverride) -> StoreResult<GateOverride> {
        let created_time = now_millis();
        let row = {
            let _writer = self.writer_guard().await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO gate_overrides (name, alias, version, reason, created_by, created_time) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {OVERRIDE_COLUMNS}"
            )))
            .bind(record.name.clone())
            .bind(record.alias.clone())
            .bind(record.version)
            .bind(record.reason.clone())
            .bind(record.created_by.clone())
            .bind(created_time)
            .fetch_one(&self.pool)
            .await?
        };
        override_record(&row)
    }

    async fn gate_overrides(&self, name: &str, limit: usize) -> StoreResult<Vec<GateOverride>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OVERRIDE_COLUMNS} FROM gate_overrides WHERE name = $1 ORDER BY override_id DESC LIMIT $2"
        )))
        .bind(name.to_string())
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(override_record).collect()
    }
}
