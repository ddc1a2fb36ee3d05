//! Feature store definitions, versioned per project. A new version is written only if the newest is still
//! the one the writer read, so two people applying at once never lose each other's change silently; replicas
//! learn of a change by reading the newest version number alone.

use crate::error::StoreResult;
use async_trait::async_trait;

/// One applied version of a project's definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureDefinitionsRecord {
    /// The project.
    pub project: String,
    /// 1, 2, ... in the order they were applied.
    pub version: i64,
    /// The definitions document (JSON).
    pub body: String,
    /// When it was applied, milliseconds since the epoch.
    pub created_at: i64,
}

/// Storage of feature definitions.
#[async_trait]
pub trait FeatureDefinitionStore: Send + Sync {
    /// The newest version of a project's definitions (`None`: never applied).
    async fn feature_definitions(&self, project: &str) -> StoreResult<Option<FeatureDefinitionsRecord>>;
    /// One version of a project's definitions.
    async fn feature_definitions_at(
        &self,
        project: &str,
        version: i64,
    ) -> StoreResult<Option<FeatureDefinitionsRecord>>;
    /// The newest version number alone (0: never applied).
    async fn feature_definitions_version(&self, project: &str) -> StoreResult<i64>;
    /// Stores `body` as version `expected + 1` if the newest version is still `expected` (0: never applied);
    /// `None` when another writer came first.
    async fn put_feature_definitions(
        &self,
        project: &str,
        expected: i64,
        body: &str,
    ) -> StoreResult<Option<FeatureDefinitionsRecord>>;
    /// Removes every version of a project's definitions; how many were removed.
    async fn delete_feature_project(&self, project: &str) -> StoreResult<u64>;
    /// Every project with its newest version, by name.
    async fn feature_projects(&self) -> StoreResult<Vec<(String, i64)>>;
}
