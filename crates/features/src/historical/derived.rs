//! On-demand features in training sets: computed row by row on each output batch from the joined features and
//! the entity frame's request-field columns, after which the hidden inputs are dropped.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::FeatureError;
use crate::expression::{Kind, Scalar};
use crate::online::FeatureValue;
use crate::refs::{DerivedInput, FeatureSelection, is_hidden};
use crate::value_type::ValueType;

struct Plan {
    /// Each slot's column, kind, and for a request field its declared type (values narrowed to it).
    inputs: Vec<(usize, Kind, Option<ValueType>)>,
    expression: crate::expression::Expression,
    dtype: ValueType,
}

/// Turns the joined batch (entity columns, then every selected stored feature) into the output batch.
pub struct DerivedColumns {
    plans: Vec<Plan>,
    keep: Vec<usize>,
    schema: SchemaRef,
}

impl DerivedColumns {
    /// The plan for `joined` batches; `entities` names the entity frame (for messages).
    pub fn new(
        selection: &FeatureSelection,
        joined: &Schema,
        entity_columns: usize,
        entities: &std::path::Path,
    ) -> Result<DerivedColumns, FeatureError> {
        let mut fields: Vec<Field> = Vec::new();
        let mut keep = Vec::new();
        for (index, field) in joined.fields().iter().enumerate() {
            if index < entity_columns || !is_hidden(field.name()) {
                keep.push(index);
                fields.push(field.as_ref().clone());
            }
        }
        let mut plans = Vec::with_capacity(selection.derived.len());
        for derived in &selection.derived {
            let mut inputs = Vec::with_capacity(derived.inputs.len());
            for input in &derived.inputs {
                let (name, kind, within) = match input {
                    DerivedInput::Column(name, kind) => (name, *kind, entity_columns..joined.fields().len()),
                    DerivedInput::Request(name, kind) => (name, *kind, 0..entity_columns),
                };
                let narrow = match input {
                    DerivedInput::Request(name, _) => selection
                        .request_fields
                        .iter()
                        .find(|(f, _)| f == name)
                        .map(|(_, t)| *t),
                    DerivedInput::Column(..) => None,
                };
                let index = within
                    .clone()
                    .find(|i| joined.field(*i).name() == name)
                    .ok_or_else(|| FeatureError::EntityFrame {
                        path: entities.to_path_buf(),
                        message: format!(
                            "it has no column `{name}`, a request field that on-demand feature `{}` reads; add it \
                             to the entity frame",
                            derived.output
                        ),
                    })?;
                inputs.push((index, kind, narrow));
            }
            fields.push(Field::new(&derived.output, arrow_type(derived.dtype), true));
            plans.push(Plan {
                inputs,
                expression: derived.expression.clone(),
                dtype: derived.dtype,
            });
        }
        for (field, dtype) in &selection.request_fields {
            let column = joined.field_with_name(field).map_err(|_| FeatureError::EntityFrame {
                path: entities.to_path_buf(),
                message: format!("it has no column `{field}`, a request field the on-demand features read"),
            })?;
            if !dtype.accepts(column.data_type()) && column.data_type() != &DataType::Null {
                return Err(FeatureError::EntityFrame {
                    path: entities.to_path_buf(),
                    message: format!(
                        "its column `{field}` is {}, but request field `{field}` is declared {}",
                        column.data_type(),
                        dtype.name()
                    ),
                });
            }
        }
        Ok(DerivedColumns {
            plans,
            keep,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// The output schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The output columns for one joined batch.
    pub fn apply(&self, joined: &[ArrayRef], rows: usize) -> Result<Vec<ArrayRef>, FeatureError> {
        let mut out: Vec<ArrayRef> = self.keep.iter().map(|i| joined[*i].clone()).collect();
        for plan in &self.plans {
            let inputs = plan
                .inputs
                .iter()
                .map(|(index, kind, narrow)| canonical(&joined[*index], *kind, *narrow).map(|a| (a, *kind)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut slots = vec![Scalar::Null; inputs.len()];
            let mut values = Vec::with_capacity(rows);
            for row in 0..rows {
                for (slot, (array, kind)) in slots.iter_mut().zip(&inputs) {
                    *slot = scalar_at(array, row, *kind);
                }
                values.push(plan.expression.evaluate(&slots).into_feature(plan.dtype));
            }
            out.push(build(values, plan.dtype));
        }
        Ok(out)
    }
}

/// The Arrow type a computed feature is written as.
pub fn arrow_type(dtype: ValueType) -> DataType {
    match dtype {
        ValueType::Int32 => DataType::Int32,
        ValueType::Int64 => DataType::Int64,
        ValueType::Float32 => DataType::Float32,
        ValueType::Float64 => DataType::Float64,
        ValueType::Bool => DataType::Boolean,
        ValueType::String | ValueType::Bytes | ValueType::UnixTimestamp => DataType::Utf8,
    }
}

/// The column as the one Arrow type each kind is read from; a request field's values first narrowed to its
/// declared type (single precision, or Int32 with values out of range missing), as online.
fn canonical(array: &ArrayRef, kind: Kind, narrow: Option<ValueType>) -> Result<ArrayRef, FeatureError> {
    let failed = |e: arrow_schema::ArrowError| {
        FeatureError::io(
            "reading an input of an on-demand feature",
            std::path::Path::new("(joined batch)"),
            e,
        )
    };
    let array = match narrow {
        Some(ValueType::Float32) => arrow_cast::cast(array, &DataType::Float32).map_err(failed)?,
        Some(ValueType::Int32) => arrow_cast::cast(array, &DataType::Int32).map_err(failed)?,
        _ => array.clone(),
    };
    let target = match kind {
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Text => DataType::Utf8,
    };
    if array.data_type() == &target {
        return Ok(array);
    }
    arrow_cast::cast(&array, &target).map_err(failed)
}

fn scalar_at(array: &ArrayRef, row: usize, kind: Kind) -> Scalar {
    if array.is_null(row) {
        return Scalar::Null;
    }
    match kind {
        Kind::Int => Scalar::Int(array.as_primitive::<Int64Type>().value(row)),
        Kind::Float => Scalar::Float(array.as_primitive::<Float64Type>().value(row)),
        Kind::Bool => Scalar::Bool(array.as_boolean().value(row)),
        Kind::Text => Scalar::Text(array.as_string::<i32>().value(row).to_string()),
    }
}

fn build(values: Vec<FeatureValue>, dtype: ValueType) -> ArrayRef {
    macro_rules! column {
        ($builder:ty, $pattern:pat => $value:expr) => {{
            let mut builder = <$builder>::with_capacity(values.len());
            for value in values {
                match value {
                    $pattern => builder.append_value($value),
                    _ => builder.append_null(),
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    match dtype {
        ValueType::Int32 => column!(Int32Builder, FeatureValue::Int(v) => v as i32),
        ValueType::Int64 => column!(Int64Builder, FeatureValue::Int(v) => v),
        ValueType::Float32 => column!(Float32Builder, FeatureValue::Float32(v) => v),
        ValueType::Float64 => column!(Float64Builder, FeatureValue::Float64(v) => v),
        ValueType::Bool => column!(BooleanBuilder, FeatureValue::Bool(v) => v),
        _ => {
            let mut builder = StringBuilder::with_capacity(values.len(), values.len() * 8);
            for value in values {
                match value {
                    FeatureValue::Text(v) => builder.append_value(v),
                    _ => builder.append_null(),
                }
            }
            Arc::new(builder.finish())
        }
    }
}
