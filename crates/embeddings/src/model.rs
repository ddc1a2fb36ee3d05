//! A sentence-transformers model read from its directory: `config.json` (the BERT encoder's shape),
//! `model.safetensors`, `tokenizer.json`, `sentence_bert_config.json` (the sequence length), `modules.json`
//! and the pooling module's `config.json` (mean, CLS or max pooling; a `Normalize` module makes the
//! embeddings unit length).

use crate::EmbeddingError;
use crate::bert::{Bert, BertShape};
use crate::tokenizer::WordPiece;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// The largest weights file read.
const MAX_WEIGHTS_BYTES: u64 = 8 << 30;

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of every token's vector.
    Mean,
    /// The `[CLS]` token's vector.
    Cls,
    /// The largest value of each dimension over the tokens.
    Max,
}

/// A loaded sentence encoder.
pub struct SentenceEncoder {
    name: String,
    bert: Bert,
    tokenizer: WordPiece,
    max_length: usize,
    pooling: Pooling,
    normalize: bool,
}

/// A batch's embeddings and the tokens it used.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// One vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of each text after truncation, `[CLS]` and `[SEP]` included.
    pub tokens: Vec<usize>,
}

/// A regular file's bytes, at most `limit` of them (devices and pipes are refused: their size says nothing).
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, EmbeddingError> {
    use std::io::Read;
    let unreadable =
        |error: std::io::Error| EmbeddingError::Model(format!("{} cannot be read: {error}", path.display()));
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(EmbeddingError::Model(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let too_large = || EmbeddingError::Model(format!("{} is larger than the {limit} bytes read", path.display()));
    if metadata.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    std::fs::File::open(path)
        .and_then(|file| file.take(limit + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

fn read_json(path: &Path) -> Result<Value, EmbeddingError> {
    serde_json::from_slice(&read_limited(path, MAX_CONFIG_BYTES)?)
        .map_err(|error| EmbeddingError::Model(format!("{} is not JSON: {error}", path.display())))
}

fn number(config: &Value, key: &str, file: &Path) -> Result<usize, EmbeddingError> {
    config
        .get(key)
        .and_then(Value::as_u64)
        .filter(|value| (1..=1 << 20).contains(value))
        .map(|value| value as usize)
        .ok_or_else(|| EmbeddingError::Model(format!("{} has no usable '{key}'", file.display())))
}

impl SentenceEncoder {
    /// Reads the model in `directory`, naming it `name`.
    pub fn load(directory: &Path, name: &str) -> Result<SentenceEncoder, EmbeddingError> {
        let file = |name: &str| directory.join(name);
        let config_path = file("config.json");
        let config = read_json(&config_path)?;
        let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or_default();
        if !matches!(model_type, "bert") {
            return Err(EmbeddingError::Model(format!(
                "{} describes a '{model_type}' model; only BERT encoders (as all-MiniLM-L6-v2) are supported",
                config_path.display()
            )));
        }
        let activation = config.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu");
        if activation != "gelu" {
            return Err(EmbeddingError::Model(format!(
                "{}: the activation '{activation}' is not supported (only gelu)",
                config_path.display()
            )));
        }
        let shape = BertShape {
            hidden: number(&config, "hidden_size", &config_path)?,
            heads: number(&config, "num_attention_heads", &config_path)?,
            layers: number(&config, "num_hidden_layers", &config_path)?,
            intermediate: number(&config, "intermediate_size", &config_path)?,
            max_positions: number(&config, "max_position_embeddings", &config_path)?,
            vocabulary: number(&config, "vocab_size", &config_path)?,
        };
        let epsilon = config.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(1e-12);
        if !(epsilon > 0.0 && epsilon <= 0.1) {
            return Err(EmbeddingError::Model(format!(
                "{}: layer_norm_eps {epsilon} is not a small positive number",
                config_path.display()
            )));
        }
        let tokenizer_path = file("tokenizer.json");
        let tokenizer_text = String::from_utf8(read_limited(&tokenizer_path, MAX_CONFIG_BYTES)?)
            .map_err(|_| EmbeddingError::Model(format!("{} is not UTF-8", tokenizer_path.display())))?;
        let tokenizer = WordPiece::from_json(&tokenizer_text, &tokenizer_path.display().to_string())?;
        if tokenizer.vocabulary_size() > shape.vocabulary {
            return Err(EmbeddingError::Model(format!(
                "{} has ids up to {}, more than the model's vocabulary of {}",
                tokenizer_path.display(),
                tokenizer.vocabulary_size(),
                shape.vocabulary
            )));
        }
        let sentence_config = file("sentence_bert_config.json");
        let max_length = if sentence_config.exists() {
            number(&read_json(&sentence_config)?, "max_seq_length", &sentence_config)?
        } else {
            shape.max_positions
        }
        .min(shape.max_positions);
        let (pooling, normalize) = modules(directory, shape.hidden)?;
        let weights_path = file("model.safetensors");
        let weights = crate::safetensors::read(
            &read_limited(&weights_path, MAX_WEIGHTS_BYTES)?,
            &weights_path.display().to_string(),
        )?;
        let bert = Bert::new(shape, epsilon, weights, &weights_path.display().to_string())?;
        Ok(SentenceEncoder {
            name: name.to_string(),
            bert,
            tokenizer,
            max_length,
            pooling,
            normalize,
        })
    }

    /// The name the model is served under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Length of its vectors.
    pub fn dimensions(&self) -> usize {
        self.bert.shape().hidden
    }

    /// Longest sequence (in tokens) it reads; longer texts are cut, as sentence-transformers does.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// How many tokens `text` is, however long (without `[CLS]` and `[SEP]`; the model reads at most
    /// [`SentenceEncoder::max_length`] less those two).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text, usize::MAX).len() - 2
    }

    /// The token ids of `text` as the model reads it.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, self.max_length)
    }

    /// Embeds `texts` in one batch on up to `threads` threads.
    pub fn embed(&self, texts: &[&str], threads: usize) -> Result<Embedded, EmbeddingError> {
        let sequences: Vec<Vec<u32>> = texts.iter().map(|text| self.tokenize(text)).collect();
        self.embed_tokens(&sequences, threads)
    }

    /// Embeds sequences already tokenized.
    pub fn embed_tokens(&self, sequences: &[Vec<u32>], threads: usize) -> Result<Embedded, EmbeddingError> {
        if sequences.iter().any(Vec::is_empty) {
            return Err(EmbeddingError::Input("a sequence has no tokens".into()));
        }
        let hidden = self.dimensions();
        let states = self.bert.encode(sequences, threads)?;
        let mut vectors = Vec::with_capacity(sequences.len());
        let mut offset = 0;
        for sequence in sequences {
            let rows = &states[offset * hidden..(offset + sequence.len()) * hidden];
            offset += sequence.len();
            let mut vector = match self.pooling {
                Pooling::Cls => rows[..hidden].to_vec(),
                Pooling::Mean => {
                    let mut sums = vec![0.0f64; hidden];
                    for row in rows.chunks_exact(hidden) {
                        sums.iter_mut()
                            .zip(row)
                            .for_each(|(sum, value)| *sum += f64::from(*value));
                    }
                    sums.iter().map(|sum| (sum / sequence.len() as f64) as f32).collect()
                }
                Pooling::Max => rows
                    .chunks_exact(hidden)
                    .fold(vec![f32::NEG_INFINITY; hidden], |mut top, row| {
                        top.iter_mut().zip(row).for_each(|(top, value)| *top = top.max(*value));
                        top
                    }),
            };
            if self.normalize {
                let norm = vector.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
                if norm > 0.0 {
                    vector.iter_mut().for_each(|v| *v = (f64::from(*v) / norm) as f32);
                }
            }
            if vector.iter().any(|value| !value.is_finite()) {
                return Err(EmbeddingError::Model(format!(
                    "the model {} gave values that are not finite numbers: its weights are damaged",
                    self.name
                )));
            }
            vectors.push(vector);
        }
        Ok(Embedded {
            vectors,
            tokens: sequences.iter().map(Vec::len).collect(),
        })
    }
}

/// The pooling and whether the vectors are normalised, from `modules.json` (mean pooling and no normalising
/// when there is none, as a bare Transformers checkpoint is read by sentence-transformers).
fn modules(directory: &Path, hidden: usize) -> Result<(Pooling, bool), EmbeddingError> {
    let path = directory.join("modules.json");
    if !path.exists() {
        return Ok((Pooling::Mean, false));
    }
    let modules = read_json(&path)?;
    let modules = modules
        .as_array()
        .ok_or_else(|| EmbeddingError::Model(format!("{} is not a list of modules", path.display())))?;
    let kind = |module: &Value| {
        module
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let mut pooling = Pooling::Mean;
    let mut normalize = false;
    for module in modules {
        match kind(module).as_str() {
            "Transformer" => {}
            "Normalize" => normalize = true,
            "Pooling" => {
                let folder = module.get("path").and_then(Value::as_str).unwrap_or_default();
                pooling = pooling_of(&confined(directory, folder)?.join("config.json"), hidden)?;
            }
            other => {
                return Err(EmbeddingError::Model(format!(
                    "{}: the module '{other}' is not supported (Transformer, Pooling and Normalize are)",
                    path.display()
                )));
            }
        }
    }
    Ok((pooling, normalize))
}

/// `folder` inside `directory`, refusing paths that climb out of it.
fn confined(directory: &Path, folder: &str) -> Result<PathBuf, EmbeddingError> {
    let relative = Path::new(folder);
    if relative
        .components()
        .any(|part| !matches!(part, std::path::Component::Normal(_)))
    {
        return Err(EmbeddingError::Model(format!(
            "modules.json names the folder '{folder}', which is not inside the model's directory"
        )));
    }
    // A symbolic link inside the directory may not lead out of it either.
    let outside = || {
        EmbeddingError::Model(format!(
            "modules.json names the folder '{folder}', which leads outside the model's directory"
        ))
    };
    let base = directory.canonicalize().map_err(|_| outside())?;
    let joined = directory.join(relative);
    match joined.canonicalize() {
        Ok(resolved) if resolved.starts_with(&base) => Ok(resolved),
        Ok(_) => Err(outside()),
        Err(error) => Err(EmbeddingError::Model(format!("{}: {error}", joined.display()))),
    }
}

fn pooling_of(path: &Path, hidden: usize) -> Result<Pooling, EmbeddingError> {
    let config = read_json(path)?;
    if let Some(width) = config.get("word_embedding_dimension")
        && width.as_u64() != Some(hidden as u64)
    {
        return Err(EmbeddingError::Model(format!(
            "{}: word_embedding_dimension {width} is not the encoder's hidden size {hidden}",
            path.display()
        )));
    }
    let on = |key: &str| config.get(key).and_then(Value::as_bool) == Some(true);
    let modes: Vec<Pooling> = [
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_max_tokens", Pooling::Max),
    ]
    .into_iter()
    .filter(|(key, _)| on(key))
    .map(|(_, mode)| mode)
    .collect();
    let unsupported = [
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ]
    .into_iter()
    .find(|key| on(key));
    match (modes.as_slice(), unsupported) {
        ([mode], None) => Ok(*mode),
        _ => Err(EmbeddingError::Model(format!(
            "{}: exactly one of mean, CLS or max pooling must be on",
            path.display()
        ))),
    }
}
