//! XGBoost tree models (`gbtree` and `dart` boosters) read from XGBoost's JSON or UBJSON model files and
//! evaluated as XGBoost's CPU predictor does: features and split thresholds in single precision, a missing value
//! (NaN) follows the node's default direction, leaf values summed per output group in single precision onto the
//! base margin, then the objective's transform (sigmoid, softmax, exp or identity).

use std::path::Path;

use serde_json::Value;

/// Why a model cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum XgboostError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The reason.
        message: String,
    },
    /// The document is not an XGBoost model we can evaluate.
    #[error("not a usable XGBoost model: {0}")]
    Model(String),
    /// Input of the wrong shape.
    #[error("{0}")]
    Input(String),
}

fn model_error<T>(message: impl Into<String>) -> Result<T, XgboostError> {
    Err(XgboostError::Model(message.into()))
}

/// How margins become predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Margins are the predictions (squared error, ranking, `binary:logitraw`, ...).
    Identity,
    /// Logistic sigmoid (`binary:logistic`, `reg:logistic`).
    Sigmoid,
    /// `exp` (`count:poisson`, `reg:gamma`, `reg:tweedie`, `survival:cox`, `survival:aft`).
    Exp,
    /// Softmax over the groups (`multi:softprob`).
    Softmax,
    /// Index of the largest margin (`multi:softmax`).
    ArgMax,
}

impl Transform {
    fn of_objective(name: &str) -> Result<Transform, XgboostError> {
        Ok(match name {
            "binary:logistic" | "reg:logistic" => Transform::Sigmoid,
            "count:poisson" | "reg:gamma" | "reg:tweedie" | "survival:cox" | "survival:aft" => Transform::Exp,
            "multi:softprob" => Transform::Softmax,
            "multi:softmax" => Transform::ArgMax,
            "binary:logitraw"
            | "binary:hinge"
            | "reg:squarederror"
            | "reg:linear"
            | "reg:squaredlogerror"
            | "reg:absoluteerror"
            | "reg:pseudohubererror"
            | "reg:quantileerror" => Transform::Identity,
            name if name.starts_with("rank:") => Transform::Identity,
            other => return model_error(format!("objective '{other}' is not supported")),
        })
    }
}

/// One regression tree in flat arrays.
#[derive(Debug, Clone)]
struct Tree {
    left: Vec<i32>,
    right: Vec<i32>,
    feature: Vec<u32>,
    threshold: Vec<f32>,
    default_left: Vec<bool>,
}

impl Tree {
    fn leaf(&self, row: &[f32]) -> f32 {
        let mut node = 0usize;
        loop {
            let left = self.left[node];
            if left < 0 {
                return self.threshold[node];
            }
            let value = row[self.feature[node] as usize];
            node = if value.is_nan() {
                if self.default_left[node] {
                    left as usize
                } else {
                    self.right[node] as usize
                }
            } else if value < self.threshold[node] {
                left as usize
            } else {
                self.right[node] as usize
            };
        }
    }
}

/// A loaded XGBoost model.
#[derive(Debug, Clone)]
pub struct XgboostModel {
    transform: Transform,
    groups: usize,
    features: usize,
    base_margin: Vec<f32>,
    trees: Vec<Tree>,
    tree_group: Vec<usize>,
    tree_weight: Vec<f32>,
    feature_names: Option<Vec<String>>,
}

fn field<'a>(value: &'a Value, path: &[&str]) -> Result<&'a Value, XgboostError> {
    let mut current = value;
    for key in path {
        current = match current.get(key) {
            Some(next) => next,
            None => return model_error(format!("missing field {}", path.join("."))),
        };
    }
    Ok(current)
}

fn numbers(value: &Value, name: &str) -> Result<Vec<f64>, XgboostError> {
    value
        .as_array()
        .ok_or_else(|| XgboostError::Model(format!("'{name}' is not a list")))?
        .iter()
        .map(|v| {
            v.as_f64()
                .ok_or_else(|| XgboostError::Model(format!("'{name}' holds {v}, not a number")))
        })
        .collect()
}

/// A number XGBoost writes as a string: `"5E-1"`, or `"[5E-1,2E-1]"` for one value per output.
fn number_list(text: &str) -> Result<Vec<f64>, XgboostError> {
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            part.trim()
                .parse::<f64>()
                .map_err(|_| XgboostError::Model(format!("bad number {part:?}")))
        })
        .collect()
}

