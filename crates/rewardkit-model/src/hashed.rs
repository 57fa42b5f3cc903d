//! The `hashed` backbone: hashed word and character n-gram features, projected to a fixed width.
//!
//! This is the "hashing trick" (Weinberger et al., "Feature Hashing for Large Scale Multitask
//! Learning", ICML 2009): every feature — a word, a word bigram, a character n-gram of the
//! response; a word of the prompt — is hashed into one of `buckets` slots with a hashed sign (so
//! that collisions cancel in expectation instead of adding up), counts are L2-normalised, and a
//! trainable `buckets × width` matrix projects the sparse vector to `width` numbers followed by
//! `tanh` (like BERT's pooler). It is an embedding bag in the manner of fastText; with a linear
//! head it is a one-hidden-layer network on n-gram features, with the MLP head two. It needs no
//! download and trains in seconds, which makes it the quickstart backbone and a strong baseline
//! for surface-level preferences (refusals, politeness, length).
//!
//! The hash is FNV-1a (64 bit) over the feature's bytes with a namespace byte in front, so that
//! a saved model's features mean the same thing on every machine and Rust version (`std`'s
//! hasher makes no such promise).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::backbone::Backbone;
use crate::rng::SplitMix64;
use crate::{ModelError, RewardInput, Truncation};

/// Settings of the hashed backbone (saved in `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashedConfig {
    /// Hash slots (rows of the projection matrix).
    pub buckets: usize,
    /// Output width.
    pub width: usize,
    /// Longest word n-gram of the response (1 = words only).
    pub word_ngrams: usize,
    /// Shortest and longest character n-gram of the response (`[0, 0]` turns them off).
    pub char_ngrams: [usize; 2],
    /// Whether prompt words are features too (in their own namespace).
    pub prompt_words: bool,
    /// Words kept per input: the response from its start, then the prompt from its end (the
    /// context nearest the response) with what is left.
    pub max_length: usize,
}

impl Default for HashedConfig {
    fn default() -> Self {
        HashedConfig {
            buckets: 1 << 16,
            width: 32,
            word_ngrams: 2,
            char_ngrams: [3, 5],
            prompt_words: true,
            max_length: 512,
        }
    }
}

impl HashedConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.buckets == 0 || self.buckets > 1 << 24 {
            return Err(ModelError::option(
                "buckets",
                format!("must be in 1..=16777216, got {}", self.buckets),
            ));
        }
        if self.width == 0 || self.width > 4096 {
            return Err(ModelError::option(
                "width",
                format!("must be in 1..=4096, got {}", self.width),
            ));
        }
        if !(1..=4).contains(&self.word_ngrams) {
            return Err(ModelError::option(
                "word-ngrams",
                format!("must be in 1..=4, got {}", self.word_ngrams),
            ));
        }
        let [lo, hi] = self.char_ngrams;
        if (lo == 0) != (hi == 0) || lo > hi || hi > 8 {
            return Err(ModelError::option(
                "char-ngrams",
                format!("must be [0, 0] (off) or [min, max] with 1 <= min <= max <= 8, got [{lo}, {hi}]"),
            ));
        }
        if self.max_length == 0 {
            return Err(ModelError::option("max-length", "must be at least 1"));
        }
        Ok(())
    }
}

/// A sparse feature vector: sorted slot indices and their values (L2 norm 1, or empty).
#[derive(Clone, Debug, PartialEq)]
pub struct SparseFeatures {
    /// Slot indices, ascending.
    pub indices: Vec<u32>,
    /// Values, aligned with `indices`.
    pub values: Vec<f32>,
}

const NS_WORD: u8 = 1;
const NS_CHAR: u8 = 2;
const NS_PROMPT: u8 = 3;
const NS_BIAS: u8 = 4;

/// FNV-1a, 64 bit.
pub(crate) fn fnv1a(namespace: u8, parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |byte: u8| {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    eat(namespace);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            eat(0x1f); // unit separator: ("ab","c") and ("a","bc") differ
        }
        part.bytes().for_each(&mut eat);
    }
    hash
}

