//! BERT's WordPiece tokenizer, as a `tokenizer.json` with a `BertNormalizer`, a `BertPreTokenizer` and a
//! `WordPiece` model describes it (the file sentence-transformers models ship, read by Hugging Face's fast
//! tokenizer):
//!
//! 1. normalise: drop NUL, U+FFFD and control characters, turn whitespace into spaces, put spaces around CJK
//!    ideographs, strip accents (NFD, then drop non-spacing marks) and lowercase;
//! 2. split on whitespace, and around every punctuation character;
//! 3. split each word into the longest pieces found in the vocabulary, later pieces with the `##` prefix; a
//!    word with a piece that is not found, or longer than `max_input_chars_per_word`, is one `[UNK]`;
//! 4. frame the pieces as `[CLS] … [SEP]`, keeping at most the model's sequence length.
//!
//! Words are split only until the sequence is full, so a long text costs its normalisation and no more.

use crate::EmbeddingError;
use serde_json::Value;
use std::collections::HashMap;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// A tokenizer read from a `tokenizer.json`.
#[derive(Debug)]
pub struct WordPiece {
    vocabulary: HashMap<String, u32>,
    unknown: u32,
    classifier: u32,
    separator: u32,
    prefix: String,
    max_word_chars: usize,
    clean_text: bool,
    chinese_characters: bool,
    strip_accents: bool,
    lowercase: bool,
    /// Added tokens matched in the raw text before anything else (`[MASK]`, `[SEP]`, ...), longest first.
    added: Vec<(String, u32)>,
}