/// Counts in a model file are checked before they size anything.
fn check_model_limit(name: &str, value: usize, limit: usize) -> Result<(), XgboostError> {
    if value > limit {
        return model_error(format!(
            "'{name}' is {value}, above the {limit} a servable model may have; the file is damaged or hostile"
        ));
    }
    Ok(())
}

fn text_integer(value: &Value, name: &str) -> Result<usize, XgboostError> {
    match value {
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| XgboostError::Model(format!("'{name}' is {text:?}"))),
        Value::Number(number) => number
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| XgboostError::Model(format!("'{name}' is {number}"))),
        other => model_error(format!("'{name}' is {other}")),
    }
}

fn parse_tree(value: &Value, features: usize) -> Result<Tree, XgboostError> {
    let integers = |name: &str| -> Result<Vec<i64>, XgboostError> {
        Ok(numbers(field(value, &[name])?, name)?
            .into_iter()
            .map(|v| v as i64)
            .collect())
    };
    let left = integers("left_children")?;
    let right = integers("right_children")?;
    let feature = integers("split_indices")?;
    let threshold = numbers(field(value, &["split_conditions"])?, "split_conditions")?;
    let default_left = integers("default_left")?;
    let nodes = left.len();
    if nodes == 0
        || [right.len(), feature.len(), threshold.len(), default_left.len()]
            .iter()
            .any(|l| *l != nodes)
    {
        return model_error("a tree's node arrays differ in length");
    }
    if let Some(types) = value.get("split_type").and_then(Value::as_array)
        && types.iter().any(|t| t.as_i64() != Some(0))
    {
        return model_error("categorical splits are not supported yet; one-hot encode the categories");
    }
    for node in 0..nodes {
        if left[node] >= 0 {
            let children_ok = [left[node], right[node]]
                .iter()
                .all(|c| *c > node as i64 && (*c as usize) < nodes);
            if !children_ok || feature[node] < 0 || feature[node] as usize >= features {
                return model_error(format!("node {node} points outside its tree or its features"));
            }
        }
    }
    Ok(Tree {
        left: left.iter().map(|v| *v as i32).collect(),
        right: right.iter().map(|v| *v as i32).collect(),
        feature: feature.iter().map(|v| (*v).max(0) as u32).collect(),
        threshold: threshold.iter().map(|v| *v as f32).collect(),
        default_left: default_left.iter().map(|v| *v != 0).collect(),
    })
}

impl XgboostModel {
    /// Reads a model file: JSON when the name ends in `.json`, UBJSON when it ends in `.ubj`, otherwise by content
    /// (MLflow saves XGBoost models as `model.xgb`).
    pub fn load(path: &Path) -> Result<XgboostModel, XgboostError> {
        let io = |e: std::io::Error| XgboostError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let bytes = std::fs::read(path).map_err(io)?;
        // UBJSON objects also open with '{', but then a length marker follows, never a quote or whitespace.
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        let looks_like_json =
            bytes.first() == Some(&b'{') && matches!(bytes.get(1), Some(b'"' | b' ' | b'\n' | b'\r' | b'\t' | b'}'));
        let document = if extension == "json" || (extension != "ubj" && looks_like_json) {
            serde_json::from_slice(&bytes).map_err(|e| XgboostError::Model(format!("not JSON: {e}")))?
        } else {
            crate::ubjson::decode(&bytes).map_err(|e| XgboostError::Model(e.to_string()))?
        };
        XgboostModel::from_document(&document)
    }

