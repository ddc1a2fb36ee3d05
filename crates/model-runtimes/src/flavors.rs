//! MLflow model directories served natively: the `xgboost` flavor (JSON or UBJSON model files) and the
//! `lightgbm` flavor for Booster models (text files), with the outputs `mlflow.pyfunc` gives for them:
//! class labels for XGBoost classifiers (probability > 0.5 for two classes, the most probable class otherwise),
//! values for regressors, and the booster's transformed predictions (one column per class for multi-class
//! boosters). Other flavors, including scikit-learn-API LightGBM models (saved with skops), need the Python
//! worker.

use loopline_model_runtime_api::tensor::{DataType, Tensor, TensorData};
use loopline_model_runtime_api::{
    DescriptorError, Model, ModelDescriptor, ModelMetadata, PredictError, TensorMetadata,
};

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
    metadata: ModelMetadata,
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
            let format = descriptor.flavor_field("xgboost", "model_format").unwrap_or("json");
            let width = model
                .predict(&vec![f32::NAN; model.features()])
                .map(|v| v.len())
                .unwrap_or(1);
            let (datatype, width) = if labels {
                (DataType::Int64, 1)
            } else {
                (DataType::Fp32, width)
            };
            let metadata = metadata(
                &format!("xgboost_{format}"),
                &feature_names,
                model.features(),
                DataType::Fp32,
                datatype,
                width,
            );
            return Ok(Some(NativeTreeModel {
                engine: Engine::Xgboost { model, labels },
                feature_names,
                metadata,
            }));
        }
        if let Some(path) = descriptor.flavor_data("lightgbm")? {
            if descriptor.flavor_field("lightgbm", "model_class") != Some("lightgbm.basic.Booster") {
                return Ok(None);
            }
            let model = LightgbmModel::load(&path).map_err(|e| NativeError::Model(e.to_string()))?;
            let feature_names = model.feature_names().to_vec();
            let metadata = metadata(
                "lightgbm_text",
                &feature_names,
                model.features(),
                DataType::Fp64,
                DataType::Fp64,
                model.classes(),
            );
            return Ok(Some(NativeTreeModel {
                engine: Engine::Lightgbm(model),
                feature_names,
                metadata,
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

    /// The feature matrix, row-major, from either one `[rows, features]` tensor or one tensor per feature
    /// (shape `[rows]` or `[rows, 1]`), matched by the model's feature names when it has them and by position
    /// otherwise. Columns the model does not read are ignored; NaN is a missing value.
    fn matrix(&self, inputs: &[Tensor]) -> Result<(Vec<f64>, usize), PredictError> {
        let features = self.features();
        let rows = loopline_model_runtime_api::tensor::request_rows(inputs).map_err(PredictError::Input)?;
        let cells = rows.checked_mul(features).ok_or_else(|| {
            PredictError::Input(format!(
                "{rows} rows of {features} features are more values than one request can hold"
            ))
        })?;
        let mut matrix = vec![0.0f64; cells];
        let numbers = |tensor: &Tensor| -> Result<(), PredictError> {
            if matches!(tensor.data, TensorData::Bytes(_)) {
                return Err(PredictError::Input(format!(
                    "input '{}' holds {}, not numbers",
                    tensor.name,
                    tensor.datatype.name()
                )));
            }
            Ok(())
        };
        if let [tensor] = inputs
            && tensor.shape.len() == 2
            && tensor.shape[1] == features
        {
            numbers(tensor)?;
            for (slot, index) in matrix.iter_mut().zip(0..) {
                *slot = tensor.data.number(index).unwrap_or(f64::NAN);
            }
            return Ok((matrix, rows));
        }
        let columns: Vec<&Tensor> = if self.feature_names.is_empty() {
            if inputs.len() != features {
                return Err(PredictError::Input(format!(
                    "the model reads {features} features; give one [rows, {features}] tensor or {features} columns, not {} inputs",
                    inputs.len()
                )));
            }
            inputs.iter().collect()
        } else {
            let mut missing = Vec::new();
            let found: Vec<&Tensor> = self
                .feature_names
                .iter()
                .enumerate()
                .filter_map(|(index, name)| {
                    let tensor =
                        loopline_model_runtime_api::tensor::position_of(inputs, name, index).map(|i| &inputs[i]);
                    if tensor.is_none() {
                        missing.push(name.as_str());
                    }
                    tensor
                })
                .collect();
            if !missing.is_empty() {
                let shown: Vec<&str> = missing.iter().take(10).copied().collect();
                return Err(PredictError::Input(format!(
                    "the input lacks {} of the model's {features} features: {shown:?}{}",
                    missing.len(),
                    if missing.len() > shown.len() { " ..." } else { "" }
                )));
            }
            found
        };
        for (position, tensor) in columns.into_iter().enumerate() {
            numbers(tensor)?;
            if tensor.row_width() != 1 {
                return Err(PredictError::Input(format!(
                    "input '{}' has shape {:?}; a feature column has one value per row",
                    tensor.name, tensor.shape
                )));
            }
            for row in 0..rows {
                matrix[row * features + position] = tensor.data.number(row).unwrap_or(f64::NAN);
            }
        }
        Ok((matrix, rows))
    }
}

fn metadata(
    platform: &str,
    names: &[String],
    features: usize,
    input: DataType,
    output: DataType,
    width: usize,
) -> ModelMetadata {
    let inputs = if names.is_empty() {
        vec![TensorMetadata {
            name: "input".to_string(),
            datatype: input,
            shape: vec![-1, features as i64],
        }]
    } else {
        names
            .iter()
            .map(|name| TensorMetadata {
                name: name.clone(),
                datatype: input,
                shape: vec![-1],
            })
            .collect()
    };
    let shape = if width > 1 { vec![-1, width as i64] } else { vec![-1] };
    ModelMetadata {
        platform: platform.to_string(),
        inputs,
        outputs: vec![TensorMetadata {
            name: OUTPUT.to_string(),
            datatype: output,
            shape,
        }],
    }
}

/// The name of the native models' one output.
pub const OUTPUT: &str = "prediction";

fn output(datatype: DataType, rows: usize, width: usize, data: TensorData) -> Result<Vec<Tensor>, PredictError> {
    let shape = if width > 1 { vec![rows, width] } else { vec![rows] };
    Tensor::new(OUTPUT, datatype, shape, data)
        .map(|t| vec![t])
        .map_err(PredictError::Internal)
}

impl Model for NativeTreeModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// Predicts a batch as `mlflow.pyfunc` would.
    fn predict(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, PredictError> {
        let (matrix, rows) = self.matrix(inputs)?;
        match &self.engine {
            Engine::Xgboost { model, labels } => {
                let single: Vec<f32> = matrix.iter().map(|v| *v as f32).collect();
                let values = model.predict(&single).map_err(|e| PredictError::Input(e.to_string()))?;
                let width = values.len() / rows.max(1);
                if !labels {
                    return output(DataType::Fp32, rows, width, TensorData::F32(values));
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
                output(DataType::Int64, rows, 1, TensorData::Int(labels))
            }
            Engine::Lightgbm(model) => {
                let values = model.predict(&matrix).map_err(|e| PredictError::Input(e.to_string()))?;
                output(DataType::Fp64, rows, model.classes(), TensorData::F64(values))
            }
        }
    }
}