impl WordPiece {
    /// The tokenizer a `tokenizer.json`'s text describes; anything other than BERT's normaliser,
    /// pre-tokenizer and WordPiece model is refused, naming what was found.
    pub fn from_json(text: &str, file: &str) -> Result<WordPiece, EmbeddingError> {
        let bad = |problem: String| EmbeddingError::Model(format!("{file}: {problem}"));
        let json: Value = serde_json::from_str(text).map_err(|error| bad(format!("not JSON: {error}")))?;
        let kind = |part: &str| {
            json.get(part)
                .and_then(|value| value.get("type"))
                .and_then(Value::as_str)
        };
        if kind("model") != Some("WordPiece") {
            return Err(bad(format!(
                "the model is {:?}; only WordPiece (BERT-family) tokenizers are supported",
                kind("model")
            )));
        }
        if kind("pre_tokenizer") != Some("BertPreTokenizer") {
            return Err(bad(format!(
                "the pre-tokenizer is {:?}; only BertPreTokenizer is supported",
                kind("pre_tokenizer")
            )));
        }
        let normalizer = json.get("normalizer").filter(|value| !value.is_null());
        if normalizer.is_some() && kind("normalizer") != Some("BertNormalizer") {
            return Err(bad(format!(
                "the normalizer is {:?}; only BertNormalizer is supported",
                kind("normalizer")
            )));
        }
        let flag = |name: &str, default: bool| {
            normalizer
                .and_then(|value| value.get(name))
                .and_then(Value::as_bool)
                .unwrap_or(default)
        };
        let lowercase = normalizer.is_some() && flag("lowercase", true);
        let model = &json["model"];
        let vocabulary: HashMap<String, u32> = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("the WordPiece model has no vocab".into()))?
            .iter()
            .map(|(piece, id)| {
                id.as_u64()
                    .and_then(|id| u32::try_from(id).ok())
                    .map(|id| (piece.clone(), id))
                    .ok_or_else(|| bad(format!("the vocab id of '{piece}' is not a number")))
            })
            .collect::<Result<_, _>>()?;
        let id_of = |piece: &str| {
            vocabulary
                .get(piece)
                .copied()
                .ok_or_else(|| bad(format!("the vocab has no '{piece}'")))
        };
        let unknown_piece = model.get("unk_token").and_then(Value::as_str).unwrap_or("[UNK]");
        // Added tokens that are matched on the text as written (`normalized: false`, as BERT's special tokens
        // are); ones matched after normalising are not supported and refused by name.
        let mut added = Vec::new();
        for token in json.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
            let content = token.get("content").and_then(Value::as_str).unwrap_or_default();
            let id = token
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| bad(format!("the added token '{content}' has no usable id")))?;
            let flag = |name: &str| token.get(name).and_then(Value::as_bool).unwrap_or(false);
            if content.is_empty() || flag("normalized") || flag("single_word") || flag("lstrip") || flag("rstrip") {
                return Err(bad(format!(
                    "the added token '{content}' is matched in a way not supported (only exact, unnormalised matches)"
                )));
            }
            added.push((content.to_string(), id));
        }
        added.sort_by_key(|(content, _)| std::cmp::Reverse(content.len()));
        Ok(WordPiece {
            unknown: id_of(unknown_piece)?,
            classifier: id_of("[CLS]")?,
            separator: id_of("[SEP]")?,
            prefix: model
                .get("continuing_subword_prefix")
                .and_then(Value::as_str)
                .unwrap_or("##")
                .to_string(),
            max_word_chars: model
                .get("max_input_chars_per_word")
                .and_then(Value::as_u64)
                .unwrap_or(100) as usize,
            clean_text: normalizer.is_some() && flag("clean_text", true),
            chinese_characters: normalizer.is_some() && flag("handle_chinese_chars", true),
            strip_accents: normalizer
                .and_then(|value| value.get("strip_accents"))
                .and_then(Value::as_bool)
                .unwrap_or(lowercase),
            lowercase,
            vocabulary,
            added,
        })
    }

    /// The largest id in the vocabulary plus one.
    pub fn vocabulary_size(&self) -> usize {
        self.vocabulary.values().max().map_or(0, |id| *id as usize + 1)
    }

    /// The ids of `text` framed as `[CLS] … [SEP]`, at most `max_length` of them (at least 2).
    pub fn encode(&self, text: &str, max_length: usize) -> Vec<u32> {
        let room = max_length.max(2) - 2;
        let mut ids = Vec::with_capacity(room.min(64) + 2);
        ids.push(self.classifier);
        let mut rest = text;
        'text: while !rest.is_empty() {
            // The next added token in the raw text, and the text before it.
            let next = self
                .added
                .iter()
                .filter_map(|(content, id)| rest.find(content.as_str()).map(|at| (at, content.len(), *id)))
                .min_by_key(|(at, length, _)| (*at, std::cmp::Reverse(*length)));
            let (plain, token) = match next {
                Some((at, length, id)) => (&rest[..at], Some((id, at + length))),
                None => (rest, None),
            };
            let normalized = self.normalize(plain);
            for word in pre_tokenize(&normalized) {
                for id in self.pieces(word) {
                    if ids.len() > room {
                        break 'text;
                    }
                    ids.push(id);
                }
            }
            match token {
                Some((id, end)) => {
                    if ids.len() > room {
                        break;
                    }
                    ids.push(id);
                    rest = &rest[end..];
                }
                None => break,
            }
        }
        ids.truncate(room + 1);
        ids.push(self.separator);
        ids
    }

    fn normalize(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if self.clean_text {
                if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    continue;
                }
                if is_whitespace(c) {
                    out.push(' ');
                    continue;
                }
            }
            if self.chinese_characters && is_chinese(c) {
                out.push(' ');
                out.push(c);
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        if self.strip_accents {
            out = out
                .nfd()
                .filter(|c| c.general_category() != GeneralCategory::NonspacingMark)
                .collect();
        }
        if self.lowercase {
            out = out.chars().flat_map(char::to_lowercase).collect();
        }
        out
    }

    fn pieces(&self, word: &str) -> Vec<u32> {
        if word.chars().count() > self.max_word_chars {
            return vec![self.unknown];
        }
        let mut found = Vec::new();
        let mut start = 0;
        let mut candidate = String::with_capacity(word.len() + self.prefix.len());
        while start < word.len() {
            let mut end = word.len();
            let mut piece = None;
            while start < end {
                candidate.clear();
                if start > 0 {
                    candidate.push_str(&self.prefix);
                }
                candidate.push_str(&word[start..end]);
                if let Some(id) = self.vocabulary.get(&candidate) {
                    piece = Some(*id);
                    break;
                }
                end = word[..end].char_indices().next_back().map_or(0, |(at, _)| at);
            }
            match piece {
                Some(id) => found.push(id),
                None => return vec![self.unknown],
            }
            start = end;
        }
        found
    }
}

