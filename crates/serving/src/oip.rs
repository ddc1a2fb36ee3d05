//! Open Inference Protocol v2 request and response bodies: JSON tensors (flat or nested `data`) and the
//! binary tensor data extension (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data`,
//! `binary_data_output`) that `tritonclient.http` uses by default.

use loopline_model_runtime_api::{DataType, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A decoded infer request.
#[derive(Debug)]
pub struct InferRequest {
    /// The caller's id, echoed back.
    pub id: Option<String>,
    /// Input tensors.
    pub inputs: Vec<Tensor>,
    /// Outputs asked for (all when empty), each with whether it goes back as binary.
    pub outputs: Vec<(String, bool)>,
    /// Whether outputs not listed go back as binary.
    pub binary_output: bool,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<RawInput>,
    #[serde(default)]
    outputs: Vec<RawOutput>,
}

#[derive(Deserialize)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    /// Kept as text until the datatype is known, then read straight into typed elements.
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

fn flag(parameters: &Option<Map<String, Value>>, key: &str) -> Option<bool> {
    parameters.as_ref()?.get(key)?.as_bool()
}

/// Decodes a request body; `header_length` is the `Inference-Header-Content-Length` header when given.
pub fn decode_request(body: &[u8], header_length: Option<usize>) -> Result<InferRequest, String> {
    let (json, mut binary) = match header_length {
        Some(length) if length > body.len() => {
            return Err(format!(
                "Inference-Header-Content-Length is {length} but the body has only {} bytes",
                body.len()
            ));
        }
        Some(length) => (&body[..length], &body[length..]),
        None => (body, &[][..]),
    };
    let raw: RawRequest = crate::python_json::parse(json, crate::python_json::AS_STRINGS)
        .map_err(|e| format!("the request is not a valid infer request: {e}"))?;
    if raw.inputs.is_empty() {
        return Err("the request has no inputs".to_string());
    }
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    let mut decoded_bytes = 0usize;
    for input in raw.inputs {
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
            format!(
                "input '{}' has datatype '{}', which is not one of BOOL, UINT8..UINT64, INT8..INT64, FP32, FP64, BYTES",
                input.name, input.datatype
            )
        })?;
        let shape: Vec<usize> = input
            .shape
            .iter()
            .map(|d| {
                usize::try_from(*d).map_err(|_| {
                    format!(
                        "input '{}' has a negative dimension in shape {:?}",
                        input.name, input.shape
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let count = declared_element_count(&input.name, &shape, body.len())?;
        // What the decoded tensors will hold in memory, before any of it is allocated: a 64 MB body of empty
        // strings would otherwise become over a gigabyte of string headers.
        let element_bytes = datatype.width().unwrap_or(std::mem::size_of::<Vec<u8>>());
        decoded_bytes = decoded_bytes.saturating_add(count.saturating_mul(element_bytes));
        if decoded_bytes > MAX_DECODED_BYTES {
            return Err(format!(
                "the request's tensors would take {decoded_bytes} bytes in memory, more than the {MAX_DECODED_BYTES} \
                 one request may; split it into smaller batches"
            ));
        }
        let binary_size = input
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
            .map(|v| {
                v.as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| format!("input '{}': binary_data_size must be a byte count", input.name))
            })
            .transpose()?;
        let data = match (binary_size, input.data) {
            (Some(size), None) => {
                if size > binary.len() {
                    return Err(format!(
                        "input '{}' declares {size} bytes of binary data but only {} remain in the body",
                        input.name,
                        binary.len()
                    ));
                }
                let (bytes, rest) = binary.split_at(size);
                binary = rest;
                from_binary(&input.name, datatype, count, bytes)?
            }
            (None, Some(raw)) => from_json(&input.name, datatype, count, raw.get())?,
            (Some(_), Some(_)) => return Err(format!("input '{}' has both data and binary_data_size", input.name)),
            (None, None) => return Err(format!("input '{}' has no data", input.name)),
        };
        inputs.push(Tensor::new(input.name, datatype, shape, data)?);
    }
    if !binary.is_empty() {
        return Err(format!(
            "the body holds {} bytes of binary data beyond what the inputs declare",
            binary.len()
        ));
    }
    let binary_output = flag(&raw.parameters, "binary_data_output").unwrap_or(false);
    let outputs = raw
        .outputs
        .into_iter()
        .map(|o| {
            let binary = flag(&o.parameters, "binary_data").unwrap_or(binary_output);
            (o.name, binary)
        })
        .collect();
    let id = match raw.id {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(other) => Some(other.to_string()),
    };
    Ok(InferRequest {
        id,
        inputs,
        outputs,
        binary_output,
    })
}

/// The most memory one request's decoded tensors may take.
pub const MAX_DECODED_BYTES: usize = 256 << 20;

/// The element count a shape declares, refused when it could not fit in the body: every element takes at
/// least one byte of JSON or binary data, and even a shape with a zero dimension may not declare more rows
/// or row width than that, since per-row work follows the other dimensions. Nothing is allocated from a
/// declared size before this check.
fn declared_element_count(name: &str, shape: &[usize], body_length: usize) -> Result<usize, String> {
    let declared = loopline_model_runtime_api::tensor::nonzero_dimension_product(shape);
    match declared {
        Some(product) if product <= body_length.max(1) => {
            Ok(loopline_model_runtime_api::tensor::element_count(shape).unwrap_or(0))
        }
        _ => Err(format!(
            "input '{name}' has shape {shape:?}, more elements than a {body_length}-byte request can hold"
        )),
    }
}

fn from_json(name: &str, datatype: DataType, count: usize, raw: &str) -> Result<TensorData, String> {
    let data = crate::oip_json_data::decode_data(name, datatype, raw, count)?;
    if data.len() != count {
        return Err(format!(
            "input '{name}' has {} values but its shape holds {count}",
            data.len()
        ));
    }
    Ok(data)
}

fn from_binary(name: &str, datatype: DataType, count: usize, bytes: &[u8]) -> Result<TensorData, String> {
    let Some(width) = datatype.width() else {
        // Each element has a four-byte length prefix.
        let mut items = Vec::with_capacity(count.min(bytes.len() / 4));
        let mut rest = bytes;
        while !rest.is_empty() {
            if items.len() == count {
                return Err(format!(
                    "input '{name}' has more BYTES elements than its shape's {count}"
                ));
            }
            if rest.len() < 4 {
                return Err(format!("input '{name}': a BYTES element is cut short"));
            }
            let length = u32::from_le_bytes(rest[..4].try_into().expect("four bytes")) as usize;
            if rest.len() < 4 + length {
                return Err(format!(
                    "input '{name}': a BYTES element claims {length} bytes past the end"
                ));
            }
            items.push(rest[4..4 + length].to_vec());
            rest = &rest[4 + length..];
        }
        if items.len() != count {
            return Err(format!(
                "input '{name}' has {} elements but its shape holds {count}",
                items.len()
            ));
        }
        return Ok(TensorData::Bytes(items));
    };
    let needed = count.checked_mul(width);
    if needed != Some(bytes.len()) {
        return Err(format!(
            "input '{name}' has {} bytes of binary data but its shape needs {} elements of {}",
            bytes.len(),
            count,
            datatype.name()
        ));
    }
    let chunks = bytes.chunks_exact(width);
    macro_rules! read {
        ($t:ty) => {
            chunks.map(|c| <$t>::from_le_bytes(c.try_into().expect("exact chunk")))
        };
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(bytes.iter().map(|b| *b != 0).collect()),
        DataType::Uint8 => TensorData::UInt(bytes.iter().map(|b| u64::from(*b)).collect()),
        DataType::Int8 => TensorData::Int(bytes.iter().map(|b| i64::from(*b as i8)).collect()),
        DataType::Uint16 => TensorData::UInt(read!(u16).map(u64::from).collect()),
        DataType::Uint32 => TensorData::UInt(read!(u32).map(u64::from).collect()),
        DataType::Uint64 => TensorData::UInt(read!(u64).collect()),
        DataType::Int16 => TensorData::Int(read!(i16).map(i64::from).collect()),
        DataType::Int32 => TensorData::Int(read!(i32).map(i64::from).collect()),
        DataType::Int64 => TensorData::Int(read!(i64).collect()),
        DataType::Fp32 => TensorData::F32(read!(f32).collect()),
        DataType::Fp64 => TensorData::F64(read!(f64).collect()),
        DataType::Bytes => unreachable!("handled above"),
    })
}

fn to_binary(data: &TensorData, datatype: DataType) -> Vec<u8> {
    let mut out = Vec::new();
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
        TensorData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Int(v) => v.iter().for_each(|x| match datatype {
            DataType::Int8 => out.push(*x as i8 as u8),
            DataType::Int16 => out.extend_from_slice(&(*x as i16).to_le_bytes()),
            DataType::Int32 => out.extend_from_slice(&(*x as i32).to_le_bytes()),
            _ => out.extend_from_slice(&x.to_le_bytes()),
        }),
        TensorData::UInt(v) => v.iter().for_each(|x| match datatype {
            DataType::Uint8 => out.push(*x as u8),
            DataType::Uint16 => out.extend_from_slice(&(*x as u16).to_le_bytes()),
            DataType::Uint32 => out.extend_from_slice(&(*x as u32).to_le_bytes()),
            _ => out.extend_from_slice(&x.to_le_bytes()),
        }),
        TensorData::Bytes(v) => v.iter().for_each(|b| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }),
    }
    out
}

