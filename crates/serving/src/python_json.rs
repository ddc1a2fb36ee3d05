//! Python's JSON extensions. `json.dumps` — and so `requests.post(url, json=...)` and tritonclient's JSON
//! tensors — writes missing and infinite floats as the bare words `NaN`, `Infinity` and `-Infinity`, which
//! `mlflow models serve` reads (Python's parser takes them) but strict JSON does not. A body that fails to parse
//! is rewritten once with those words, outside strings, replaced by values strict JSON can carry, and parsed
//! again; valid bodies never pay for it.

use std::borrow::Cow;

/// What each bare word becomes.
#[derive(Debug, Clone, Copy)]
pub struct Replacements {
    /// For `NaN`.
    pub nan: &'static str,
    /// For `Infinity`.
    pub infinity: &'static str,
    /// For `-Infinity`.
    pub negative_infinity: &'static str,
}

/// The words as strings (`"NaN"`, ...), as the v2 decoder reads them.
pub const AS_STRINGS: Replacements = Replacements {
    nan: "\"NaN\"",
    infinity: "\"Infinity\"",
    negative_infinity: "\"-Infinity\"",
};

/// The value a non-finite float's name stands for: `"NaN"`, `"Infinity"` or `"-Infinity"` (the words Python
/// writes, and the strings both protocols accept in number positions).
pub fn non_finite_word(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Parses `body` as JSON, accepting Python's bare non-finite words when strict parsing fails.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8], replacements: Replacements) -> Result<T, serde_json::Error> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(error) => match rewrite(body, replacements) {
            Cow::Owned(rewritten) => serde_json::from_slice(&rewritten).map_err(|_| error),
            Cow::Borrowed(_) => Err(error),
        },
    }
}

/// `body` with the bare words outside strings replaced; borrowed when there were none.
pub fn rewrite(body: &[u8], replacements: Replacements) -> Cow<'_, [u8]> {
    let words: [(&[u8], &str); 3] = [
        (b"-Infinity", replacements.negative_infinity),
        (b"Infinity", replacements.infinity),
        (b"NaN", replacements.nan),
    ];
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < body.len() {
        let byte = body[i];
        if in_string {
            match byte {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if let Some((word, replacement)) = words.iter().find(|(word, _)| body[i..].starts_with(word)) {
            let out = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 16));
            out.extend_from_slice(&body[copied..i]);
            out.extend_from_slice(replacement.as_bytes());
            i += word.len();
            copied = i;
            continue;
        }
        i += 1;
    }
    match out {
        Some(mut out) => {
            out.extend_from_slice(&body[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NULL_NAN: Replacements = Replacements {
        nan: "null",
        ..AS_STRINGS
    };

    #[test]
    fn bare_words_outside_strings_are_replaced() {
        let body = br#"{"data": [[NaN, 1.5, -Infinity], [Infinity, "NaN and Infinity", "a \" NaN"]]}"#;
        let rewritten = rewrite(body, NULL_NAN);
        assert_eq!(
            std::str::from_utf8(&rewritten).unwrap(),
            r#"{"data": [[null, 1.5, "-Infinity"], ["Infinity", "NaN and Infinity", "a \" NaN"]]}"#
        );
        let value: serde_json::Value = parse(body, AS_STRINGS).unwrap();
        assert_eq!(value["data"][0][0], "NaN");
        assert_eq!(value["data"][1][2], "a \" NaN");
    }

    #[test]
    fn strict_bodies_are_untouched_and_bad_ones_keep_their_error() {
        assert!(matches!(rewrite(br#"{"a": "NaN"}"#, AS_STRINGS), Cow::Borrowed(_)));
        let error = parse::<serde_json::Value>(br#"{"a": [1, 2"#, AS_STRINGS).unwrap_err();
        assert!(error.to_string().contains("EOF"), "{error}");
        // The words only help where a value may stand: a broken body stays broken, with its own error.
        let broken = parse::<serde_json::Value>(br#"{"a": NaN NaN}"#, AS_STRINGS).unwrap_err();
        assert!(broken.to_string().contains("expected"), "{broken}");
    }
}
