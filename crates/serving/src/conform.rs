//! Inputs checked against the model signature before they reach a model, as MLflow's scoring server does:
//! required columns present, no columns the model does not know, values of the declared type (numbers are
//! cast to the declared width; NaN is refused where the declared type is an integer or boolean), and tensors
//! of the declared dtype and fixed dimensions. Errors name the field.

use loopline_model_runtime_api::tensor::position_of;
use loopline_model_runtime_api::{ColumnType, DataType, Schema, Signature, Tensor, TensorData, TensorSpec};

/// Checks and casts `inputs` to the signature's inputs; without a signature they pass unchanged.
pub fn conform(signature: Option<&Signature>, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
    if inputs.iter().any(|t| t.rows() == 0) {
        return Err("the request has no rows".to_string());
    }
    match signature.and_then(|s| s.inputs.as_ref()) {
        None => Ok(inputs),
        Some(Schema::Columns(columns)) => conform_columns(columns, inputs),
        Some(Schema::Tensors(specs)) => conform_tensors(specs, inputs),
    }
}

fn conform_columns(
    columns: &[loopline_model_runtime_api::ColumnSpec],
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, String> {
    // One matrix holding every column by position.
    if let [tensor] = inputs.as_slice()
        && tensor.shape.len() == 2
        && (columns.len() > 1 || tensor.shape[1] == 1)
    {
        if tensor.shape[1] != columns.len() {
            return Err(format!(
                "input '{}' has {} columns per row but the model's signature has {} columns",
                tensor.name,
                tensor.shape[1],
                columns.len()
            ));
        }
        if matches!(tensor.data, TensorData::Bytes(_))
            && columns
                .iter()
                .any(|c| !matches!(c.kind, ColumnType::String | ColumnType::Binary))
        {
            return Err(format!(
                "input '{}' holds text but the model's columns are numeric",
                tensor.name
            ));
        }
        return Ok(inputs);
    }
    let named = columns.iter().all(|c| c.name.is_some());
    if !named {
        if inputs.len() != columns.len() {
            return Err(format!(
                "the model takes {} unnamed columns; the request has {}",
                columns.len(),
                inputs.len()
            ));
        }
        return columns
            .iter()
            .zip(inputs)
            .map(|(spec, tensor)| cast_column(&spec.kind, tensor))
            .collect();
    }
    let extra: Vec<&str> = inputs
        .iter()
        .enumerate()
        .filter(|(index, t)| {
            let at_hint = columns.get(*index).and_then(|c| c.name.as_deref()) == Some(t.name.as_str());
            !at_hint && !columns.iter().any(|c| c.name.as_deref() == Some(t.name.as_str()))
        })
        .map(|(_, t)| t.name.as_str())
        .collect();
    if !extra.is_empty() {
        let known: Vec<&str> = columns.iter().filter_map(|c| c.name.as_deref()).collect();
        return Err(format!(
            "the request has columns the model's signature does not know: {extra:?}; it takes {known:?}"
        ));
    }
    let positions: Vec<Option<usize>> = columns
        .iter()
        .enumerate()
        .map(|(index, spec)| position_of(&inputs, spec.name.as_deref().expect("all named"), index))
        .collect();
    let mut inputs: Vec<Option<Tensor>> = inputs.into_iter().map(Some).collect();
    let mut conformed = Vec::with_capacity(columns.len());
    let mut missing = Vec::new();
    for (spec, position) in columns.iter().zip(positions) {
        match position.and_then(|p| inputs[p].take()) {
            Some(tensor) => conformed.push(cast_column(&spec.kind, tensor)?),
            None if spec.required => missing.push(spec.name.as_deref().expect("all named")),
            None => {}
        }
    }
    if !missing.is_empty() {
        return Err(format!("the request lacks required columns {missing:?}"));
    }
    Ok(conformed)
}

fn cast_column(kind: &ColumnType, tensor: Tensor) -> Result<Tensor, String> {
    let name = tensor.name.clone();
    let bad = |what: &str| {
        format!(
            "column '{name}' must hold {what} values; it holds {}",
            tensor.datatype.name()
        )
    };
    let target = match kind {
        ColumnType::Double => DataType::Fp64,
        ColumnType::Float => DataType::Fp32,
        ColumnType::Long | ColumnType::Integer => DataType::Int64,
        ColumnType::Boolean => DataType::Bool,
        ColumnType::String | ColumnType::Binary => {
            return match tensor.data {
                TensorData::Bytes(_) => Ok(tensor),
                _ => Err(bad("text")),
            };
        }
        ColumnType::Datetime | ColumnType::Other(_) => return Ok(tensor),
    };
    cast(tensor, target).map_err(|problem| format!("column '{name}': {problem}"))
}

fn conform_tensors(specs: &[TensorSpec], inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
    if specs.len() == 1 && inputs.len() == 1 {
        return conform_tensor(&specs[0], inputs.into_iter().next().expect("one"));
    }
    let mut conformed = Vec::with_capacity(specs.len());
    let mut inputs: Vec<Option<Tensor>> = inputs.into_iter().map(Some).collect();
    for spec in specs {
        let name = spec.name.as_deref().unwrap_or_default();
        let slot = inputs
            .iter_mut()
            .find(|t| t.as_ref().is_some_and(|t| t.name == name))
            .ok_or_else(|| format!("the request lacks input '{name}'"))?;
        conformed.extend(conform_tensor(spec, slot.take().expect("found"))?);
    }
    if let Some(extra) = inputs.into_iter().flatten().next() {
        return Err(format!("the model's signature has no input '{}'", extra.name));
    }
    Ok(conformed)
}

fn conform_tensor(spec: &TensorSpec, tensor: Tensor) -> Result<Vec<Tensor>, String> {
    let name = tensor.name.clone();
    if spec.shape.len() != tensor.shape.len() {
        return Err(format!(
            "input '{name}' has shape {:?}; the model expects {:?}",
            tensor.shape, spec.shape
        ));
    }
    for (want, got) in spec.shape.iter().zip(&tensor.shape) {
        if *want >= 0 && *want as usize != *got {
            return Err(format!(
                "input '{name}' has shape {:?}; the model expects {:?}",
                tensor.shape, spec.shape
            ));
        }
    }
    let Some(target) = DataType::of_numpy(&spec.dtype) else {
        return Ok(vec![tensor]);
    };
    cast(tensor, target)
        .map(|t| vec![t])
        .map_err(|problem| format!("input '{name}': {problem}"))
}

/// Casts numeric data to `target`; text only to text; refuses NaN and fractions for integer targets.
fn cast(tensor: Tensor, target: DataType) -> Result<Tensor, String> {
    let Tensor {
        name,
        shape,
        data,
        datatype,
    } = tensor;
    let from = datatype.name();
    let data = match (target, data) {
        (DataType::Bytes, data @ TensorData::Bytes(_)) => data,
        (DataType::Bytes, _) => return Err(format!("expected text, got {from}")),
        (_, TensorData::Bytes(_)) => return Err(format!("expected {}, got text", target.name())),
        (DataType::Fp64, TensorData::F64(v)) => TensorData::F64(v),
        (DataType::Fp32, TensorData::F32(v)) => TensorData::F32(v),
        (DataType::Bool, TensorData::Bool(v)) => TensorData::Bool(v),
        (DataType::Fp64, data) => TensorData::F64((0..data.len()).map(|i| data.number(i).expect("numeric")).collect()),
        (DataType::Fp32, data) => TensorData::F32(
            (0..data.len())
                .map(|i| data.number(i).expect("numeric") as f32)
                .collect(),
        ),
        (DataType::Bool, data) => TensorData::Bool(
            (0..data.len())
                .map(|i| match data.number(i).expect("numeric") {
                    0.0 => Ok(false),
                    1.0 => Ok(true),
                    other => Err(format!("value {other} is not a boolean")),
                })
                .collect::<Result<_, _>>()?,
        ),
        (target, TensorData::Int(v)) if target.is_integer() => TensorData::Int(v),
        (target, TensorData::UInt(v)) if target.is_integer() => TensorData::UInt(v),
        (_, data) => TensorData::Int(
            (0..data.len())
                .map(|i| {
                    let value = data.number(i).expect("numeric");
                    if value.is_nan() {
                        Err("NaN (a missing value) where the signature declares an integer".to_string())
                    } else if value.fract() != 0.0 || !value.is_finite() {
                        Err(format!("value {value} is not an integer"))
                    } else {
                        Ok(value as i64)
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Tensor {
        name,
        datatype: target,
        shape,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopline_model_runtime_api::ColumnSpec;

    fn signature(columns: &[(&str, ColumnType, bool)]) -> Signature {
        Signature {
            inputs: Some(Schema::Columns(
                columns
                    .iter()
                    .map(|(name, kind, required)| ColumnSpec {
                        name: Some(name.to_string()),
                        kind: kind.clone(),
                        required: *required,
                    })
                    .collect(),
            )),
            ..Signature::default()
        }
    }

    fn floats(name: &str, values: Vec<f64>) -> Tensor {
        Tensor::new(name, DataType::Fp64, vec![values.len()], TensorData::F64(values)).unwrap()
    }

    #[test]
    fn columns_are_checked_by_name_and_cast() {
        let sig = signature(&[
            ("a", ColumnType::Float, true),
            ("b", ColumnType::Long, true),
            ("c", ColumnType::Double, false),
        ]);
        let ok = conform(Some(&sig), vec![floats("b", vec![2.0]), floats("a", vec![1.5])]).unwrap();
        assert_eq!(ok[0].data, TensorData::F32(vec![1.5]));
        assert_eq!(ok[1].data, TensorData::Int(vec![2]));
        let missing = conform(Some(&sig), vec![floats("a", vec![1.0])]).unwrap_err();
        assert!(missing.contains("lacks required columns [\"b\"]"), "{missing}");
        let extra = conform(
            Some(&sig),
            vec![floats("a", vec![1.0]), floats("b", vec![1.0]), floats("z", vec![1.0])],
        )
        .unwrap_err();
        assert!(extra.contains("[\"z\"]"), "{extra}");
        let nan = conform(Some(&sig), vec![floats("a", vec![1.0]), floats("b", vec![f64::NAN])]).unwrap_err();
        assert!(nan.contains("column 'b'") && nan.contains("NaN"), "{nan}");
        let text = Tensor::new("a", DataType::Bytes, vec![1], TensorData::Bytes(vec![b"x".to_vec()])).unwrap();
        let wrong = conform(Some(&sig), vec![text, floats("b", vec![1.0])]).unwrap_err();
        assert!(wrong.contains("column 'a'"), "{wrong}");
        assert!(
            conform(Some(&sig), vec![floats("a", vec![]), floats("b", vec![])])
                .unwrap_err()
                .contains("no rows")
        );
    }

    #[test]
    fn tensors_are_checked_for_shape_and_type() {
        let sig = Signature {
            inputs: Some(Schema::Tensors(vec![TensorSpec {
                name: None,
                dtype: "float32".to_string(),
                shape: vec![-1, 2],
            }])),
            ..Signature::default()
        };
        let good = Tensor::new("x", DataType::Fp64, vec![1, 2], TensorData::F64(vec![1.0, 2.0])).unwrap();
        assert_eq!(conform(Some(&sig), vec![good]).unwrap()[0].datatype, DataType::Fp32);
        let wide = Tensor::new("x", DataType::Fp64, vec![1, 3], TensorData::F64(vec![1.0, 2.0, 3.0])).unwrap();
        assert!(conform(Some(&sig), vec![wide]).unwrap_err().contains("expects [-1, 2]"));
    }
}
