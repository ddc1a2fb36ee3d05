//! Sentence embeddings without Python: sentence-transformers models (BERT encoders such as all-MiniLM-L6-v2)
//! read from their directory and run on the CPU.
//!
//! - [`tokenizer`]: BERT's WordPiece tokenizer from the model's `tokenizer.json`;
//! - [`activations`]: GELU and softmax, vectorised by the compiler;
//! - [`bert`]: the encoder's forward pass, sequences laid end to end instead of padded;
//! - [`matmul`]: the matrix product it spends its time in, on the CPU's vector units;
//! - [`safetensors`]: the weights file, read as untrusted input;
//! - [`model`]: the whole model (tokenizer, encoder, pooling, normalising);
//! - [`chunk`]: documents (text, Markdown, HTML) into overlapping chunks on sentence and heading boundaries;
//! - [`locate`]: where a model named on the command line is.
//!
//! Why not candle: docs/vectors.md, "Local embeddings".

pub mod activations;
pub mod bert;
pub mod chunk;
pub mod locate;
pub mod matmul;
pub mod model;
pub mod safetensors;
pub mod tokenizer;

pub use model::{Embedded, SentenceEncoder};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    /// The model's files cannot be used.
    #[error("{0}")]
    Model(String),
    /// The input cannot be embedded.
    #[error("{0}")]
    Input(String),
}
