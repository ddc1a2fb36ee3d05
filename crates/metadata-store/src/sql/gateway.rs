//! Gateway keys, team limits and the usage ledger on SQL. A reservation is one write transaction: per claim,
//! the row is made if missing and then raised only if it stays within its limit (a conditional UPDATE, which
//! PostgreSQL re-checks on the newest row version when replicas race), so nothing is reserved unless all of
//! it is. Rows are touched in one order (subject, kind, window) so racing transactions never deadlock.

use super::SqlStore;
use super::rows::Columns;
use crate::error::{StoreError, StoreResult};
use crate::gateway::{
    GatewayKey, GatewayKeyStore, GatewayLimits, GatewayTeam, Reservation, UsageClaim, UsageLease, UsageRow,
    UsageSettlement,
};
use async_trait::async_trait;
use sqlx::any::AnyRow;

const KEY_COLUMNS: &str =
    "token_id, team, models, rpm, tpm, max_parallel, budget_micros, budget_period, created_time, updated_time";
const TEAM_COLUMNS: &str = "team, rpm, tpm, max_parallel, budget_micros, budget_period, created_time, updated_time";
/// Most keys and most teams one server keeps (an admin lists them whole).
const MAX_ENTRIES: i64 = 100_000;

fn limits(row: &AnyRow) -> StoreResult<GatewayLimits> {
    Ok(GatewayLimits {
        rpm: row.optional_integer("rpm")?,
        tpm: row.optional_integer("tpm")?,
        max_parallel: row.optional_integer("max_parallel")?,
        budget_micros: row.optional_integer("budget_micros")?,
        budget_period: row.text("budget_period")?,
    })
}

fn key_from_row(row: &AnyRow) -> StoreResult<GatewayKey> {
    Ok(GatewayKey {
        token_id: row.text("token_id")?,
        team: row.optional_text("team")?,
        models: serde_json::from_str(&row.text("models")?).unwrap_or_default(),
        limits: limits(row)?,
        created_time: row.integer("created_time")?,
        updated_time: row.integer("updated_time")?,
    })
}

fn team_from_row(row: &AnyRow) -> StoreResult<GatewayTeam> {
    Ok(GatewayTeam {
        team: row.text("team")?,
        limits: limits(row)?,
        created_time: row.integer("created_time")?,
        updated_time: row.integer("updated_time")?,
    })
}

impl SqlStore {
    async fn count_rows(&self, table: &str) -> StoreResult<i64> {
        let row = super::query_text(format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&self.pool)
            .await?;
        row.integer("n")
    }
}

