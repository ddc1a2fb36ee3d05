//! Universal Binary JSON (UBJSON, big-endian, with optimised typed containers), the format XGBoost writes for
//! `.ubj` model files, decoded into `serde_json::Value` so one model reader serves both formats.

use serde_json::{Map, Number, Value};

/// Why a UBJSON document could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid UBJSON at byte {offset}: {message}")]
pub struct UbjsonError {
    /// Where decoding stopped.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    /// Values decoded so far. Typed containers of null, true or false spend no byte per element, so without
    /// this budget a small file could declare far more values than it holds bytes.
    values: usize,
}

/// Containers nested deeper than this are refused (a hostile file cannot exhaust the stack).
const MAX_DEPTH: usize = 256;

impl<'a> Reader<'a> {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, UbjsonError> {
        Err(UbjsonError {
            offset: self.position,
            message: message.into(),
        })
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], UbjsonError> {
        match self.position.checked_add(count).filter(|end| *end <= self.bytes.len()) {
            Some(end) => {
                let slice = &self.bytes[self.position..end];
                self.position = end;
                Ok(slice)
            }
            None => self.fail(format!("needs {count} more bytes")),
        }
    }

    fn byte(&mut self) -> Result<u8, UbjsonError> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], UbjsonError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn integer(&mut self, marker: u8) -> Result<i64, UbjsonError> {
        Ok(match marker {
            b'i' => i8::from_be_bytes(self.array()?) as i64,
            b'U' => self.byte()? as i64,
            b'I' => i16::from_be_bytes(self.array()?) as i64,
            b'l' => i32::from_be_bytes(self.array()?) as i64,
            b'L' => i64::from_be_bytes(self.array()?),
            other => return self.fail(format!("expected an integer type, found {:?}", other as char)),
        })
    }

    fn length(&mut self) -> Result<usize, UbjsonError> {
        let marker = self.byte()?;
        let length = self.integer(marker)?;
        let remaining = self.bytes.len() - self.position;
        if length < 0 || length as usize > remaining {
            return self.fail(format!(
                "length {length} is impossible with {remaining} bytes left in the document"
            ));
        }
        Ok(length as usize)
    }

    fn string(&mut self) -> Result<String, UbjsonError> {
        let length = self.length()?;
        let bytes = self.take(length)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_string()),
            Err(_) => self.fail("a string is not UTF-8"),
        }
    }

    fn value_of(&mut self, marker: u8, depth: usize) -> Result<Value, UbjsonError> {
        self.values += 1;
        if self.values > self.bytes.len() {
            return self.fail(format!(
                "the document declares more values than its {} bytes can hold",
                self.bytes.len()
            ));
        }
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::from(self.integer(marker)?),
            b'd' => float(f32::from_be_bytes(self.array()?) as f64),
            b'D' => float(f64::from_be_bytes(self.array()?)),
            b'C' => Value::from((self.byte()? as char).to_string()),
            b'S' | b'H' => Value::from(self.string()?),
            b'[' => self.container(false, depth + 1)?,
            b'{' => self.container(true, depth + 1)?,
            other => return self.fail(format!("unknown type marker {:?}", other as char)),
        })
    }

    fn container(&mut self, object: bool, depth: usize) -> Result<Value, UbjsonError> {
        if depth > MAX_DEPTH {
            return self.fail("containers nested too deeply");
        }
        let mut element_type = None;
        let mut count = None;
        if self.peek() == Some(b'$') {
            self.position += 1;
            element_type = Some(self.byte()?);
            if self.peek() != Some(b'#') {
                return self.fail("a typed container must give its count");
            }
        }
        if self.peek() == Some(b'#') {
            self.position += 1;
            count = Some(self.length()?);
        }
        let mut items = Vec::new();
        let mut fields = Map::new();
        let mut index = 0;
        loop {
            match count {
                Some(total) if index == total => break,
                None if self.peek() == Some(if object { b'}' } else { b']' }) => {
                    self.position += 1;
                    break;
                }
                _ => {}
            }
            let key = if object { Some(self.string()?) } else { None };
            let marker = match element_type {
                Some(marker) => marker,
                None => self.byte()?,
            };
            let value = self.value_of(marker, depth)?;
            match key {
                Some(key) => {
                    fields.insert(key, value);
                }
                None => items.push(value),
            }
            index += 1;
        }
        Ok(if object {
            Value::Object(fields)
        } else {
            Value::Array(items)
        })
    }
}

fn float(value: f64) -> Value {
    Number::from_f64(value).map(Value::Number).unwrap_or(Value::Null)
}

/// Decodes one UBJSON document.
pub fn decode(bytes: &[u8]) -> Result<Value, UbjsonError> {
    let mut reader = Reader {
        bytes,
        position: 0,
        values: 0,
    };
    let marker = reader.byte()?;
    let value = reader.value_of(marker, 0)?;
    if reader.position != bytes.len() {
        return reader.fail("trailing bytes after the document");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plain_and_typed_containers() {
        // {"a": [1, 2.5f32], "b": [$U#i3 1 0 1], "s": "xy", "n": null}
        let mut bytes = vec![b'{'];
        bytes.extend([b'i', 1, b'a', b'[', b'i', 1, b'd']);
        bytes.extend(2.5f32.to_be_bytes());
        bytes.push(b']');
        bytes.extend([b'i', 1, b'b', b'[', b'$', b'U', b'#', b'i', 3, 1, 0, 1]);
        bytes.extend([b'i', 1, b's', b'S', b'i', 2, b'x', b'y']);
        bytes.extend([b'i', 1, b'n', b'Z', b'}']);
        let value = decode(&bytes).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a": [1, 2.5], "b": [1, 0, 1], "s": "xy", "n": null})
        );
    }

    #[test]
    fn refuses_truncated_and_hostile_input() {
        assert!(decode(b"[").is_err());
        assert!(decode(&[b'S', b'L', 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&vec![b'['; 10_000]).unwrap_err().message.contains("nested"));
        assert!(decode(b"ZZ").unwrap_err().message.contains("trailing"));
        // 200 typed arrays of 200 nulls each: 40,000 values from about 1,200 bytes.
        let mut nulls = vec![b'[', b'#', b'I', 0, 200];
        for _ in 0..200 {
            nulls.extend([b'[', b'$', b'Z', b'#', b'U', 200]);
        }
        assert!(decode(&nulls).unwrap_err().message.contains("more values than"));
        // A count larger than what is left of the document.
        let mut late = vec![b'[', b'#', b'U', 2, b'S', b'U', 3, b'a', b'b', b'c'];
        late.extend([b'[', b'$', b'U', b'#', b'U', 200, 1]);
        assert!(decode(&late).unwrap_err().message.contains("bytes left"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

        /// Arbitrary bytes, and bytes that open with containers and typed counts, decode or fail cleanly.
        #[test]
        fn arbitrary_documents_never_panic(
            opening in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b'['), proptest::strategy::Just(b'{'), proptest::strategy::Just(b'$'),
                proptest::strategy::Just(b'#'), proptest::strategy::Just(b'Z'), proptest::strategy::Just(b'L'),
            ], 0..16),
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let mut bytes = opening;
            bytes.extend(rest);
            let _ = decode(&bytes);
        }
    }
}
