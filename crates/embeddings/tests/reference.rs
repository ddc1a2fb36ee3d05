//! all-MiniLM-L6-v2 against sentence-transformers: the token ids and embeddings sentence-transformers gave
//! for a set of hard texts (tests/compat/vectors/embedding_reference.json, made by the script beside it)
//! must come out of the Rust encoder, whole batch and one text at a time. The model comes from the Python
//! package that ships it, in LOOPLINE_PYTHON's environment (scripts/test.sh installs it), or from the
//! directory in LOOPLINE_EMBEDDINGS_MODEL.

use loopline_embeddings::SentenceEncoder;
use std::path::Path;

mod common;
use common::model_directory;

fn reference() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/vectors/embedding_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let norm_a = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let norm_b = b.iter().map(|x| x.powi(2)).sum::<f64>().sqrt();
    dot / (norm_a * norm_b)
}

#[test]
fn embeddings_equal_sentence_transformers() {
    let encoder = SentenceEncoder::load(&model_directory(), "all-MiniLM-L6-v2").unwrap();
    let reference = reference();
    assert_eq!(
        encoder.max_length() as u64,
        reference["max_seq_length"].as_u64().unwrap()
    );
    assert_eq!(encoder.dimensions(), 384);
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for (text, ids) in texts.iter().zip(reference["token_ids"].as_array().unwrap()) {
        let expected: Vec<u32> = ids
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(encoder.tokenize(text), expected, "token ids of {text:?}");
    }
    let expected: Vec<Vec<f64>> = reference["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
        .collect();
    let batch = encoder.embed(&texts, 2).unwrap();
    for (index, text) in texts.iter().enumerate() {
        let single = encoder.embed(&[text], 1).unwrap();
        for got in [&batch.vectors[index], &single.vectors[0]] {
            let similarity = cosine(got, &expected[index]);
            assert!(similarity > 1.0 - 1e-6, "{text:?}: cosine {similarity}");
            let largest = got
                .iter()
                .zip(&expected[index])
                .map(|(x, y)| (f64::from(*x) - y).abs())
                .fold(0.0, f64::max);
            assert!(largest < 2e-6, "{text:?}: a component differs by {largest}");
        }
        assert_eq!(batch.tokens[index], single.tokens[0]);
    }
}