    /// Builds a model from a decoded model document.
    pub fn from_document(document: &Value) -> Result<XgboostModel, XgboostError> {
        let learner = field(document, &["learner"])?;
        let parameters = field(learner, &["learner_model_param"])?;
        let objective = field(learner, &["objective", "name"])?
            .as_str()
            .unwrap_or_default()
            .to_string();
        let transform = Transform::of_objective(&objective)?;
        let features = text_integer(field(parameters, &["num_feature"])?, "num_feature")?;
        let classes = text_integer(field(parameters, &["num_class"])?, "num_class")?;
        let targets = parameters
            .get("num_target")
            .map(|t| text_integer(t, "num_target"))
            .transpose()?
            .unwrap_or(1);
        let groups = classes.max(targets).max(1);
        check_model_limit("num_feature", features, crate::MAX_MODEL_FEATURES)?;
        check_model_limit("num_class and num_target", groups, crate::MAX_MODEL_OUTPUTS)?;
        let booster = field(learner, &["gradient_booster"])?;
        let (model, weights) = match booster.get("name").and_then(Value::as_str) {
            Some("gbtree") => (field(booster, &["model"])?, None),
            Some("dart") => (
                field(booster, &["gbtree", "model"])?,
                Some(numbers(field(booster, &["weight_drop"])?, "weight_drop")?),
            ),
            Some(other) => return model_error(format!("booster '{other}' is not supported (tree boosters only)")),
            None => return model_error("the gradient booster has no name"),
        };
        let trees: Vec<Tree> = field(model, &["trees"])?
            .as_array()
            .ok_or_else(|| XgboostError::Model("'trees' is not a list".into()))?
            .iter()
            .map(|tree| parse_tree(tree, features))
            .collect::<Result<_, _>>()?;
        let tree_group: Vec<usize> = numbers(field(model, &["tree_info"])?, "tree_info")?
            .into_iter()
            .map(|g| g as usize)
            .collect();
        if tree_group.len() != trees.len() || tree_group.iter().any(|g| *g >= groups) {
            return model_error("tree_info does not match the trees and output groups");
        }
        let tree_weight = match weights {
            Some(weights) if weights.len() == trees.len() => weights.into_iter().map(|w| w as f32).collect(),
            Some(_) => return model_error("dart weight_drop does not match the trees"),
            None => vec![1.0; trees.len()],
        };
        let scores = number_list(field(parameters, &["base_score"])?.as_str().unwrap_or("0.5"))?;
        let base: Vec<f64> = match scores.len() {
            1 => vec![scores[0]; groups],
            n if n == groups => scores,
            n => return model_error(format!("{n} base scores for {groups} outputs")),
        };
        // Multi-class base scores are stored as margins; single-output ones in the output space.
        let base_margin = base
            .into_iter()
            .map(|score| match transform {
                Transform::Sigmoid => -(1.0 / score - 1.0).ln(),
                Transform::Exp => score.ln(),
                _ => score,
            } as f32)
            .collect();
        let feature_names = learner
            .get("feature_names")
            .and_then(Value::as_array)
            .and_then(|names| {
                let names: Vec<String> = names.iter().filter_map(|n| n.as_str().map(str::to_string)).collect();
                (names.len() == features).then_some(names)
            });
        Ok(XgboostModel {
            transform,
            groups,
            features,
            base_margin,
            trees,
            tree_group,
            tree_weight,
            feature_names,
        })
    }

    /// Features each row must have.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Feature names recorded in the model, if any.
    pub fn feature_names(&self) -> Option<&[String]> {
        self.feature_names.as_deref()
    }

    /// Margins for rows given row-major (`rows.len()` a multiple of [`XgboostModel::features`]).
    pub fn predict_margins(&self, rows: &[f32]) -> Result<Vec<f32>, XgboostError> {
        if self.features == 0 || !rows.len().is_multiple_of(self.features) {
            return Err(XgboostError::Input(format!(
                "{} values do not make whole rows of {} features",
                rows.len(),
                self.features
            )));
        }
        let count = rows.len() / self.features;
        let mut margins = Vec::with_capacity(count * self.groups);
        for row in rows.chunks_exact(self.features) {
            let start = margins.len();
            margins.extend_from_slice(&self.base_margin);
            for ((tree, group), weight) in self.trees.iter().zip(&self.tree_group).zip(&self.tree_weight) {
                margins[start + group] += tree.leaf(row) * weight;
            }
        }
        Ok(margins)
    }

    /// Predictions: margins through the objective's transform (`multi:softprob` gives one probability per
    /// class, `multi:softmax` the class index).
    pub fn predict(&self, rows: &[f32]) -> Result<Vec<f32>, XgboostError> {
        let mut margins = self.predict_margins(rows)?;
        match self.transform {
            Transform::Identity => {}
            Transform::Sigmoid => margins.iter_mut().for_each(|m| *m = 1.0 / (1.0 + (-*m).exp())),
            Transform::Exp => margins.iter_mut().for_each(|m| *m = m.exp()),
            Transform::Softmax => margins.chunks_exact_mut(self.groups).for_each(softmax),
            Transform::ArgMax => {
                return Ok(margins
                    .chunks_exact(self.groups)
                    .map(|row| {
                        let mut best = 0;
                        for (i, value) in row.iter().enumerate() {
                            if *value > row[best] {
                                best = i;
                            }
                        }
                        best as f32
                    })
                    .collect());
            }
        }
        Ok(margins)
    }
}

/// XGBoost's softmax: subtract the largest margin, exponentiate, normalise, in single precision.
fn softmax(row: &mut [f32]) {
    let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for value in row.iter_mut() {
        *value = (*value - top).exp();
        sum += *value;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}
