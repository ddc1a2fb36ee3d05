//! A BERT encoder's forward pass on the CPU, in float32, for inference only.
//!
//! The sequences of a batch are laid end to end instead of padded to the longest: every layer but attention
//! works token by token, and attention runs within each sequence. That is what padding with an attention
//! mask computes (masked positions get zero weight), without the wasted rows.

use crate::EmbeddingError;
use crate::matmul::{Packed, matmul};
use crate::safetensors::Tensor;
use std::collections::HashMap;

/// A BERT model's shape, from its `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BertShape {
    /// Width of every token's vector.
    pub hidden: usize,
    /// Attention heads per layer.
    pub heads: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Positions the model has embeddings for.
    pub max_positions: usize,
    /// Entries of the vocabulary.
    pub vocabulary: usize,
}

struct Linear {
    weight: Packed,
    bias: Vec<f32>,
}

impl Linear {
    fn apply(&self, input: &[f32], threads: usize) -> Vec<f32> {
        let rows = input.len() / self.weight.k();
        let mut out = vec![0.0; rows * self.bias.len()];
        matmul(input, &self.weight, Some(&self.bias), &mut out, threads);
        out
    }
}

struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    epsilon: f64,
}

impl LayerNorm {
    fn apply(&self, values: &mut [f32]) {
        crate::activations::layer_norm(values, &self.weight, &self.bias, self.epsilon as f32);
    }
}

struct Layer {
    /// Queries, keys and values in one product (`3 × hidden` outputs per token).
    query_key_value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// A BERT encoder's weights.
pub struct Bert {
    shape: BertShape,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// Takes tensors out of a checkpoint by name, checking each one's shape.
struct Weights<'a> {
    tensors: &'a mut HashMap<String, Tensor>,
    prefix: &'static str,
    file: &'a str,
}

impl Weights<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EmbeddingError> {
        let full = format!("{}{name}", self.prefix);
        let tensor = self
            .tensors
            .remove(&full)
            .ok_or_else(|| EmbeddingError::Model(format!("{} has no float32 tensor '{full}'", self.file)))?;
        if tensor.values.iter().any(|value| !value.is_finite()) {
            return Err(EmbeddingError::Model(format!(
                "{}: tensor '{full}' holds values that are not finite numbers",
                self.file
            )));
        }
        if tensor.shape != shape {
            return Err(EmbeddingError::Model(format!(
                "{}: tensor '{full}' has shape {:?}, the model's configuration needs {shape:?}",
                self.file, tensor.shape
            )));
        }
        Ok(tensor.values)
    }

    fn linear(&mut self, name: &str, outputs: usize, inputs: usize) -> Result<Linear, EmbeddingError> {
        Ok(Linear {
            weight: Packed::from_transposed(&self.take(&format!("{name}.weight"), &[outputs, inputs])?, inputs),
            bias: self.take(&format!("{name}.bias"), &[outputs])?,
        })
    }

    /// Several `width × width` linear layers as one, their outputs side by side.
    fn stacked(&mut self, names: &[&str], width: usize) -> Result<Linear, EmbeddingError> {
        let mut weight = Vec::with_capacity(names.len() * width * width);
        let mut bias = Vec::with_capacity(names.len() * width);
        for name in names {
            weight.extend(self.take(&format!("{name}.weight"), &[width, width])?);
            bias.extend(self.take(&format!("{name}.bias"), &[width])?);
        }
        Ok(Linear {
            weight: Packed::from_transposed(&weight, width),
            bias,
        })
    }

    fn norm(&mut self, name: &str, width: usize, epsilon: f64) -> Result<LayerNorm, EmbeddingError> {
        Ok(LayerNorm {
            weight: self.take(&format!("{name}.weight"), &[width])?,
            bias: self.take(&format!("{name}.bias"), &[width])?,
            epsilon,
        })
    }
}

