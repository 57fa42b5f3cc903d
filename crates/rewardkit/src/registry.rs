use std::collections::BTreeMap;
use std::fmt::Debug;

use rewardkit_core::Reward;
use rewardkit_verify as verify;
use serde::de::DeserializeOwned;

/// What a [`TermBuilder`] returns: the reward and a readable rendering of its resolved options
/// (defaults filled in), which `rewardkit spec check` prints.
pub struct BuiltTerm {
    /// The reward term.
    pub reward: Box<dyn Reward>,
    /// The options with every default filled in, for display.
    pub resolved_options: String,
}

/// Builds a term of one kind from its `[term.options]` table; the error says what was wrong.
pub type TermBuilder = fn(&toml::Table) -> Result<BuiltTerm, String>;

/// The kinds a spec may name, each with its builder and a one-line description.
///
/// [`Registry::default`] holds every verifier of `rewardkit-verify`; later crates (learned models,
/// remote terms) register theirs the same way.
#[derive(Clone)]
pub struct Registry {
    kinds: BTreeMap<String, (TermBuilder, &'static str)>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut registry = Registry::empty();
        registry.register(
            "gsm8k",
            "GSM8K-style final numeric answer, normalised and compared exactly",
            |t| verifier(t, verify::numeric::Gsm8k::new),
        );
        registry.register(
            "multiple_choice",
            "multiple-choice letter extracted from free text",
            |t| verifier(t, verify::choice::MultipleChoice::new),
        );
        registry.register(
            "string_match",
            "normalised string equality with the reference",
            |t| verifier(t, verify::text::StringMatch::new),
        );
        registry.register(
            "regex_match",
            "regular-expression match (linear time)",
            |t| verifier(t, verify::text::RegexMatch::new),
        );
        registry.register(
            "think_format",
            "<think>…</think> then an answer, tags well formed",
            |t| verifier(t, verify::format::ThinkFormat::new),
        );
        registry.register(
            "tool_call",
            "ToolRL tool-call reward: format + correctness in [-3, 3]",
            |t| verifier(t, verify::tool::ToolCall::new),
        );
        registry.register("soft_overlong", "DAPO soft overlong punishment", |t| {
            verifier(t, verify::length::SoftOverlong::new)
        });
        registry.register("length_cap", "fixed value over a length cap", |t| {
            verifier(t, verify::length::LengthCap::new)
        });
        registry.register("repetition", "n-gram repetition penalty", |t| {
            verifier(t, verify::length::Repetition::new)
        });
        registry.register(
            "math",
            "maths answer equivalence (LaTeX/plain text; exact, numeric and symbolic)",
            |t| verifier(t, rewardkit_math::Math::new),
        );
        registry.register(
            "field",
            "a number carried with the sample (a precomputed reward, a margin, a label)",
            |t| verifier(t, crate::shaping::FieldReward::new),
        );
        registry.register(
            "self_aligned_reward",
            "Self-Aligned Reward from token log-probabilities with and without the query",
            |t| verifier(t, crate::shaping::SelfAlignedReward::new),
        );
        #[cfg(feature = "model")]
        registry.register(
            "model",
            "learned reward model (a `rewardkit train` directory)",
            |t| verifier(t, rewardkit_model::ModelTerm::new),
        );
        registry
    }
}

impl Registry {
    /// A registry with no kinds.
    pub fn empty() -> Registry {
        Registry {
            kinds: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) a kind.
    pub fn register(&mut self, kind: &str, description: &'static str, builder: TermBuilder) {
        self.kinds.insert(kind.to_owned(), (builder, description));
    }

    /// The builder for `kind`.
    pub fn get(&self, kind: &str) -> Option<TermBuilder> {
        self.kinds.get(kind).map(|(builder, _)| *builder)
    }

    /// All kinds with their descriptions, sorted by name.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.kinds.iter().map(|(k, (_, d))| (k.as_str(), *d))
    }
}

/// Deserialises a verifier's options (unknown keys refused by the options type) and builds it.
fn verifier<O, R, E>(options: &toml::Table, new: fn(O) -> Result<R, E>) -> Result<BuiltTerm, String>
where
    O: DeserializeOwned + Debug,
    R: Reward + 'static,
    E: std::fmt::Display,
{
    let options: O = toml::Value::Table(options.clone())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    let resolved_options = format!("{options:?}");
    let reward = new(options).map_err(|e| e.to_string())?;
    Ok(BuiltTerm {
        reward: Box::new(reward),
        resolved_options,
    })
}
