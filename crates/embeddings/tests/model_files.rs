//! A model directory is untrusted input: damaged or hostile files are refused with a message naming the file,
//! never a panic, a hang on a pipe, memory taken by a device, or vectors of NaN.

use loopline_embeddings::SentenceEncoder;
use std::path::Path;

mod common;
use common::model_directory;

/// A copy of the model's small files, the weights linked, with `change` applied; the load's error.
fn refused(change: impl FnOnce(&Path)) -> String {
    let original = model_directory();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model");
    std::fs::create_dir_all(copy.join("1_Pooling")).unwrap();
    for name in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        std::fs::copy(original.join(name), copy.join(name)).unwrap();
    }
    std::os::unix::fs::symlink(original.join("model.safetensors"), copy.join("model.safetensors")).unwrap();
    assert!(SentenceEncoder::load(&copy, "m").is_ok(), "the unchanged copy loads");
    change(&copy);
    match SentenceEncoder::load(&copy, "m") {
        Ok(_) => panic!("a damaged model was loaded"),
        Err(error) => error.to_string(),
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, value.to_string()).unwrap();
}

#[test]
fn hostile_model_files_are_refused_by_name() {
    let error = refused(|dir| edit_json(&dir.join("config.json"), |c| c["layer_norm_eps"] = (-1.0).into()));
    assert!(error.contains("layer_norm_eps"), "{error}");
    let error = refused(|dir| {
        edit_json(&dir.join("1_Pooling/config.json"), |c| {
            c["word_embedding_dimension"] = 768.into()
        })
    });
    assert!(error.contains("word_embedding_dimension"), "{error}");
    let error = refused(|dir| {
        std::fs::remove_file(dir.join("config.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("config.json")).unwrap();
    });
    assert!(error.contains("config.json is not a regular file"), "{error}");
    let error = refused(|dir| {
        std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
        assert!(
            std::process::Command::new("mkfifo")
                .arg(dir.join("tokenizer.json"))
                .status()
                .unwrap()
                .success()
        );
    });
    assert!(error.contains("tokenizer.json is not a regular file"), "{error}");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("config.json"),
        r#"{"pooling_mode_mean_tokens": true}"#,
    )
    .unwrap();
    let error = refused(|dir| {
        std::fs::remove_dir_all(dir.join("1_Pooling")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.join("1_Pooling")).unwrap();
    });
    assert!(error.contains("leads outside the model's directory"), "{error}");
    // A NaN in one weight.
    let error = refused(|dir| {
        let weights = dir.join("model.safetensors");
        let mut bytes = std::fs::read(&weights).unwrap();
        let header_length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_length]).unwrap();
        let start = header["encoder.layer.5.output.LayerNorm.weight"]["data_offsets"][0]
            .as_u64()
            .unwrap() as usize;
        let at = 8 + header_length + start;
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::remove_file(&weights).unwrap();
        std::fs::write(&weights, bytes).unwrap();
    });
    assert!(
        error.contains("encoder.layer.5.output.LayerNorm.weight") && error.contains("not finite"),
        "{error}"
    );
}
