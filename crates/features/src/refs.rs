//! Feature references (`view:feature`, or a feature service) resolved against the definitions, with the output
//! column name of each feature: the bare name, or `view__feature` with full feature names.
//!
//! An on-demand feature brings the stored features its expression reads into the selection as hidden columns
//! (named `view:feature`, which no output name can be), fetched and joined like the others but not returned.

use std::collections::BTreeMap;

use crate::definitions::{Definitions, FeatureView};
use crate::error::FeatureError;
use crate::expression::{Expression, Kind};
use crate::on_demand::InputRef;
use crate::value_type::ValueType;

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

/// Where an on-demand feature's input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerivedInput {
    /// A stored feature, by its column name in the selection (visible or hidden).
    Column(String, Kind),
    /// A request field (an entity-frame column in training sets).
    Request(String, Kind),
}

/// An on-demand feature a request asked for.
#[derive(Debug, Clone)]
pub struct DerivedSelection {
    /// Its output column name.
    pub output: String,
    /// Its type.
    pub dtype: ValueType,
    /// Its expression.
    pub expression: Expression,
    /// What each input slot of the expression reads.
    pub inputs: Vec<DerivedInput>,
}

/// What a request asked for, grouped by view in order of first mention.
#[derive(Debug, Clone)]
pub struct FeatureSelection {
    /// The stored views and their features (including hidden inputs of on-demand features).
    pub views: Vec<ViewSelection>,
    /// On-demand features, in request order; they come after the stored ones in answers.
    pub derived: Vec<DerivedSelection>,
    /// Request fields the on-demand features read, with their types.
    pub request_fields: Vec<(String, ValueType)>,
}

impl FeatureSelection {
    /// Every output column name, in order (stored features, then on-demand ones).
    pub fn output_names(&self) -> Vec<String> {
        self.views
            .iter()
            .flat_map(|v| v.features.iter().map(|(_, out)| out.clone()))
            .filter(|out| !is_hidden(out))
            .chain(self.derived.iter().map(|d| d.output.clone()))
            .collect()
    }

    /// The type of each output column, in [`FeatureSelection::output_names`] order.
    pub fn output_types(&self) -> Vec<(String, ValueType)> {
        let stored = self.views.iter().flat_map(|v| {
            v.features
                .iter()
                .filter(|(_, out)| !is_hidden(out))
                .map(|(feature, out)| {
                    let dtype = v
                        .view
                        .features
                        .iter()
                        .find(|f| &f.name == feature)
                        .expect("resolved")
                        .dtype;
                    (out.clone(), dtype)
                })
        });
        stored
            .chain(self.derived.iter().map(|d| (d.output.clone(), d.dtype)))
            .collect()
    }
}

/// Whether a selection column is a hidden input of an on-demand feature.
pub fn is_hidden(output: &str) -> bool {
    output.contains(':')
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
    let mut derived: Vec<DerivedSelection> = Vec::new();
    let mut on_demand: Vec<(String, String)> = Vec::new();
    for (view_name, feature) in pairs {
        if definitions.on_demand_views.contains_key(&view_name) && !definitions.views.contains_key(&view_name) {
            on_demand.push((view_name, feature));
            continue;
        }
        let view = definitions
            .views
            .get(&view_name)
            .ok_or_else(|| unknown_view(definitions, &view_name))?;
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
        add_column(&mut views, view, feature, output);
    }
    let mut request_fields: Vec<(String, ValueType)> = Vec::new();
    let mut computed: Vec<(String, String)> = Vec::new();
    for (view_name, feature) in on_demand {
        // The same feature asked for twice is computed once; another with the same output name is a collision,
        // counted below.
        if computed.contains(&(view_name.clone(), feature.clone())) {
            continue;
        }
        computed.push((view_name.clone(), feature.clone()));
        let view = &definitions.on_demand_views[&view_name];
        let declared = view.features.iter().find(|f| f.name == feature).ok_or_else(|| {
            FeatureError::UnknownFeature(format!(
                "on-demand feature view `{view_name}` has no feature `{feature}`; its features are {:?}",
                view.features.iter().map(|f| &f.name).collect::<Vec<_>>()
            ))
        })?;
        let output = if full_names {
            format!("{view_name}__{feature}")
        } else {
            feature.clone()
        };
        let (expression, reads) = view.compile(definitions, declared).map_err(|e| {
            FeatureError::BadReference(format!(
                "on-demand feature `{view_name}:{feature}` no longer compiles: {e}"
            ))
        })?;
        let mut inputs = Vec::with_capacity(reads.len());
        for (read, kind) in reads {
            match read {
                InputRef::Feature { view, feature } => {
                    let source = &definitions.views[&view];
                    let column = match views
                        .iter()
                        .find(|v| v.view.name == view)
                        .and_then(|v| v.features.iter().find(|(f, _)| f == &feature))
                    {
                        Some((_, column)) => column.clone(),
                        None => {
                            let hidden = format!("{view}:{feature}");
                            add_column(&mut views, source, feature, hidden.clone());
                            hidden
                        }
                    };
                    inputs.push(DerivedInput::Column(column, kind));
                }
                InputRef::Request { field } => {
                    let dtype = view
                        .sources
                        .iter()
                        .filter_map(|s| definitions.request_sources.get(s))
                        .flat_map(|r| r.schema.iter())
                        .find(|f| f.name == field)
                        .expect("compiled")
                        .dtype;
                    if !request_fields.iter().any(|(f, _)| f == &field) {
                        request_fields.push((field.clone(), dtype));
                    }
                    inputs.push(DerivedInput::Request(field, kind));
                }
            }
        }
        derived.push(DerivedSelection {
            output,
            dtype: declared.dtype,
            expression,
            inputs,
        });
    }
    let selection = FeatureSelection {
        views,
        derived,
        request_fields,
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for output in selection.output_names() {
        *counts.entry(output).or_default() += 1;
    }
    let collisions: Vec<String> = counts
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(name, _)| name)
        .collect();
    if !collisions.is_empty() {
        return Err(FeatureError::NameCollision { names: collisions });
    }
    Ok(selection)
}

fn unknown_view(definitions: &Definitions, name: &str) -> FeatureError {
    FeatureError::UnknownFeature(format!(
        "no feature view `{name}`; the views are {:?}",
        definitions
            .views
            .keys()
            .chain(definitions.on_demand_views.keys())
            .collect::<Vec<_>>()
    ))
}

/// Adds a feature of a stored view to the selection, once.
fn add_column(views: &mut Vec<ViewSelection>, view: &FeatureView, feature: String, output: String) {
    let position = match views.iter().position(|v| v.view.name == view.name) {
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
