//! Feature references (`view:feature`, or a feature service) resolved against the definitions, with the output
//! column name of each feature: the bare name, or `view__feature` with full feature names.

use std::collections::BTreeMap;

use crate::definitions::{Definitions, FeatureView};
use crate::error::FeatureError;

/// The most feature references one request may name.
pub const MAX_REFERENCES: usize = 10_000;

/// The features of one view a request asked for.
#[derive(Debug, Clone)]
pub struct ViewSelection {
    /// The view.
    pub view: FeatureView,
    /// (feature name, output column name), in request order.
    pub features: Vec<(String, String)>,
}

/// What a request asked for, grouped by view in order of first mention.
#[derive(Debug, Clone)]
pub struct FeatureSelection {
    /// The views and their features.
    pub views: Vec<ViewSelection>,
}

impl FeatureSelection {
    /// Every output column name, in order.
    pub fn output_names(&self) -> Vec<String> {
        self.views
            .iter()
            .flat_map(|v| v.features.iter().map(|(_, out)| out.clone()))
            .collect()
    }
}

/// What to fetch: feature references or a feature service.
#[derive(Debug, Clone)]
pub enum Wanted {
    /// `view:feature` references.
    References(Vec<String>),
    /// A feature service's name.
    Service(String),
}

/// Resolves references or a service into views and output names, refusing unknown names and collisions.
pub fn resolve(definitions: &Definitions, wanted: &Wanted, full_names: bool) -> Result<FeatureSelection, FeatureError> {
    let pairs: Vec<(String, String)> = match wanted {
        Wanted::References(references) => {
            if references.is_empty() {
                return Err(FeatureError::BadReference(
                    "no features asked for; name them as `view:feature` or name a feature service".to_string(),
                ));
            }
            if references.len() > MAX_REFERENCES {
                return Err(FeatureError::BadReference(format!(
                    "{} feature references, more than the {MAX_REFERENCES} accepted",
                    references.len()
                )));
            }
            references
                .iter()
                .map(|r| split_reference(r))
                .collect::<Result<_, _>>()?
        }
        Wanted::Service(name) => {
            let service = definitions.services.get(name).ok_or_else(|| {
                FeatureError::UnknownFeature(format!(
                    "no feature service `{name}`; the services are {:?}",
                    definitions.services.keys().collect::<Vec<_>>()
                ))
            })?;
            service
                .features
                .iter()
                .flat_map(|(view, features)| features.iter().map(move |f| (view.clone(), f.clone())))
                .collect()
        }
    };
    let mut views: Vec<ViewSelection> = Vec::new();
    for (view_name, feature) in pairs {
        let view = definitions.view(&view_name)?;
        if !view.features.iter().any(|f| f.name == feature) {
            return Err(FeatureError::UnknownFeature(format!(
                "feature view `{view_name}` has no feature `{feature}`; its features are {:?}",
                view.features.iter().map(|f| &f.name).collect::<Vec<_>>()
            )));
        }
        let output = if full_names {
            format!("{view_name}__{feature}")
        } else {
            feature.clone()
        };
        let position = match views.iter().position(|v| v.view.name == view_name) {
            Some(position) => position,
            None => {
                views.push(ViewSelection {
                    view: view.clone(),
                    features: Vec::new(),
                });
                views.len() - 1
            }
        };
        let selection = &mut views[position];
        if !selection.features.iter().any(|(f, _)| f == &feature) {
            selection.features.push((feature, output));
        }
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for view in &views {
        for (_, output) in &view.features {
            *counts.entry(output).or_default() += 1;
        }
    }
    let collisions: Vec<String> = counts
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(name, _)| name.to_string())
        .collect();
    if !collisions.is_empty() {
        return Err(FeatureError::NameCollision { names: collisions });
    }
    Ok(FeatureSelection { views })
}

/// `view:feature`, with Feast's optional `@vN` version suffix on the view refused (only the current version is
/// kept).
fn split_reference(reference: &str) -> Result<(String, String), FeatureError> {
    let Some((view, feature)) = reference.split_once(':') else {
        return Err(FeatureError::BadReference(format!(
            "feature reference {reference:?} is not `view:feature`"
        )));
    };
    if view.is_empty() || feature.is_empty() || feature.contains(':') {
        return Err(FeatureError::BadReference(format!(
            "feature reference {reference:?} is not `view:feature`"
        )));
    }
    if view.contains('@') {
        return Err(FeatureError::BadReference(format!(
            "feature reference {reference:?} names a view version; only the current version of a view is served, \
             drop the `@...` part"
        )));
    }
    Ok((view.to_string(), feature.to_string()))
}
