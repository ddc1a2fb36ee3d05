//! Request sources and on-demand feature views: features computed when they are asked for, from fields the
//! request carries and features of other views, by typed expressions (see [`crate::expression`]).
//!
//! ```yaml
//! request_sources:
//!   - name: trip_request
//!     schema: [{name: distance_km, dtype: float64}]
//! on_demand_feature_views:
//!   - name: trip_estimates
//!     sources: [driver_stats, trip_request]     # feature views and request sources it reads
//!     schema:
//!       - {name: fare_estimate, dtype: float64, expression: "2.5 + distance_km * 1.2 * (1 + conv_rate)"}
//!       - {name: long_trip, dtype: bool, expression: "distance_km > 20"}
//! ```
//!
//! A name in an expression is a feature of one of the sources or a request field; where two sources have a
//! name, it is written `source.name`. Request fields come from the request's `entities` online and from the
//! entity frame's columns in training sets.

use serde::{Deserialize, Serialize};

use crate::definitions::{Definitions, Field, FieldSpec, MAX_FEATURES_PER_VIEW, check_name};
use crate::expression::{Expression, Kind, fits};
use crate::value_type::ValueType;

/// Fields a request carries itself, for on-demand features to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSource {
    /// Its name.
    pub name: String,
    /// Its fields.
    pub schema: Vec<Field>,
}

/// A feature computed by an expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DerivedFeature {
    /// Its name.
    pub name: String,
    /// Its type.
    pub dtype: ValueType,
    /// The expression computing it.
    pub expression: String,
}

/// A view of features computed when asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnDemandView {
    /// Its name.
    pub name: String,
    /// The feature views and request sources its expressions read.
    pub sources: Vec<String>,
    /// Its features.
    pub features: Vec<DerivedFeature>,
}

/// What one name of an expression reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputRef {
    /// A feature of a stored view.
    Feature {
        /// The view.
        view: String,
        /// The feature.
        feature: String,
    },
    /// A field of the request (an entity-frame column in training sets).
    Request {
        /// The field.
        field: String,
    },
}

