//! Definitions as the server holds them: stored versioned in the metadata store, parsed once per version.
//! Every request reads the newest version number (one indexed lookup), so an apply on one replica is seen by
//! the next request on every other, without polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use loopline_features::Definitions;
use loopline_features::diff::{Change, diff};
use loopline_metadata_store::{FeatureDefinitionStore, FeatureDefinitionsRecord};

use crate::error::ApiError;

/// The definitions of every project.
pub struct FeatureRegistry {
    store: Arc<dyn FeatureDefinitionStore>,
    cache: Mutex<HashMap<String, (i64, Arc<Definitions>)>>,
}

/// What an apply did (or, dry, would do).
pub struct Applied {
    /// The version now newest (unchanged when dry or when nothing changed).
    pub version: i64,
    /// The changes from the version before.
    pub changes: Vec<Change>,
    /// Whether a version was written.
    pub written: bool,
}

impl FeatureRegistry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn FeatureDefinitionStore>) -> FeatureRegistry {
        FeatureRegistry {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The newest definitions of a project, if any were applied.
    pub async fn current(&self, project: &str) -> Result<Option<(i64, Arc<Definitions>)>, ApiError> {
        let version = self
            .store
            .feature_definitions_version(project)
            .await
            .map_err(ApiError::store)?;
        self.at_version(project, version).await
    }

    /// The definitions a request means (the project it names, or the only one) and their newest version,
    /// found with one query.
    pub async fn current_for(&self, asked: Option<&str>) -> Result<(String, Option<Arc<Definitions>>), ApiError> {
        match asked {
            Some(project) => Ok((project.to_string(), self.current(project).await?.map(|(_, d)| d))),
            None => {
                let projects = self.store.feature_projects().await.map_err(ApiError::store)?;
                let project = only_project(&projects)?;
                let version = projects.iter().find(|(p, _)| *p == project).map_or(0, |(_, v)| *v);
                Ok((
                    project.clone(),
                    self.at_version(&project, version).await?.map(|(_, d)| d),
                ))
            }
        }
    }

    async fn at_version(&self, project: &str, version: i64) -> Result<Option<(i64, Arc<Definitions>)>, ApiError> {
        if version == 0 {
            return Ok(None);
        }
        if let Some((cached, definitions)) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(project)
            && *cached == version
        {
            return Ok(Some((version, definitions.clone())));
        }
        let Some(record) = self
            .store
            .feature_definitions_at(project, version)
            .await
            .map_err(ApiError::store)?
        else {
            return Ok(None);
        };
        let definitions = Arc::new(parse(&record)?);
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(project.to_string(), (version, definitions.clone()));
        Ok(Some((version, definitions)))
    }

    /// The project a request without one means: the only project, or an error saying how to choose.
    pub async fn project_for(&self, asked: Option<&str>) -> Result<String, ApiError> {
        if let Some(project) = asked {
            return Ok(project.to_string());
        }
        let projects = self.store.feature_projects().await.map_err(ApiError::store)?;
        only_project(&projects)
    }

    /// Removes every version of a project's definitions.
    pub async fn delete(&self, project: &str) -> Result<(), ApiError> {
        self.store
            .delete_feature_project(project)
            .await
            .map_err(ApiError::store)?;
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(project);
        Ok(())
    }

    /// Every project and its newest version.
    pub async fn projects(&self) -> Result<Vec<(String, i64)>, ApiError> {
        self.store.feature_projects().await.map_err(ApiError::store)
    }

    /// One stored version.
    pub async fn record(&self, project: &str, version: i64) -> Result<Option<FeatureDefinitionsRecord>, ApiError> {
        self.store
            .feature_definitions_at(project, version)
            .await
            .map_err(ApiError::store)
    }

    /// Stores `definitions` as the project's next version unless nothing changed; with `expected`, only if
    /// the newest version is still that one. `dry` computes the changes and writes nothing.
    pub async fn apply(&self, definitions: Definitions, expected: Option<i64>, dry: bool) -> Result<Applied, ApiError> {
        let project = definitions.project.clone();
        let current = self.current(&project).await?;
        let version = current.as_ref().map_or(0, |(v, _)| *v);
        if let Some(expected) = expected
            && expected != version
        {
            return Err(ApiError::conflict(format!(
                "project `{project}` is at version {version}, not {expected}: someone applied meanwhile; look at the \
                 changes again and apply once more"
            )));
        }
        let changes = diff(current.as_ref().map(|(_, d)| d.as_ref()), &definitions);
        if dry || (changes.is_empty() && current.is_some()) {
            return Ok(Applied {
                version,
                changes,
                written: false,
            });
        }
        let body = serde_json::to_string(&definitions).map_err(|e| ApiError::internal(e.to_string()))?;
        match self
            .store
            .put_feature_definitions(&project, version, &body)
            .await
            .map_err(ApiError::store)?
        {
            Some(record) => Ok(Applied {
                version: record.version,
                changes,
                written: true,
            }),
            None => Err(ApiError::conflict(format!(
                "project `{project}` changed while this apply was checked; apply again"
            ))),
        }
    }
}

/// The only project, or an error saying how to choose one.
fn only_project(projects: &[(String, i64)]) -> Result<String, ApiError> {
    match projects {
        [(only, _)] => Ok(only.clone()),
        [] => Err(ApiError::not_found(
            "FeastObjectNotFoundException",
            "no feature definitions are applied on this server; run `loopline features apply`".to_string(),
        )),
        many => Err(ApiError::bad_request(format!(
            "this server holds several feature projects ({:?}); name one with `?project=NAME` in the URL \
             (`--project` on the command line)",
            many.iter().map(|(p, _)| p).collect::<Vec<_>>()
        ))),
    }
}

fn parse(record: &FeatureDefinitionsRecord) -> Result<Definitions, ApiError> {
    serde_json::from_str(&record.body).map_err(|e| {
        ApiError::internal(format!(
            "stored definitions of project `{}` version {} cannot be read: {e}",
            record.project, record.version
        ))
    })
}