impl Bert {
    /// The encoder from a checkpoint's tensors (named as Hugging Face's `BertModel` names them, with or
    /// without a `bert.` prefix).
    pub fn new(
        shape: BertShape,
        epsilon: f64,
        mut tensors: HashMap<String, Tensor>,
        file: &str,
    ) -> Result<Bert, EmbeddingError> {
        if shape.hidden == 0 || shape.heads == 0 || !shape.hidden.is_multiple_of(shape.heads) {
            return Err(EmbeddingError::Model(format!(
                "a hidden size of {} cannot be split into {} attention heads",
                shape.hidden, shape.heads
            )));
        }
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let mut weights = Weights {
            tensors: &mut tensors,
            prefix,
            file,
        };
        let (hidden, intermediate) = (shape.hidden, shape.intermediate);
        let word = weights.take("embeddings.word_embeddings.weight", &[shape.vocabulary, hidden])?;
        let position = weights.take("embeddings.position_embeddings.weight", &[shape.max_positions, hidden])?;
        let full = format!("{prefix}embeddings.token_type_embeddings.weight");
        let token_type = match weights.tensors.get(&full).map(|tensor| tensor.shape.clone()) {
            Some(dims) if dims.len() == 2 && dims[0] >= 1 && dims[1] == hidden => {
                weights.take("embeddings.token_type_embeddings.weight", &dims)?[..hidden].to_vec()
            }
            _ => vec![0.0; hidden],
        };
        let embedding_norm = weights.norm("embeddings.LayerNorm", hidden, epsilon)?;
        let layers = (0..shape.layers)
            .map(|index| {
                let name = |part: &str| format!("encoder.layer.{index}.{part}");
                Ok(Layer {
                    query_key_value: weights.stacked(
                        &[
                            &name("attention.self.query"),
                            &name("attention.self.key"),
                            &name("attention.self.value"),
                        ],
                        hidden,
                    )?,
                    attention_output: weights.linear(&name("attention.output.dense"), hidden, hidden)?,
                    attention_norm: weights.norm(&name("attention.output.LayerNorm"), hidden, epsilon)?,
                    intermediate: weights.linear(&name("intermediate.dense"), intermediate, hidden)?,
                    output: weights.linear(&name("output.dense"), hidden, intermediate)?,
                    output_norm: weights.norm(&name("output.LayerNorm"), hidden, epsilon)?,
                })
            })
            .collect::<Result<Vec<_>, EmbeddingError>>()?;
        Ok(Bert {
            shape,
            word,
            position,
            token_type,
            embedding_norm,
            layers,
        })
    }

    /// The model's shape.
    pub fn shape(&self) -> BertShape {
        self.shape
    }