impl OnDemandView {
    /// What `name` reads among this view's sources, with its type.
    pub fn input(&self, definitions: &Definitions, name: &str) -> Result<(InputRef, ValueType), String> {
        let (wanted_source, field) = match name.split_once('.') {
            Some((source, field)) => (Some(source), field),
            None => (None, name),
        };
        let mut found = Vec::new();
        for source in &self.sources {
            if wanted_source.is_some_and(|w| w != source) {
                continue;
            }
            if let Some(view) = definitions.views.get(source) {
                if let Some(f) = view.features.iter().find(|f| f.name == field) {
                    found.push((
                        InputRef::Feature {
                            view: source.clone(),
                            feature: field.to_string(),
                        },
                        f.dtype,
                    ));
                }
            } else if let Some(request) = definitions.request_sources.get(source)
                && let Some(f) = request.schema.iter().find(|f| f.name == field)
            {
                found.push((
                    InputRef::Request {
                        field: field.to_string(),
                    },
                    f.dtype,
                ));
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(match wanted_source {
                Some(source) if !self.sources.iter().any(|s| s == source) => {
                    format!("`{name}`: `{source}` is not one of its sources {:?}", self.sources)
                }
                _ => format!(
                    "`{name}` is not a feature or request field of its sources {:?}",
                    self.sources
                ),
            }),
            _ => Err(format!(
                "`{name}` is in several of its sources; write it as `source.{field}` (one of {:?})",
                self.sources
            )),
        }
    }

    /// Parses one of its features' expression, with what each input slot reads.
    pub fn compile(
        &self,
        definitions: &Definitions,
        feature: &DerivedFeature,
    ) -> Result<(Expression, Vec<(InputRef, Kind)>), String> {
        let resolve = |name: &str| -> Result<Kind, String> {
            let (_, dtype) = self.input(definitions, name)?;
            Kind::of(dtype).ok_or_else(|| format!("`{name}` is {}, which expressions cannot read", dtype.name()))
        };
        let expression = Expression::parse(&feature.expression, &resolve)?;
        if !fits(expression.kind, feature.dtype) {
            return Err(format!(
                "it gives {:?} values, which a {} feature cannot hold{}",
                expression.kind,
                feature.dtype.name(),
                if expression.kind == Kind::Float && matches!(feature.dtype, ValueType::Int32 | ValueType::Int64) {
                    "; wrap it in int(), round(), floor() or ceil()"
                } else {
                    ""
                }
            ));
        }
        let inputs = expression
            .inputs
            .iter()
            .map(|name| {
                let (input, dtype) = self.input(definitions, name)?;
                Ok((input, Kind::of(dtype).expect("checked by resolve")))
            })
            .collect::<Result<_, String>>()?;
        Ok((expression, inputs))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestSpec {
    name: String,
    schema: Vec<FieldSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OnDemandSpec {
    name: String,
    sources: Vec<String>,
    schema: Vec<DerivedSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DerivedSpec {
    name: String,
    dtype: String,
    expression: String,
}

pub(crate) fn build_request_source(spec: RequestSpec, definitions: &Definitions) -> Result<RequestSource, String> {
    check_name("request source", &spec.name)?;
    let context = format!("request source `{}`", spec.name);
    if definitions.sources.contains_key(&spec.name) || definitions.push_sources.contains_key(&spec.name) {
        return Err(format!("{context} has the name of a source"));
    }
    if spec.schema.is_empty() {
        return Err(format!(
            "{context}: schema is empty; declare its fields with name and dtype"
        ));
    }
    if spec.schema.len() > MAX_FEATURES_PER_VIEW {
        return Err(format!("{context}: more than {MAX_FEATURES_PER_VIEW} fields"));
    }
    let mut schema: Vec<Field> = Vec::with_capacity(spec.schema.len());
    for field in spec.schema {
        check_name(&format!("field of {context}"), &field.name)?;
        if schema.iter().any(|f| f.name == field.name) {
            return Err(format!("{context}: field `{}` is declared twice", field.name));
        }
        let dtype = ValueType::parse(&field.dtype).map_err(|e| format!("{context}: field `{}`: {e}", field.name))?;
        // A request carries each field once, so a field of two request sources must be of one type.
        for other in definitions.request_sources.values() {
            if let Some(theirs) = other.schema.iter().find(|f| f.name == field.name && f.dtype != dtype) {
                return Err(format!(
                    "{context}: field `{}` is {} here but {} in request source `{}`; a request carries it once, \
                     so give it one type",
                    field.name,
                    dtype.name(),
                    theirs.dtype.name(),
                    other.name
                ));
            }
        }
        if definitions.entities.values().any(|e| e.join_keys.contains(&field.name)) {
            return Err(format!(
                "{context}: field `{}` has the name of a join key; a request could not tell them apart",
                field.name
            ));
        }
        schema.push(Field {
            name: field.name,
            dtype,
        });
    }
    Ok(RequestSource {
        name: spec.name,
        schema,
    })
}

pub(crate) fn build_on_demand(spec: OnDemandSpec, definitions: &Definitions) -> Result<OnDemandView, String> {
    check_name("on-demand feature view", &spec.name)?;
    let context = format!("on-demand feature view `{}`", spec.name);
    if definitions.views.contains_key(&spec.name) || definitions.request_sources.contains_key(&spec.name) {
        return Err(format!("{context} has the name of a feature view or request source"));
    }
    if spec.sources.is_empty() {
        return Err(format!(
            "{context}: sources is empty; name the feature views and request sources it reads"
        ));
    }
    for (at, source) in spec.sources.iter().enumerate() {
        if spec.sources[..at].contains(source) {
            return Err(format!("{context}: source `{source}` is listed twice"));
        }
        if !definitions.views.contains_key(source) && !definitions.request_sources.contains_key(source) {
            return Err(format!(
                "{context}: no feature view or request source `{source}`; the views are {:?} and the request \
                 sources {:?}",
                definitions.views.keys().collect::<Vec<_>>(),
                definitions.request_sources.keys().collect::<Vec<_>>()
            ));
        }
    }
    if spec.schema.is_empty() {
        return Err(format!(
            "{context}: schema is empty; declare its features with name, dtype and expression"
        ));
    }
    if spec.schema.len() > MAX_FEATURES_PER_VIEW {
        return Err(format!("{context}: more than {MAX_FEATURES_PER_VIEW} features"));
    }
    let mut view = OnDemandView {
        name: spec.name,
        sources: spec.sources,
        features: Vec::new(),
    };
    for field in spec.schema {
        check_name(&format!("feature of {context}"), &field.name)?;
        if view.features.iter().any(|f| f.name == field.name) {
            return Err(format!("{context}: feature `{}` is declared twice", field.name));
        }
        let dtype = ValueType::parse(&field.dtype).map_err(|e| format!("{context}: feature `{}`: {e}", field.name))?;
        let feature = DerivedFeature {
            name: field.name,
            dtype,
            expression: field.expression,
        };
        view.compile(definitions, &feature)
            .map_err(|e| format!("{context}: feature `{}`: {e}", feature.name))?;
        view.features.push(feature);
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Definitions;

    const BASE: &str = "entities: [{name: driver, join_keys: [driver_id]}]
sources: [{name: s, path: s.parquet, timestamp_field: t}]
feature_views:
  - {name: a, entities: [driver], source: s, schema: [{name: rate, dtype: float64}, {name: n, dtype: int64}]}
  - {name: b, entities: [driver], source: s, schema: [{name: rate, dtype: float32}]}
request_sources: [{name: req, schema: [{name: km, dtype: float64}, {name: city, dtype: string}]}]
";

    fn with(on_demand: &str) -> Result<Definitions, String> {
        Definitions::from_yaml(
            &format!("{BASE}on_demand_feature_views:\n{on_demand}"),
            Path::new("/"),
            "t",
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn expressions_are_checked_when_defined() {
        let ok =
            with("  - {name: o, sources: [a, req], schema: [{name: x, dtype: float64, expression: 'km * rate + n'}]}")
                .unwrap();
        assert_eq!(ok.on_demand_views["o"].features[0].expression, "km * rate + n");
        let error = |yaml: &str| with(yaml).unwrap_err();
        assert!(
            error("  - {name: o, sources: [a, b], schema: [{name: x, dtype: float64, expression: 'rate'}]}")
                .contains("write it as `source.rate`")
        );
        with("  - {name: o, sources: [a, b], schema: [{name: x, dtype: float64, expression: 'a.rate - b.rate'}]}")
            .unwrap();
        assert!(
            error("  - {name: o, sources: [a], schema: [{name: x, dtype: int64, expression: 'rate * 2'}]}")
                .contains("wrap it in int()")
        );
        assert!(
            error("  - {name: o, sources: [a], schema: [{name: x, dtype: float64, expression: 'km'}]}")
                .contains("not a feature or request field")
        );
        assert!(
            error("  - {name: o, sources: [nope], schema: [{name: x, dtype: bool, expression: 'true'}]}")
                .contains("no feature view or request source `nope`")
        );
        assert!(
            error("  - {name: a, sources: [req], schema: [{name: x, dtype: bool, expression: 'true'}]}")
                .contains("has the name of a feature view")
        );
        assert!(
            error("  - {name: o, sources: [req], schema: [{name: x, dtype: string, expression: 'lower(km)'}]}")
                .contains("needs text")
        );
    }

    #[test]
    fn two_computed_features_of_one_name_collide_unless_full_names() {
        let definitions = with(
            "  - {name: o1, sources: [req], schema: [{name: z, dtype: float64, expression: 'km + 1'}]}
  - {name: o2, sources: [req], schema: [{name: z, dtype: float64, expression: 'km * 100'}]}",
        )
        .unwrap();
        let wanted = crate::Wanted::References(vec!["o1:z".into(), "o2:z".into(), "o1:z".into()]);
        let refused = crate::resolve(&definitions, &wanted, false).unwrap_err();
        assert!(refused.to_string().contains("collision"), "{refused}");
        let selection = crate::resolve(&definitions, &wanted, true).unwrap();
        assert_eq!(selection.output_names(), ["o1__z", "o2__z"]);
    }

    #[test]
    fn services_take_on_demand_features() {
        let definitions = Definitions::from_yaml(
            &format!(
                "{BASE}on_demand_feature_views:
  - {{name: o, sources: [a, req], schema: [{{name: x, dtype: float64, expression: 'km * rate'}}]}}
feature_services: [{{name: svc, features: [a, {{o: [x]}}]}}]"
            ),
            Path::new("/"),
            "t",
        )
        .unwrap();
        assert_eq!(
            definitions.services["svc"].features[1],
            ("o".to_string(), vec!["x".to_string()])
        );
        let clash =
            Definitions::from_yaml(&BASE.replace("{name: km,", "{name: driver_id,"), Path::new("/"), "t").unwrap_err();
        assert!(clash.to_string().contains("has the name of a join key"));
        let retyped = Definitions::from_yaml(
            &format!("{BASE}  - {{name: req2, schema: [{{name: km, dtype: int64}}]}}\n").replace(
                "request_sources: [{name: req, schema: [{name: km, dtype: float64}, {name: city, dtype: string}]}]",
                "request_sources:\n  - {name: req, schema: [{name: km, dtype: float64}, {name: city, dtype: string}]}",
            ),
            Path::new("/"),
            "t",
        )
        .unwrap_err();
        assert!(retyped.to_string().contains("is Int64 here but Float64"), "{retyped}");
        let twice = with("  - {name: o, sources: [a, a], schema: [{name: x, dtype: bool, expression: 'true'}]}");
        assert!(twice.unwrap_err().contains("listed twice"));
    }
}