/// Lower-cased tokens: runs of alphanumeric characters, and every other non-space character
/// alone (so `sorry,` is `sorry` and `,`).
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                out.push(c.to_lowercase().collect());
            }
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

impl HashedConfig {
    /// The features of one input, cut from the left (see [`HashedConfig::features_truncated`]).
    pub fn features(&self, input: &RewardInput) -> SparseFeatures {
        self.features_truncated(input, Truncation::Left)
    }

    /// The features of one input with at most `max_length` words read. [`Truncation::Left`]: the
    /// response's first `max_length` words, then the prompt's last words with what is left (the
    /// context nearest the response). [`Truncation::Right`]: the first `max_length` words of
    /// prompt + response — the prompt's from its start, the response's with what is left — so a
    /// long prompt can leave no response words. Without prompt features the response's first
    /// `max_length` words either way.
    pub fn features_truncated(
        &self,
        input: &RewardInput,
        truncation: Truncation,
    ) -> SparseFeatures {
        let mut counts: HashMap<u32, f32> = HashMap::new();
        let buckets = self.buckets as u64;
        let mut add = |hash: u64| {
            let slot = (hash % buckets) as u32;
            let sign = if hash >> 63 == 1 { -1.0 } else { 1.0 };
            *counts.entry(slot).or_insert(0.0) += sign;
        };
        let mut prompt = if self.prompt_words {
            tokens(&input.prompt)
        } else {
            Vec::new()
        };
        let mut response = tokens(&input.response);
        match truncation {
            Truncation::Left => {
                response.truncate(self.max_length);
                let keep = self.max_length.saturating_sub(response.len());
                prompt.drain(..prompt.len().saturating_sub(keep));
            }
            Truncation::Right => {
                prompt.truncate(self.max_length);
                response.truncate(self.max_length - prompt.len());
            }
        }
        // A constant feature, so that an empty response still has a vector.
        add(fnv1a(NS_BIAS, &[]));
        for n in 1..=self.word_ngrams {
            for window in response.windows(n) {
                let parts: Vec<&str> = window.iter().map(String::as_str).collect();
                add(fnv1a(NS_WORD, &parts));
            }
        }
        let [lo, hi] = self.char_ngrams;
        if lo > 0 {
            let text: Vec<char> = std::iter::once(' ')
                .chain(response.join(" ").chars())
                .chain(std::iter::once(' '))
                .collect();
            let mut buf = String::new();
            for n in lo..=hi {
                for window in text.windows(n) {
                    buf.clear();
                    buf.extend(window);
                    add(fnv1a(NS_CHAR, &[&buf]));
                }
            }
        }
        for word in &prompt {
            add(fnv1a(NS_PROMPT, &[word]));
        }
        let mut entries: Vec<(u32, f32)> = counts.into_iter().filter(|(_, v)| *v != 0.0).collect();
        entries.sort_unstable_by_key(|(slot, _)| *slot);
        let norm = entries
            .iter()
            .map(|(_, v)| (*v as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let scale = if norm > 0.0 { (1.0 / norm) as f32 } else { 0.0 };
        SparseFeatures {
            indices: entries.iter().map(|(slot, _)| *slot).collect(),
            values: entries.iter().map(|(_, v)| v * scale).collect(),
        }
    }
}

/// The hashed backbone: `tanh(Σᵢ xᵢ·E[slotᵢ] + b)` over the sparse features `x`.
pub struct HashedBackbone {
    config: HashedConfig,
    truncation: Truncation,
    embeddings: Var,
    bias: Var,
    device: Device,
}

impl HashedBackbone {
    /// Random initial weights: `E ~ N(0, 1)` scaled by `init_std`, zero bias.
    pub fn new(
        config: HashedConfig,
        rng_seed: u64,
        device: &Device,
    ) -> Result<HashedBackbone, ModelError> {
        config.validate()?;
        let mut rng = SplitMix64::derived(rng_seed, 1);
        let n = config.buckets * config.width;
        let init_std = 0.5;
        let data: Vec<f32> = (0..n).map(|_| (rng.normal() * init_std) as f32).collect();
        let embeddings = Var::from_tensor(&Tensor::from_vec(
            data,
            (config.buckets, config.width),
            device,
        )?)?;
        let bias = Var::zeros(config.width, DType::F32, device)?;
        Ok(HashedBackbone {
            config,
            truncation: Truncation::Left,
            embeddings,
            bias,
            device: device.clone(),
        })
    }

    /// A backbone with the given weights (`backbone.embeddings.weight`, `backbone.embeddings.bias`).
    pub fn from_tensors(
        config: HashedConfig,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<HashedBackbone, ModelError> {
        config.validate()?;
        let get = |name: &str, shape: &[usize]| -> Result<Var, ModelError> {
            let tensor = tensors.get(name).ok_or_else(|| {
                ModelError::load("model.safetensors", format!("missing tensor `{name}`"))
            })?;
            if tensor.dims() != shape {
                return Err(ModelError::load(
                    "model.safetensors",
                    format!(
                        "tensor `{name}` has shape {:?}, config.json implies {shape:?}",
                        tensor.dims()
                    ),
                ));
            }
            Ok(Var::from_tensor(
                &tensor.to_dtype(DType::F32)?.to_device(device)?,
            )?)
        };
        Ok(HashedBackbone {
            truncation: Truncation::Left,
            embeddings: get(
                "backbone.embeddings.weight",
                &[config.buckets, config.width],
            )?,
            bias: get("backbone.embeddings.bias", &[config.width])?,
            config,
            device: device.clone(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &HashedConfig {
        &self.config
    }
}

impl Backbone for HashedBackbone {
    fn width(&self) -> usize {
        self.config.width
    }

    fn forward(&self, inputs: &[RewardInput]) -> Result<Tensor, ModelError> {
        // Flatten the batch's features: one index_select gathers every feature's row, a product
        // by its value weights it, and an index_add sums the rows of each input (an embedding
        // bag). Both operations have backward passes in candle.
        let mut slots = Vec::new();
        let mut values = Vec::new();
        let mut owners = Vec::new();
        for (row, input) in inputs.iter().enumerate() {
            let features = self.config.features_truncated(input, self.truncation);
            owners.extend(std::iter::repeat_n(row as u32, features.indices.len()));
            slots.extend(features.indices);
            values.extend(features.values);
        }
        let n = slots.len();
        let slots = Tensor::from_vec(slots, n, &self.device)?;
        let values = Tensor::from_vec(values, (n, 1), &self.device)?;
        let owners = Tensor::from_vec(owners, n, &self.device)?;
        let gathered = self.embeddings.as_tensor().index_select(&slots, 0)?;
        let weighted = gathered.broadcast_mul(&values)?;
        let zeros = Tensor::zeros((inputs.len(), self.config.width), DType::F32, &self.device)?;
        let bag = zeros.index_add(&owners, &weighted, 0)?;
        Ok(bag.broadcast_add(self.bias.as_tensor())?.tanh()?)
    }

    fn parameters(&self) -> Vec<(String, Var)> {
        vec![
            (
                "backbone.embeddings.weight".to_owned(),
                self.embeddings.clone(),
            ),
            ("backbone.embeddings.bias".to_owned(), self.bias.clone()),
        ]
    }

    fn length(&self, input: &RewardInput) -> usize {
        tokens(&input.response).len().min(self.config.max_length)
    }

    fn set_truncation(&mut self, truncation: Truncation) -> Result<(), ModelError> {
        self.truncation = truncation;
        Ok(())
    }

    fn set_max_length(&mut self, max_length: usize) -> Result<(), ModelError> {
        let config = HashedConfig {
            max_length,
            ..self.config.clone()
        };
        config.validate()?;
        self.config = config;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_words_and_punctuation() {
        let check = |text: &str, expected: &[&str]| assert_eq!(tokens(text), expected, "{text:?}");
        check("Hello, World!", &["hello", ",", "world", "!"]);
        check("  ", &[]);
        check("naïve café", &["naïve", "café"]);
        check("x2 = 3.5", &["x2", "=", "3", ".", "5"]);
    }

    #[test]
    fn features_are_normalised_sorted_and_stable() {
        let config = HashedConfig {
            buckets: 1 << 12,
            ..HashedConfig::default()
        };
        let input = RewardInput::new(
            "\n\nHuman: hi\n\nAssistant:",
            " Sorry, I can't help with that.",
        );
        let f = config.features(&input);
        assert!(f.indices.windows(2).all(|w| w[0] < w[1]));
        let norm: f32 = f.values.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(f, config.features(&input));
        // Case and spacing do not matter; words do.
        let same = RewardInput::new(
            "\n\nHuman: HI\n\nAssistant:",
            " sorry,  I CAN'T help with that.",
        );
        assert_eq!(f, config.features(&same));
        assert_ne!(
            f,
            config.features(&RewardInput::new("", " Sure, here it is."))
        );
        // FNV-1a reference: the empty input with namespace byte 0 is FNV-1a("\0").
        assert_eq!(fnv1a(0, &[]), 0xaf63_bd4c_8601_b7df);
    }

    #[test]
    fn max_length_keeps_the_start_of_the_response() {
        let config = HashedConfig {
            buckets: 1 << 12,
            max_length: 2,
            char_ngrams: [0, 0],
            prompt_words: false,
            ..HashedConfig::default()
        };
        let a = config.features(&RewardInput::new("", "one two three"));
        let b = config.features(&RewardInput::new("", "one two four five"));
        assert_eq!(a, b);
    }

    #[test]
    fn truncation_sides_keep_different_ends() {
        let config = HashedConfig {
            buckets: 1 << 12,
            max_length: 3,
            char_ngrams: [0, 0],
            word_ngrams: 1,
            ..HashedConfig::default()
        };
        let words = |prompt: &str, response: &str| {
            HashedConfig {
                max_length: 100,
                ..config.clone()
            }
            .features(&RewardInput::new(prompt, response))
        };
        let cut = |truncation, prompt: &str, response: &str| {
            config.features_truncated(&RewardInput::new(prompt, response), truncation)
        };
        // Left: the response first, then the prompt's end.
        assert_eq!(
            cut(Truncation::Left, "p1 p2 p3", "r1 r2"),
            words("p3", "r1 r2")
        );
        assert_eq!(
            cut(Truncation::Left, "p1", "r1 r2 r3 r4"),
            words("", "r1 r2 r3")
        );
        // Right: prompt + response from the start; a long prompt leaves no response.
        assert_eq!(
            cut(Truncation::Right, "p1 p2 p3", "r1 r2"),
            words("p1 p2 p3", "")
        );
        assert_eq!(
            cut(Truncation::Right, "p1", "r1 r2 r3 r4"),
            words("p1", "r1 r2")
        );
        // Short inputs are not cut either way.
        assert_eq!(
            cut(Truncation::Right, "p1", "r1"),
            cut(Truncation::Left, "p1", "r1")
        );
        assert_eq!(
            config.features(&RewardInput::new("p1 p2 p3", "r1 r2")),
            cut(Truncation::Left, "p1 p2 p3", "r1 r2")
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = |config: HashedConfig, needle: &str| {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(needle), "{error}");
        };
        bad(
            HashedConfig {
                buckets: 0,
                ..HashedConfig::default()
            },
            "buckets",
        );
        bad(
            HashedConfig {
                char_ngrams: [4, 2],
                ..HashedConfig::default()
            },
            "char-ngrams",
        );
        bad(
            HashedConfig {
                char_ngrams: [0, 3],
                ..HashedConfig::default()
            },
            "char-ngrams",
        );
        bad(
            HashedConfig {
                word_ngrams: 0,
                ..HashedConfig::default()
            },
            "word-ngrams",
        );
    }
}
