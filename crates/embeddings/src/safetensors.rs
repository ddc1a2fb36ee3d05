//! Reading float32 tensors from a `.safetensors` file: an eight-byte little-endian header length, a JSON header
//! naming each tensor's dtype, shape and byte range, then the data. The file is untrusted input: the header's
//! length is bounded before it is read, every shape's size is computed without overflow and must equal its
//! byte range, and every range must lie inside the data.

use crate::EmbeddingError;
use std::collections::HashMap;

/// The largest header read (real ones are tens of kilobytes).
const MAX_HEADER_BYTES: u64 = 16 << 20;
/// The most dimensions a tensor may have.
const MAX_RANK: usize = 8;

/// A tensor's shape and float32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Its dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f32>,
}

/// The float32 tensors of a safetensors file's bytes, by name (tensors of other dtypes are skipped: the
/// encoder needs none).
pub fn read(bytes: &[u8], file: &str) -> Result<HashMap<String, Tensor>, EmbeddingError> {
    let bad = |problem: String| EmbeddingError::Model(format!("{file} is not a usable safetensors file: {problem}"));
    let length_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|head| head.try_into().ok())
        .ok_or_else(|| bad("it is shorter than its header's length".into()))?;
    let header_length = u64::from_le_bytes(length_bytes);
    if header_length > MAX_HEADER_BYTES || header_length > (bytes.len() - 8) as u64 {
        return Err(bad(format!("its header claims {header_length} bytes")));
    }
    let header_end = 8 + header_length as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..header_end]).map_err(|error| bad(format!("its header: {error}")))?;
    let data = &bytes[header_end..];
    // Every tensor's bytes (of any dtype) lie inside the data and apart from the others', so no range is
    // read twice into memory.
    let mut ranges: Vec<(usize, usize, &str)> = Vec::new();
    for (name, entry) in &header {
        if name == "__metadata__" {
            continue;
        }
        let offsets = entry
            .get("data_offsets")
            .and_then(|value| value.as_array())
            .filter(|pair| pair.len() == 2)
            .and_then(|pair| Some((pair[0].as_u64()? as usize, pair[1].as_u64()? as usize)))
            .ok_or_else(|| bad(format!("tensor '{name}' has no usable data_offsets")))?;
        if offsets.0 > offsets.1 || offsets.1 > data.len() {
            return Err(bad(format!(
                "tensor '{name}' claims bytes {}..{} of {}",
                offsets.0,
                offsets.1,
                data.len()
            )));
        }
        ranges.push((offsets.0, offsets.1, name));
    }
    ranges.sort_unstable();
    if let Some(pair) = ranges.windows(2).find(|pair| pair[1].0 < pair[0].1) {
        return Err(bad(format!("tensors '{}' and '{}' share bytes", pair[0].2, pair[1].2)));
    }
    let mut tensors = HashMap::new();
    for (name, entry) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = entry.get("dtype").and_then(|value| value.as_str()).unwrap_or_default();
        if dtype != "F32" {
            continue;
        }
        let shape: Vec<usize> = entry
            .get("shape")
            .and_then(|value| value.as_array())
            .filter(|dims| dims.len() <= MAX_RANK)
            .and_then(|dims| dims.iter().map(|dim| dim.as_u64().map(|dim| dim as usize)).collect())
            .ok_or_else(|| bad(format!("tensor '{name}' has no usable shape")))?;
        let offsets: Vec<usize> = entry
            .get("data_offsets")
            .and_then(|value| value.as_array())
            .filter(|pair| pair.len() == 2)
            .and_then(|pair| pair.iter().map(|at| at.as_u64().map(|at| at as usize)).collect())
            .ok_or_else(|| bad(format!("tensor '{name}' has no usable data_offsets")))?;
        let (start, end) = (offsets[0], offsets[1]);
        let count = shape
            .iter()
            .try_fold(1usize, |product, dim| product.checked_mul(*dim))
            .ok_or_else(|| bad(format!("tensor '{name}' has a shape too large")))?;
        if start > end || end > data.len() || count.checked_mul(4) != Some(end - start) {
            return Err(bad(format!(
                "tensor '{name}' of shape {shape:?} claims bytes {start}..{end} of {}",
                data.len()
            )));
        }
        let values = data[start..end]
            .chunks_exact(4)
            .map(|word| f32::from_le_bytes([word[0], word[1], word[2], word[3]]))
            .collect();
        tensors.insert(name, Tensor { shape, values });
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn float_tensors_are_read_and_others_skipped() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, -4.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .chain([0; 8])
            .collect();
        let header = r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},
            "ids":{"dtype":"I64","shape":[1],"data_offsets":[16,24]}}"#;
        let tensors = read(&file(header, &data), "m").unwrap();
        assert_eq!(tensors.len(), 1);
        assert_eq!(
            tensors["w"],
            Tensor {
                shape: vec![2, 2],
                values: vec![1.0, 2.0, 3.0, -4.5]
            }
        );
    }

    #[test]
    fn lying_headers_are_refused() {
        let data = [0u8; 16];
        for header in [
            r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,20]}}"#,
            r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
            r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#,
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[8,4]}}"#,
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"i":{"dtype":"I64","shape":[1],"data_offsets":[8,40]}}"#,
            r#"{"w":{"dtype":"F32","shape":"4","data_offsets":[0,16]}}"#,
            r#"{"w":{"dtype":"F32","shape":[4]}}"#,
            "not json",
        ] {
            assert!(read(&file(header, &data), "m").is_err(), "{header}");
        }
        let mut claims_more = file("{}", &data);
        claims_more[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(
            read(&claims_more, "m")
                .unwrap_err()
                .to_string()
                .contains("header claims")
        );
        assert!(read(&[1, 2, 3], "m").is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read(&bytes, "m");
        }
    }
}