/// Tensor elements as JSON (floats printed at their own precision; NaN as null).
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum JsonData<'a> {
    Bool(&'a [bool]),
    Int(&'a [i64]),
    UInt(&'a [u64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    Text(Vec<String>),
}

pub(crate) fn json_data(data: &TensorData) -> JsonData<'_> {
    match data {
        TensorData::Bool(v) => JsonData::Bool(v),
        TensorData::Int(v) => JsonData::Int(v),
        TensorData::UInt(v) => JsonData::UInt(v),
        TensorData::F32(v) => JsonData::F32(v),
        TensorData::F64(v) => JsonData::F64(v),
        TensorData::Bytes(v) => JsonData::Text(v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()),
    }
}

#[derive(Serialize)]
struct OutputJson<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputJson<'a>>,
}

/// An encoded response: the body and, when it carries binary data, the JSON header's length.
pub struct Encoded {
    /// The body.
    pub body: Vec<u8>,
    /// `Inference-Header-Content-Length` when binary data follows the JSON.
    pub header_length: Option<usize>,
}

/// Encodes outputs, keeping those asked for (all when none were) in binary or JSON as asked.
pub fn encode_response(
    model: &str,
    version: &str,
    request: &InferRequest,
    outputs: &[Tensor],
) -> Result<Encoded, String> {
    let chosen: Vec<(&Tensor, bool)> = if request.outputs.is_empty() {
        outputs.iter().map(|t| (t, request.binary_output)).collect()
    } else {
        request
            .outputs
            .iter()
            .map(|(name, binary)| {
                outputs
                    .iter()
                    .find(|t| &t.name == name)
                    .map(|t| (t, *binary))
                    .ok_or_else(|| {
                        let known: Vec<&str> = outputs.iter().map(|t| t.name.as_str()).collect();
                        format!("the model has no output '{name}'; its outputs are {known:?}")
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let mut binary = Vec::new();
    let mut json_outputs = Vec::with_capacity(chosen.len());
    for (tensor, as_binary) in chosen {
        let (parameters, data) = if as_binary {
            let bytes = to_binary(&tensor.data, tensor.datatype);
            let size = bytes.len();
            binary.extend_from_slice(&bytes);
            (Some(serde_json::json!({"binary_data_size": size})), None)
        } else {
            (None, Some(json_data(&tensor.data)))
        };
        json_outputs.push(OutputJson {
            name: &tensor.name,
            datatype: tensor.datatype.name(),
            shape: &tensor.shape,
            parameters,
            data,
        });
    }
    let mut body = serde_json::to_vec(&ResponseJson {
        model_name: model,
        model_version: version,
        id: request.id.as_deref(),
        outputs: json_outputs,
    })
    .map_err(|e| e.to_string())?;
    let header_length = (!binary.is_empty()).then_some(body.len());
    body.extend_from_slice(&binary);
    Ok(Encoded { body, header_length })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_inputs_may_be_flat_or_nested_and_are_checked_against_the_shape() {
        let body = br#"{"id":"r1","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,"NaN"]]}]}"#;
        let request = decode_request(body, None).unwrap();
        assert_eq!(request.id.as_deref(), Some("r1"));
        assert!(matches!(&request.inputs[0].data, TensorData::F32(v) if v[2] == 3.0 && v[3].is_nan()));
        // tritonclient's JSON tensors go through Python's json.dumps, which writes bare NaN and Infinity.
        let python = br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP64","data":[NaN,Infinity,-Infinity]}]}"#;
        let request = decode_request(python, None).unwrap();
        assert!(
            matches!(&request.inputs[0].data, TensorData::F64(v) if v[0].is_nan() && v[1] == f64::INFINITY && v[2] == f64::NEG_INFINITY)
        );
        let short = br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}"#;
        assert!(
            decode_request(short, None)
                .unwrap_err()
                .contains("has 3 values but its shape holds 4")
        );
        let typed = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[1.5]}]}"#;
        assert!(decode_request(typed, None).unwrap_err().contains("is not an integer"));
        let unknown = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP8","data":[1]}]}"#;
        assert!(decode_request(unknown, None).unwrap_err().contains("'FP8'"));
    }

    #[test]
    fn binary_inputs_and_outputs_round_trip() {
        let header = br#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP64","parameters":{"binary_data_size":16}},{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}],"parameters":{"binary_data_output":true}}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&1.5f64.to_le_bytes());
        body.extend_from_slice(&(-2.0f64).to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(b"hi");
        let request = decode_request(&body, Some(header.len())).unwrap();
        assert_eq!(request.inputs[0].data, TensorData::F64(vec![1.5, -2.0]));
        assert_eq!(request.inputs[1].data, TensorData::Bytes(vec![b"hi".to_vec()]));
        let output = Tensor::new("y", DataType::Int32, vec![2], TensorData::Int(vec![7, -1])).unwrap();
        let encoded = encode_response("m", "1", &request, &[output]).unwrap();
        let length = encoded.header_length.unwrap();
        let json: Value = serde_json::from_slice(&encoded.body[..length]).unwrap();
        assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&encoded.body[length..length + 4], &7i32.to_le_bytes());
        let truncated = &body[..body.len() - 1];
        assert!(decode_request(truncated, Some(header.len())).is_err());
    }

    #[test]
    fn declared_sizes_are_checked_before_anything_is_allocated() {
        let huge = br#"{"inputs":[{"name":"x","shape":[35184372088832],"datatype":"FP32","data":[1]}]}"#;
        assert!(decode_request(huge, None).unwrap_err().contains("more elements than"));
        let wrapping = br#"{"inputs":[{"name":"x","shape":[4294967296,4294967296,0],"datatype":"FP32","data":[]}]}"#;
        assert!(
            decode_request(wrapping, None)
                .unwrap_err()
                .contains("more elements than")
        );
        let empty_rows = br#"{"inputs":[{"name":"x","shape":[1099511627776,0],"datatype":"FP32","data":[]}]}"#;
        assert!(
            decode_request(empty_rows, None)
                .unwrap_err()
                .contains("more elements than")
        );
        let header = br#"{"inputs":[{"name":"s","shape":[35184372088832],"datatype":"BYTES","parameters":{"binary_data_size":4}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&0u32.to_le_bytes());
        assert!(
            decode_request(&body, Some(header.len()))
                .unwrap_err()
                .contains("more elements than")
        );
        let header = br#"{"inputs":[{"name":"x","shape":[4611686018427387904],"datatype":"FP64","parameters":{"binary_data_size":8}}]}"#;
        let mut body = header.to_vec();
        body.extend_from_slice(&1.0f64.to_le_bytes());
        assert!(decode_request(&body, Some(header.len())).is_err());
        let empty = br#"{"inputs":[{"name":"x","shape":[0,3],"datatype":"FP32","data":[]}]}"#;
        assert_eq!(decode_request(empty, None).unwrap().inputs[0].shape, vec![0, 3]);
    }
}
