//! MLflow model directories served natively: the `xgboost` flavor (JSON or UBJSON model files) and the
//! `lightgbm` flavor for Booster models (text files), with the outputs `mlflow.pyfunc` gives for them:
//! class labels for XGBoost classifiers (probability > 0.5 for two classes, the most probable class otherwise),
//! values for regressors, and the booster's transformed predictions (one column per class for multi-class
//! boosters). Other flavors, including scikit-learn-API LightGBM models (saved with skops), need the Python
//! worker.

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use loopline_model_runtime_api::{DescriptorError, ModelDescriptor};

use crate::lightgbm::LightgbmModel;
use crate::xgboost::XgboostModel;

/// Why a model cannot be loaded or run natively.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NativeError {
    /// The model directory is unusable.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// The model file is unusable.
    #[error("{0}")]
    Model(String),
    /// The input does not fit the model.
    #[error("{0}")]
    Input(String),
}

/// Predictions, row-major with `width` values per row.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Single-precision values (XGBoost).
    Float32 {
        /// Values.
        values: Vec<f32>,
        /// Values per row.
        width: usize,
    },
    /// Double-precision values (LightGBM).
    Float64 {
        /// Values.
        values: Vec<f64>,
        /// Values per row.
        width: usize,
    },
    /// Class labels.
    Labels {
        /// Labels.
        values: Vec<i64>,
    },
}

#[derive(Debug, Clone)]
enum Engine {
    Xgboost { model: XgboostModel, labels: bool },
    Lightgbm(LightgbmModel),
}

/// A tree model from an MLflow model directory, evaluated natively.
#[derive(Debug, Clone)]
pub struct NativeTreeModel {
    engine: Engine,
    feature_names: Vec<String>,
}

impl NativeTreeModel {
    /// Loads the model if a native backend serves its flavors; `Ok(None)` when it needs the Python worker.
    pub fn load(descriptor: &ModelDescriptor) -> Result<Option<NativeTreeModel>, NativeError> {
        if let Some(path) = descriptor.flavor_data("xgboost")? {
            let class = descriptor
                .flavor_field("xgboost", "model_class")
                .unwrap_or("xgboost.core.Booster");
            let labels = match class {
                "xgboost.sklearn.XGBClassifier" | "xgboost.sklearn.XGBRFClassifier" => true,
                "xgboost.core.Booster"
                | "xgboost.sklearn.XGBRegressor"
                | "xgboost.sklearn.XGBRFRegressor"
                | "xgboost.sklearn.XGBRanker" => false,
                _ => return Ok(None),
            };
            let model = XgboostModel::load(&path).map_err(|e| NativeError::Model(e.to_string()))?;
            let feature_names = model.feature_names().map(<[String]>::to_vec).unwrap_or_default();
            return Ok(Some(NativeTreeModel {
                engine: Engine::Xgboost { model, labels },
                feature_names,
            }));
        }
        if let Some(path) = descriptor.flavor_data("lightgbm")? {
            if descriptor.flavor_field("lightgbm", "model_class") != Some("lightgbm.basic.Booster") {
                return Ok(None);
            }
            let model = LightgbmModel::load(&path).map_err(|e| NativeError::Model(e.to_string()))?;
            let feature_names = model.feature_names().to_vec();
            return Ok(Some(NativeTreeModel {
                engine: Engine::Lightgbm(model),
                feature_names,
            }));
        }
        Ok(None)
    }

    /// Features the model reads, by name when it recorded names.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    fn features(&self) -> usize {
        match &self.engine {
            Engine::Xgboost { model, .. } => model.features(),
            Engine::Lightgbm(model) => model.features(),
        }
    }

    /// The feature matrix, row-major: columns by the model's feature names when the batch has them all,
    /// otherwise by position; nulls become NaN (missing).
    fn matrix(&self, batch: &RecordBatch) -> Result<Vec<f64>, NativeError> {
        let features = self.features();
        let by_name = !self.feature_names.is_empty()
            && self
                .feature_names
                .iter()
                .all(|name| batch.schema().index_of(name).is_ok());
        let indices: Vec<usize> = if by_name {
            self.feature_names
                .iter()
                .map(|name| batch.schema().index_of(name).expect("checked"))
                .collect()
        } else if batch.num_columns() == features {
            (0..features).collect()
        } else {
            let missing: Vec<&String> = self
                .feature_names
                .iter()
                .filter(|name| batch.schema().index_of(name).is_err())
                .collect();
            return Err(NativeError::Input(format!(
                "the model reads {features} features{}; the input has {} columns",
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(" and the input lacks {missing:?}")
                },
                batch.num_columns()
            )));
        };
        let rows = batch.num_rows();
        let mut matrix = vec![0.0f64; rows * features];
        for (position, index) in indices.into_iter().enumerate() {
            let column = batch.column(index);
            let numeric =
                column.data_type().is_numeric() || matches!(column.data_type(), DataType::Boolean | DataType::Null);
            let numbers = numeric
                .then(|| arrow_cast::cast(column, &DataType::Float64))
                .transpose()
                .ok()
                .flatten()
                .ok_or_else(|| {
                    NativeError::Input(format!(
                        "column '{}' holds {}, not numbers",
                        batch.schema().field(index).name(),
                        column.data_type()
                    ))
                })?;
            let numbers = numbers.as_primitive::<Float64Type>();
            for row in 0..rows {
                matrix[row * features + position] = if numbers.is_valid(row) {
                    numbers.value(row)
                } else {
                    f64::NAN
                };
            }
        }
        Ok(matrix)
    }

    /// Predicts a batch as `mlflow.pyfunc` would.
    pub fn predict(&self, batch: &RecordBatch) -> Result<Predictions, NativeError> {
        let matrix = self.matrix(batch)?;
        match &self.engine {
            Engine::Xgboost { model, labels } => {
                let single: Vec<f32> = matrix.iter().map(|v| *v as f32).collect();
                let values = model.predict(&single).map_err(|e| NativeError::Input(e.to_string()))?;
                let width = values.len() / batch.num_rows().max(1);
                if !labels {
                    return Ok(Predictions::Float32 { values, width });
                }
                let labels = if width == 1 {
                    values.iter().map(|p| i64::from(*p > 0.5)).collect()
                } else {
                    values
                        .chunks_exact(width)
                        .map(|row| {
                            let mut best = 0;
                            for (class, value) in row.iter().enumerate() {
                                if *value > row[best] {
                                    best = class;
                                }
                            }
                            best as i64
                        })
                        .collect()
                };
                Ok(Predictions::Labels { values: labels })
            }
            Engine::Lightgbm(model) => {
                let values = model.predict(&matrix).map_err(|e| NativeError::Input(e.to_string()))?;
                Ok(Predictions::Float64 {
                    values,
                    width: model.classes(),
                })
            }
        }
    }
}