#[async_trait]
impl GatewayKeyStore for SqlStore {
    async fn put_gateway_key(&self, key: &GatewayKey) -> StoreResult<()> {
        if self.get_gateway_key(&key.token_id).await?.is_none() && self.count_rows("gateway_keys").await? >= MAX_ENTRIES
        {
            return Err(StoreError::InvalidParameter(format!(
                "a server keeps at most {MAX_ENTRIES} gateway keys: revoke unused ones first"
            )));
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        sqlx::query("DELETE FROM gateway_keys WHERE token_id = $1")
            .bind(key.token_id.clone())
            .execute(&mut *transaction)
            .await?;
        super::query_text(format!(
            "INSERT INTO gateway_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(key.token_id.clone())
        .bind(key.team.clone())
        .bind(serde_json::to_string(&key.models).unwrap_or_else(|_| "[]".into()))
        .bind(key.limits.rpm)
        .bind(key.limits.tpm)
        .bind(key.limits.max_parallel)
        .bind(key.limits.budget_micros)
        .bind(key.limits.budget_period.clone())
        .bind(key.created_time)
        .bind(key.updated_time)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn get_gateway_key(&self, token_id: &str) -> StoreResult<Option<GatewayKey>> {
        let row = super::query_text(format!("SELECT {KEY_COLUMNS} FROM gateway_keys WHERE token_id = $1"))
            .bind(token_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_gateway_keys(&self) -> StoreResult<Vec<GatewayKey>> {
        let rows = super::query_text(format!(
            "SELECT {KEY_COLUMNS} FROM gateway_keys ORDER BY created_time, token_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn delete_gateway_key(&self, token_id: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        sqlx::query("DELETE FROM gateway_keys WHERE token_id = $1")
            .bind(token_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_gateway_team(&self, team: &GatewayTeam) -> StoreResult<()> {
        if self.get_gateway_team(&team.team).await?.is_none() && self.count_rows("gateway_teams").await? >= MAX_ENTRIES
        {
            return Err(StoreError::InvalidParameter(format!(
                "a server keeps at most {MAX_ENTRIES} gateway teams"
            )));
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        sqlx::query("DELETE FROM gateway_teams WHERE team = $1")
            .bind(team.team.clone())
            .execute(&mut *transaction)
            .await?;
        super::query_text(format!(
            "INSERT INTO gateway_teams ({TEAM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(team.team.clone())
        .bind(team.limits.rpm)
        .bind(team.limits.tpm)
        .bind(team.limits.max_parallel)
        .bind(team.limits.budget_micros)
        .bind(team.limits.budget_period.clone())
        .bind(team.created_time)
        .bind(team.updated_time)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn get_gateway_team(&self, team: &str) -> StoreResult<Option<GatewayTeam>> {
        let row = super::query_text(format!("SELECT {TEAM_COLUMNS} FROM gateway_teams WHERE team = $1"))
            .bind(team.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(team_from_row).transpose()
    }

    async fn list_gateway_teams(&self) -> StoreResult<Vec<GatewayTeam>> {
        let rows = super::query_text(format!("SELECT {TEAM_COLUMNS} FROM gateway_teams ORDER BY team"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(team_from_row).collect()
    }

    async fn delete_gateway_team(&self, team: &str) -> StoreResult<()> {
        let _writer = self.writer_guard().await;
        sqlx::query("DELETE FROM gateway_teams WHERE team = $1")
            .bind(team.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reserve_usage(&self, claims: &[UsageClaim], leases: &[UsageLease], now: i64) -> StoreResult<Reservation> {
        let mut order: Vec<usize> = (0..claims.len()).collect();
        order.sort_by(|&a, &b| {
            let key = |claim: &UsageClaim| (claim.subject.clone(), claim.kind.clone(), claim.window);
            key(&claims[a]).cmp(&key(&claims[b]))
        });
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        let mut levels = vec![0; claims.len()];
        for index in order {
            let claim = &claims[index];
            let row = (claim.subject.clone(), claim.kind.clone(), claim.window);
            sqlx::query(
                "INSERT INTO gateway_usage (subject, kind, window_start, used, reserved) VALUES ($1, $2, $3, 0, 0) \
                 ON CONFLICT (subject, kind, window_start) DO NOTHING",
            )
            .bind(row.0.clone())
            .bind(row.1.clone())
            .bind(row.2)
            .execute(&mut *transaction)
            .await?;
            let raised = match claim.limit {
                Some(limit) => sqlx::query(
                    "UPDATE gateway_usage SET reserved = reserved + $4 \
                     WHERE subject = $1 AND kind = $2 AND window_start = $3 AND used + reserved + $4 <= $5",
                )
                .bind(row.0.clone())
                .bind(row.1.clone())
                .bind(row.2)
                .bind(claim.amount)
                .bind(limit),
                None => sqlx::query(
                    "UPDATE gateway_usage SET reserved = reserved + $4 \
                     WHERE subject = $1 AND kind = $2 AND window_start = $3",
                )
                .bind(row.0.clone())
                .bind(row.1.clone())
                .bind(row.2)
                .bind(claim.amount),
            }
            .execute(&mut *transaction)
            .await?;
            if raised.rows_affected() == 0 {
                transaction.rollback().await?;
                return Ok(Reservation::Refused(index));
            }
            let level = sqlx::query(
                "SELECT used + reserved AS level FROM gateway_usage WHERE subject = $1 AND kind = $2 AND window_start = $3",
            )
            .bind(row.0.clone())
            .bind(row.1.clone())
            .bind(row.2)
            .fetch_one(&mut *transaction)
            .await?;
            levels[index] = level.integer("level")?;
            if claim.kind == "requests" || claim.kind == "tokens" {
                sqlx::query("DELETE FROM gateway_usage WHERE subject = $1 AND kind = $2 AND window_start < $3")
                    .bind(row.0)
                    .bind(row.1)
                    .bind(row.2)
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        let mut ordered: Vec<(usize, &UsageLease)> = leases.iter().enumerate().collect();
        ordered.sort_by(|a, b| a.1.subject.cmp(&b.1.subject));
        for (index, lease) in ordered {
            // The subject's `parallel` row is locked first: racing leases of one subject take turns.
            sqlx::query(
                "INSERT INTO gateway_usage (subject, kind, window_start, used, reserved) VALUES ($1, 'parallel', 0, 0, 0) \
                 ON CONFLICT (subject, kind, window_start) DO NOTHING",
            )
            .bind(lease.subject.clone())
            .execute(&mut *transaction)
            .await?;
            sqlx::query("UPDATE gateway_usage SET used = used + 1 WHERE subject = $1 AND kind = 'parallel' AND window_start = 0")
                .bind(lease.subject.clone())
                .execute(&mut *transaction)
                .await?;
            sqlx::query("DELETE FROM gateway_leases WHERE subject = $1 AND expires_time <= $2")
                .bind(lease.subject.clone())
                .bind(now)
                .execute(&mut *transaction)
                .await?;
            let held = sqlx::query("SELECT COUNT(*) AS n FROM gateway_leases WHERE subject = $1")
                .bind(lease.subject.clone())
                .fetch_one(&mut *transaction)
                .await?
                .integer("n")?;
            if held >= lease.limit {
                transaction.rollback().await?;
                return Ok(Reservation::Refused(claims.len() + index));
            }
            sqlx::query("INSERT INTO gateway_leases (lease_id, subject, expires_time) VALUES ($1, $2, $3)")
                .bind(lease.lease_id.clone())
                .bind(lease.subject.clone())
                .bind(lease.expires_time)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(Reservation::Granted(levels))
    }

    async fn settle_usage(&self, settlements: &[UsageSettlement], lease_ids: &[String]) -> StoreResult<()> {
        let mut sorted: Vec<&UsageSettlement> = settlements.iter().collect();
        sorted.sort_by(|a, b| (&a.subject, &a.kind, a.window).cmp(&(&b.subject, &b.kind, b.window)));
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        for settlement in sorted {
            sqlx::query(
                "INSERT INTO gateway_usage (subject, kind, window_start, used, reserved) VALUES ($1, $2, $3, 0, $4) \
                 ON CONFLICT (subject, kind, window_start) DO NOTHING",
            )
            .bind(settlement.subject.clone())
            .bind(settlement.kind.clone())
            .bind(settlement.window)
            .bind(settlement.reserved)
            .execute(&mut *transaction)
            .await?;
            sqlx::query(
                "UPDATE gateway_usage SET reserved = reserved - $4, used = used + $5 \
                 WHERE subject = $1 AND kind = $2 AND window_start = $3",
            )
            .bind(settlement.subject.clone())
            .bind(settlement.kind.clone())
            .bind(settlement.window)
            .bind(settlement.reserved)
            .bind(settlement.actual)
            .execute(&mut *transaction)
            .await?;
        }
        for lease_id in lease_ids {
            sqlx::query("DELETE FROM gateway_leases WHERE lease_id = $1")
                .bind(lease_id.clone())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn usage_rows(&self, kind: &str, from_window: i64) -> StoreResult<Vec<UsageRow>> {
        let rows = sqlx::query(
            "SELECT subject, kind, window_start, used, reserved FROM gateway_usage \
             WHERE kind = $1 AND window_start >= $2 ORDER BY subject, window_start",
        )
        .bind(kind.to_string())
        .bind(from_window)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageRow {
                    subject: row.text("subject")?,
                    kind: row.text("kind")?,
                    window: row.integer("window_start")?,
                    used: row.integer("used")?,
                    reserved: row.integer("reserved")?,
                })
            })
            .collect()
    }

    async fn gateway_catalog(&self) -> StoreResult<Option<(i64, String)>> {
        let row = sqlx::query("SELECT generation, body FROM gateway_catalog WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((row.integer("generation")?, row.text("body")?)))
            .transpose()
    }

    async fn gateway_catalog_generation(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT generation FROM gateway_catalog WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map_or(Ok(0), |row| row.integer("generation"))
    }

    async fn put_gateway_catalog(&self, expected: i64, body: &str) -> StoreResult<bool> {
        let _writer = self.writer_guard().await;
        let written = if expected == 0 {
            sqlx::query(
                "INSERT INTO gateway_catalog (id, generation, body) VALUES (1, 1, $1) ON CONFLICT (id) DO NOTHING",
            )
            .bind(body.to_string())
            .execute(&self.pool)
            .await?
        } else {
            sqlx::query("UPDATE gateway_catalog SET generation = $1, body = $2 WHERE id = 1 AND generation = $3")
                .bind(expected + 1)
                .bind(body.to_string())
                .bind(expected)
                .execute(&self.pool)
                .await?
        };
        Ok(written.rows_affected() == 1)
    }
}