/// Words of a normalised text: split on whitespace, each punctuation character a word of its own.
fn pre_tokenize(text: &str) -> impl Iterator<Item = &str> {
    text.split(char::is_whitespace).flat_map(|chunk| {
        let mut words = Vec::new();
        let mut start = 0;
        for (at, c) in chunk.char_indices() {
            if is_punctuation(c) {
                if start < at {
                    words.push(&chunk[start..at]);
                }
                words.push(&chunk[at..at + c.len_utf8()]);
                start = at + c.len_utf8();
            }
        }
        if start < chunk.len() {
            words.push(&chunk[start..]);
        }
        words
    })
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Control, format and private-use characters. Unassigned code points are kept (and become `[UNK]`), as
/// Hugging Face's tokenizer, whose character tables know no unassigned category, keeps them.
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r')
        && c.general_category_group() == GeneralCategoryGroup::Other
        && c.general_category() != GeneralCategory::Unassigned
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.general_category_group() == GeneralCategoryGroup::Punctuation
}

fn is_chinese(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tokenizer() -> WordPiece {
        let vocab: Vec<&str> = vec![
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", ",", "world", "!", "un", "##aff", "##able", "cafe", "机", "器",
        ];
        let vocab: serde_json::Map<String, Value> = vocab
            .iter()
            .enumerate()
            .map(|(id, piece)| (piece.to_string(), Value::from(id)))
            .collect();
        let added: Vec<Value> = ["[UNK]", "[CLS]", "[SEP]"]
            .iter()
            .map(|content| {
                serde_json::json!({
                    "id": vocab[*content], "content": content, "special": true, "normalized": false,
                    "single_word": false, "lstrip": false, "rstrip": false,
                })
            })
            .collect();
        let json = serde_json::json!({
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                           "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "added_tokens": added,
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": vocab},
        });
        WordPiece::from_json(&json.to_string(), "tokenizer.json").unwrap()
    }

    #[test]
    fn words_split_into_the_longest_pieces() {
        let t = tokenizer();
        assert_eq!(t.encode("Hello,WORLD!", 256), vec![2, 4, 5, 6, 7, 3]);
        assert_eq!(t.encode("unaffable", 256), vec![2, 8, 9, 10, 3]);
        assert_eq!(
            t.encode("  Café\u{0}\t机器 unknownword", 256),
            vec![2, 11, 12, 13, 1, 3]
        );
        assert_eq!(t.encode("", 256), vec![2, 3]);
        assert_eq!(t.encode("hello hello hello", 4), vec![2, 4, 4, 3]);
        assert_eq!(t.encode(&"a".repeat(101), 256), vec![2, 1, 3]);
        // Special tokens written in the text are those tokens, not brackets and words.
        assert_eq!(t.encode("hello[SEP]world [UNK]", 256), vec![2, 4, 3, 6, 1, 3]);
        assert_eq!(t.encode("[CLS]", 3), vec![2, 2, 3]);
        assert_eq!(t.encode("[CLS][CLS]", 3), vec![2, 2, 3]);
    }

    #[test]
    fn other_tokenizers_are_refused_by_name() {
        let error = WordPiece::from_json(r#"{"model": {"type": "BPE"}}"#, "t.json").unwrap_err();
        assert!(error.to_string().contains("BPE"), "{error}");
        assert!(WordPiece::from_json("[", "t.json").is_err());
    }

    proptest! {
        #[test]
        fn any_text_encodes_within_the_length(text in "\\PC{0,200}", max in 0usize..40) {
            let ids = tokenizer().encode(&text, max);
            prop_assert!(ids.len() <= max.max(2));
            prop_assert_eq!(ids[0], 2);
            prop_assert_eq!(*ids.last().unwrap(), 3);
        }
    }
}
