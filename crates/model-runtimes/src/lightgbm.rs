//! LightGBM models read from LightGBM's text model files (`model_to_string` / `save_model`) and evaluated in
//! double precision as LightGBM's predictor does: numerical splits go left when `value <= threshold`, missing
//! values follow the node's missing type (none: NaN read as 0; zero: |value| ≤ 1e-35 takes the default side;
//! NaN: NaN takes the default side), categorical splits test the integer value against the node's bitset (NaN
//! and negative values go right); leaf
//! values are summed per class, averaged for random forests, then the objective's transform is applied.

use std::path::Path;

/// Why a model cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LightgbmError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The reason.
        message: String,
    },
    /// The text is not a LightGBM model we can evaluate.
    #[error("not a usable LightGBM model: {0}")]
    Model(String),
    /// Input of the wrong shape.
    #[error("{0}")]
    Input(String),
}

fn model_error<T>(message: impl Into<String>) -> Result<T, LightgbmError> {
    Err(LightgbmError::Model(message.into()))
}

const ZERO_THRESHOLD: f64 = 1e-35;
const CATEGORICAL: u8 = 1;
const DEFAULT_LEFT: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transform {
    Identity,
    Sigmoid(f64),
    Exp,
    Softmax,
    /// One-vs-all multi-class: a sigmoid per class.
    SigmoidPerClass(f64),
}

#[derive(Debug, Clone)]
struct Tree {
    feature: Vec<usize>,
    threshold: Vec<f64>,
    decision: Vec<u8>,
    left: Vec<i32>,
    right: Vec<i32>,
    leaf_value: Vec<f64>,
    category_bounds: Vec<usize>,
    category_bits: Vec<u32>,
}

impl Tree {
    fn next(&self, node: usize, value: f64) -> i32 {
        let decision = self.decision[node];
        let missing = (decision >> 2) & 3;
        let (left, right) = (self.left[node], self.right[node]);
        if decision & CATEGORICAL != 0 {
            // NaN and negative values are never in a category set.
            if value.is_nan() || value < 0.0 {
                return right;
            }
            let category = value as i64;
            let index = self.threshold[node] as usize;
            let (start, end) = (self.category_bounds[index], self.category_bounds[index + 1]);
            let word = (category / 32) as usize;
            let inside = word < end - start && (self.category_bits[start + word] >> (category % 32)) & 1 == 1;
            return if inside { left } else { right };
        }
        let value = if value.is_nan() && missing != 2 { 0.0 } else { value };
        if (missing == 1 && value.abs() <= ZERO_THRESHOLD) || (missing == 2 && value.is_nan()) {
            return if decision & DEFAULT_LEFT != 0 { left } else { right };
        }
        if value <= self.threshold[node] { left } else { right }
    }

    fn leaf(&self, row: &[f64]) -> f64 {
        if self.feature.is_empty() {
            return self.leaf_value[0];
        }
        let mut node = 0usize;
        loop {
            let next = self.next(node, row[self.feature[node]]);
            if next < 0 {
                return self.leaf_value[(!next) as usize];
            }
            node = next as usize;
        }
    }
}

/// A loaded LightGBM model.
#[derive(Debug, Clone)]
pub struct LightgbmModel {
    transform: Transform,
    classes: usize,
    features: usize,
    trees: Vec<Tree>,
    average: bool,
    feature_names: Vec<String>,
}

fn values<T: std::str::FromStr>(line: &str, name: &str) -> Result<Vec<T>, LightgbmError> {
    line.split_whitespace()
        .map(|part| {
            part.parse()
                .map_err(|_| LightgbmError::Model(format!("'{name}' holds {part:?}")))
        })
        .collect()
}