    /// The last layer's vectors of every token of every sequence, the sequences end to end
    /// (`Σ lengths × hidden`). Each sequence must be at most `max_positions` long and use ids within the
    /// vocabulary (the tokenizer guarantees both; they are checked again here).
    pub fn encode(&self, sequences: &[Vec<u32>], threads: usize) -> Result<Vec<f32>, EmbeddingError> {
        for sequence in sequences {
            if sequence.len() > self.shape.max_positions {
                return Err(EmbeddingError::Input(format!(
                    "a sequence of {} tokens is longer than the model's {} positions",
                    sequence.len(),
                    self.shape.max_positions
                )));
            }
            if let Some(id) = sequence.iter().find(|id| **id as usize >= self.shape.vocabulary) {
                return Err(EmbeddingError::Input(format!(
                    "token id {id} is outside the vocabulary"
                )));
            }
        }
        let groups = groups(sequences, threads);
        if groups.len() <= 1 {
            return Ok(self.encode_checked(sequences, threads));
        }
        // Several sequences and cores: each core runs whole sequences through every layer on its own.
        let parts: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let running: Vec<_> = groups
                .into_iter()
                .map(|group| scope.spawn(move || self.encode_checked(group, 1)))
                .collect();
            running
                .into_iter()
                .map(|part| part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        });
        Ok(parts.concat())
    }

    fn encode_checked(&self, sequences: &[Vec<u32>], threads: usize) -> Vec<f32> {
        let hidden = self.shape.hidden;
        let total: usize = sequences.iter().map(Vec::len).sum();
        let mut states = Vec::with_capacity(total * hidden);
        for sequence in sequences {
            for (position, id) in sequence.iter().enumerate() {
                let id = *id as usize;
                let word = &self.word[id * hidden..(id + 1) * hidden];
                let position = &self.position[position * hidden..(position + 1) * hidden];
                states.extend(
                    word.iter()
                        .zip(position)
                        .zip(&self.token_type)
                        .map(|((w, p), t)| w + p + t),
                );
            }
        }
        self.embedding_norm.apply(&mut states);
        let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
        for layer in &self.layers {
            states = self.layer(layer, states, &lengths, threads);
        }
        states
    }

    fn layer(&self, layer: &Layer, states: Vec<f32>, lengths: &[usize], threads: usize) -> Vec<f32> {
        let projected = layer.query_key_value.apply(&states, threads);
        let mut context = vec![0.0; states.len()];
        let hidden = self.shape.hidden;
        let mut offset = 0;
        for &length in lengths {
            let span = offset * hidden..(offset + length) * hidden;
            let rows = offset * 3 * hidden..(offset + length) * 3 * hidden;
            self.attend(&projected[rows], &mut context[span]);
            offset += length;
        }
        let mut attended = layer.attention_output.apply(&context, threads);
        attended.iter_mut().zip(&states).for_each(|(out, input)| *out += input);
        layer.attention_norm.apply(&mut attended);
        let mut inner = layer.intermediate.apply(&attended, threads);
        crate::activations::gelu_in_place(&mut inner);
        let mut out = layer.output.apply(&inner, threads);
        out.iter_mut().zip(&attended).for_each(|(out, input)| *out += input);
        layer.output_norm.apply(&mut out);
        out
    }

    /// Attention of one sequence's tokens: `projected` holds each token's query, key and value
    /// (`length × 3·hidden`), `out` its context (`length × hidden`).
    fn attend(&self, projected: &[f32], out: &mut [f32]) {
        let hidden = self.shape.hidden;
        let width = hidden / self.shape.heads;
        let length = out.len() / hidden;
        if length == 0 {
            return;
        }
        let scale = 1.0 / (width as f32).sqrt();
        // Columns of one head of the queries (part 0), keys (1) or values (2), row after row.
        let head_of = |part: usize, head: usize| -> Vec<f32> {
            let mut columns = Vec::with_capacity(length * width);
            let start = part * hidden + head * width;
            for row in projected.chunks_exact(3 * hidden) {
                columns.extend_from_slice(&row[start..start + width]);
            }
            columns
        };
        let mut scores = vec![0.0; length * length];
        let mut head_out = vec![0.0; length * width];
        for head in 0..self.shape.heads {
            let q = head_of(0, head);
            let k = Packed::from_transposed(&head_of(1, head), width);
            let v = Packed::from_rows(&head_of(2, head), width);
            matmul(&q, &k, None, &mut scores, 1);
            crate::activations::softmax_rows(&mut scores, length, scale);
            matmul(&scores, &v, None, &mut head_out, 1);
            for (token, row) in head_out.chunks_exact(width).enumerate() {
                out[token * hidden + head * width..token * hidden + (head + 1) * width].copy_from_slice(row);
            }
        }
    }
}

/// Runs of whole sequences of about equal token counts, one per thread (fewer when there are fewer sequences).
fn groups(sequences: &[Vec<u32>], threads: usize) -> Vec<&[Vec<u32>]> {
    let total: usize = sequences.iter().map(Vec::len).sum();
    let share = total.div_ceil(threads.max(1)).max(1);
    let mut groups = Vec::new();
    let mut first = 0;
    while first < sequences.len() {
        let (mut last, mut tokens) = (first, 0);
        while last < sequences.len() && (tokens == 0 || tokens + sequences[last].len() <= share) {
            tokens += sequences[last].len();
            last += 1;
        }
        groups.push(&sequences[first..last]);
        first = last;
    }
    groups
}