fn section_value<'a>(lines: &'a [(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    lines.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn parse_tree(lines: &[(&str, &str)], features: usize) -> Result<Tree, LightgbmError> {
    let get =
        |key: &str| section_value(lines, key).ok_or_else(|| LightgbmError::Model(format!("a tree has no '{key}'")));
    let leaves: usize = get("num_leaves")?
        .trim()
        .parse()
        .map_err(|_| LightgbmError::Model("bad num_leaves".into()))?;
    if section_value(lines, "is_linear").is_some_and(|v| v.trim() == "1") {
        return model_error("linear trees are not supported yet");
    }
    let leaf_value: Vec<f64> = values(get("leaf_value")?, "leaf_value")?;
    if leaves == 0 || leaf_value.len() != leaves {
        return model_error("a tree's leaf count does not match its leaf values");
    }
    if leaves == 1 {
        return Ok(Tree {
            feature: vec![],
            threshold: vec![],
            decision: vec![],
            left: vec![],
            right: vec![],
            leaf_value,
            category_bounds: vec![],
            category_bits: vec![],
        });
    }
    let feature: Vec<usize> = values(get("split_feature")?, "split_feature")?;
    let threshold: Vec<f64> = values(get("threshold")?, "threshold")?;
    let decision: Vec<u8> = values(get("decision_type")?, "decision_type")?;
    let left: Vec<i32> = values(get("left_child")?, "left_child")?;
    let right: Vec<i32> = values(get("right_child")?, "right_child")?;
    let internal = leaves - 1;
    if [feature.len(), threshold.len(), decision.len(), left.len(), right.len()]
        .iter()
        .any(|l| *l != internal)
    {
        return model_error("a tree's node arrays differ in length");
    }
    let categories: usize = section_value(lines, "num_cat")
        .map_or(Ok(0), |v| v.trim().parse())
        .map_err(|_| LightgbmError::Model("bad num_cat".into()))?;
    let (category_bounds, category_bits) = if categories > 0 {
        (
            values(get("cat_boundaries")?, "cat_boundaries")?,
            values(get("cat_threshold")?, "cat_threshold")?,
        )
    } else {
        (vec![], vec![])
    };
    for node in 0..internal {
        if feature[node] >= features {
            return model_error(format!("node {node} splits on feature {} of {features}", feature[node]));
        }
        for child in [left[node], right[node]] {
            let fits = if child < 0 {
                ((!child) as usize) < leaves
            } else {
                (child as usize) < internal && child as usize > node
            };
            if !fits {
                return model_error(format!("node {node} points outside its tree"));
            }
        }
        if decision[node] & CATEGORICAL != 0 {
            let index = threshold[node] as usize;
            let bounds_ok = index.checked_add(1).is_some_and(|next| next < category_bounds.len())
                && category_bounds[index] <= category_bounds[index + 1]
                && category_bounds[index + 1] <= category_bits.len();
            if !bounds_ok {
                return model_error(format!("node {node} names a category set the tree does not have"));
            }
        }
    }
    Ok(Tree {
        feature,
        threshold,
        decision,
        left,
        right,
        leaf_value,
        category_bounds,
        category_bits,
    })
}

fn transform_of(objective: &str) -> Result<Transform, LightgbmError> {
    let mut parts = objective.split_whitespace();
    let name = parts.next().unwrap_or_default();
    let parameter = |key: &str| -> f64 {
        parts
            .clone()
            .find_map(|p| p.strip_prefix(key).and_then(|v| v.parse().ok()))
            .unwrap_or(1.0)
    };
    Ok(match name {
        "binary" | "cross_entropy" | "xentropy" => Transform::Sigmoid(parameter("sigmoid:")),
        "multiclass" | "softmax" => Transform::Softmax,
        "multiclassova" | "multiclass_ova" | "ova" | "ovr" => Transform::SigmoidPerClass(parameter("sigmoid:")),
        "poisson" | "gamma" | "tweedie" => Transform::Exp,
        "regression" | "regression_l1" | "huber" | "fair" | "quantile" | "mape" | "lambdarank" | "rank_xendcg"
        | "custom" | "none" => Transform::Identity,
        other => return model_error(format!("objective '{other}' is not supported")),
    })
}

impl LightgbmModel {
    /// Reads a text model file.
    pub fn load(path: &Path) -> Result<LightgbmModel, LightgbmError> {
        let text = std::fs::read_to_string(path).map_err(|e| LightgbmError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        LightgbmModel::parse(&text)
    }

    /// Parses the text of a model.
    pub fn parse(text: &str) -> Result<LightgbmModel, LightgbmError> {
        let body = text.split("end of trees").next().unwrap_or_default();
        let mut blocks = body.split("\nTree=");
        let header: Vec<(&str, &str)> = blocks
            .next()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .collect();
        if !text.starts_with("tree") || section_value(&header, "version").is_none() {
            return model_error("it does not start with LightGBM's 'tree' header");
        }
        let number = |key: &str| -> Result<usize, LightgbmError> {
            section_value(&header, key)
                .ok_or_else(|| LightgbmError::Model(format!("the header has no '{key}'")))?
                .trim()
                .parse()
                .map_err(|_| LightgbmError::Model(format!("bad '{key}'")))
        };
        let classes = number("num_tree_per_iteration")?.max(1);
        let features = number("max_feature_idx")?
            .checked_add(1)
            .filter(|features| *features <= crate::MAX_MODEL_FEATURES)
            .ok_or_else(|| {
                LightgbmError::Model(format!(
                    "'max_feature_idx' is above the {} features a servable model may have; the file is damaged or hostile",
                    crate::MAX_MODEL_FEATURES
                ))
            })?;
        let transform = transform_of(section_value(&header, "objective").unwrap_or("regression"))?;
        let average = text.lines().any(|l| l.trim() == "average_output");
        let feature_names = section_value(&header, "feature_names")
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let trees: Vec<Tree> = blocks
            .map(|block| {
                let lines: Vec<(&str, &str)> = block.lines().skip(1).filter_map(|l| l.split_once('=')).collect();
                parse_tree(&lines, features)
            })
            .collect::<Result<_, _>>()?;
        if trees.is_empty() || !trees.len().is_multiple_of(classes) {
            return model_error(format!("{} trees for {classes} outputs per iteration", trees.len()));
        }
        Ok(LightgbmModel {
            transform,
            classes,
            features,
            trees,
            average,
            feature_names,
        })
    }

    /// Features each row must have.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Outputs per row (classes for multi-class models).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Feature names recorded in the model.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Raw scores (sums of leaf values, not averaged even for random forests, as LightGBM's `raw_score`) for
    /// rows given row-major.
    pub fn predict_raw(&self, rows: &[f64]) -> Result<Vec<f64>, LightgbmError> {
        if !rows.len().is_multiple_of(self.features) {
            return Err(LightgbmError::Input(format!(
                "{} values do not make whole rows of {} features",
                rows.len(),
                self.features
            )));
        }
        let mut scores = Vec::with_capacity(rows.len() / self.features * self.classes);
        for row in rows.chunks_exact(self.features) {
            let start = scores.len();
            scores.resize(start + self.classes, 0.0);
            for (index, tree) in self.trees.iter().enumerate() {
                scores[start + index % self.classes] += tree.leaf(row);
            }
        }
        Ok(scores)
    }

    /// Predictions: raw scores averaged over the iterations for random forests, then through the objective's
    /// transform.
    pub fn predict(&self, rows: &[f64]) -> Result<Vec<f64>, LightgbmError> {
        let mut scores = self.predict_raw(rows)?;
        if self.average {
            let iterations = (self.trees.len() / self.classes) as f64;
            scores.iter_mut().for_each(|s| *s /= iterations);
        }
        match self.transform {
            Transform::Identity => {}
            Transform::Sigmoid(scale) | Transform::SigmoidPerClass(scale) => {
                scores.iter_mut().for_each(|s| *s = 1.0 / (1.0 + (-scale * *s).exp()))
            }
            Transform::Exp => scores.iter_mut().for_each(|s| *s = s.exp()),
            Transform::Softmax => scores.chunks_exact_mut(self.classes).for_each(|row| {
                let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for value in row.iter_mut() {
                    *value = (*value - top).exp();
                    sum += *value;
                }
                row.iter_mut().for_each(|v| *v /= sum);
            }),
        }
        Ok(scores)
    }
}
