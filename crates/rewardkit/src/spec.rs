use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use rewardkit_core::Budget;
use serde::{Deserialize, Serialize};

use crate::shaping::{AdvantagesSpec, Combine, TransformSpec};
use crate::SpecError;

/// A reward spec, as read from TOML and validated.
///
/// ```toml
/// [budget]                # optional; per sample and term
/// max_input_bytes = 1048576
/// max_steps = 50000000
/// timeout_ms = 5000       # 0 disables the wall-clock deadline
///
/// [non_score]             # optional; default policy for terms that do not score
/// policy = "propagate"    # "propagate" | "exclude" | "value"
///
/// [combine]               # optional; see `Combine` for every method and its keys
/// method = "weighted_sum" # | min | product | gate | hybrid | sum_then_normalize
///                         # | normalize_then_sum | constrained
///
/// [advantages]            # optional; an advantage column computed per group by the batch pass
/// estimator = "grpo"      # | dr_grpo | rloo | reinforce_pp | reinforce_pp_baseline
///
/// [[term]]
/// name = "correct"        # unique; names output columns
/// kind = "gsm8k"          # a verifier kind
/// weight = 1.0            # default 1.0
/// non_score = { policy = "value", value = 0.0 }   # optional per-term override
/// transform = [{ kind = "clip", low = 0.0, high = 1.0 }]  # optional; see `TransformSpec`
/// [term.options]          # the kind's options; unknown keys are errors
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Where the spec came from (a path or a label); not part of the TOML.
    #[serde(skip)]
    pub source: String,
    /// Per-sample, per-term work limits.
    #[serde(default)]
    pub budget: BudgetSpec,
    /// The default policy for non-scores.
    #[serde(default)]
    pub non_score: NonScorePolicy,
    /// How term values become one reward.
    #[serde(default)]
    pub combine: Combine,
    /// Advantages per group, computed by the batch pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advantages: Option<AdvantagesSpec>,
    /// The reward terms, in output order.
    #[serde(default, rename = "term")]
    pub terms: Vec<TermSpec>,
}

/// The `[budget]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSpec {
    /// Inputs longer than this many bytes are unscorable.
    pub max_input_bytes: usize,
    /// Work units per sample and term before it is timed out.
    pub max_steps: u64,
    /// Wall-clock limit per sample and term in milliseconds; 0 means none.
    pub timeout_ms: u64,
}

impl Default for BudgetSpec {
    fn default() -> Self {
        let budget = Budget::default();
        BudgetSpec {
            max_input_bytes: budget.max_input_bytes,
            max_steps: budget.max_steps,
            timeout_ms: budget.timeout.map_or(0, |t| t.as_millis() as u64),
        }
    }
}

impl BudgetSpec {
    /// The core budget this table describes.
    pub fn to_budget(&self) -> Budget {
        Budget {
            max_input_bytes: self.max_input_bytes,
            max_steps: self.max_steps,
            timeout: (self.timeout_ms > 0).then(|| Duration::from_millis(self.timeout_ms)),
        }
    }
}

/// What the combined reward does when a term yields no score (unscorable, timed out, failed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum NonScorePolicy {
    /// The combined reward takes the term's outcome (kind kept, reason prefixed with the term).
    #[default]
    Propagate,
    /// The sample is excluded: the combined reward is unscorable with reason `excluded: …`
    /// (TRL's `None`: the sample carries no reward signal).
    Exclude,
    /// The term counts as this value (before its weight). The non-score is still counted in
    /// reports under its reason.
    Value {
        /// The substitute value.
        value: f64,
    },
}

/// One `[[term]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermSpec {
    /// The term's unique name (output column).
    pub name: String,
    /// The verifier kind.
    pub kind: String,
    /// The weight in the combination.
    #[serde(default = "one")]
    pub weight: f64,
    /// Overrides the spec's default non-score policy for this term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_score: Option<NonScorePolicy>,
    /// Transforms of the term's value, applied in order before the combination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transform: Vec<TransformSpec>,
    /// The kind's options.
    #[serde(default = "empty_table")]
    pub options: toml::Table,
}

fn one() -> f64 {
    1.0
}

fn empty_table() -> toml::Table {
    toml::Table::new()
}

impl Spec {
    /// Reads and validates a spec file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Spec, SpecError> {
        let path = path.as_ref();
        let text = std::fs::read(path).map_err(|source| SpecError::Io {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(text).map_err(|e| SpecError::Toml {
            file: path.display().to_string(),
            message: format!(
                "not valid UTF-8 (first bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        let mut spec = Spec::from_toml_str(&text, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            spec.resolve_paths(dir);
        }
        Ok(spec)
    }

    /// Makes relative file paths in term options relative to `dir` (the spec's directory), so a
    /// spec works from any working directory. Path options are those named `tokenizer` or
    /// ending in `_path` or `_file`; absolute paths are left alone.
    pub fn resolve_paths(&mut self, dir: &Path) {
        if let Combine::Constrained {
            state_file: Some(file),
            ..
        } = &mut self.combine
        {
            if Path::new(file.as_str()).is_relative() && !file.is_empty() {
                *file = dir.join(file.as_str()).display().to_string();
            }
        }
        for term in &mut self.terms {
            for transform in &mut term.transform {
                transform.resolve_paths(dir);
            }
            for (key, value) in term.options.iter_mut() {
                let is_path =
                    key == "tokenizer" || key.ends_with("_path") || key.ends_with("_file");
                if let (true, toml::Value::String(text)) = (is_path, &*value) {
                    let path = Path::new(text);
                    if path.is_relative() && !text.is_empty() {
                        *value = toml::Value::String(dir.join(path).display().to_string());
                    }
                }
            }
        }
    }

    /// Parses and validates a spec from TOML text; `source` labels it in errors.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Spec, SpecError> {
        let mut spec: Spec = toml::from_str(text).map_err(|e| SpecError::Toml {
            file: source.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        spec.source = source.to_owned();
        spec.validate()?;
        Ok(spec)
    }

    fn invalid(&self, key: impl Into<String>, expected: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            file: self.source.clone(),
            key: key.into(),
            expected: expected.into(),
        }
    }

    /// Checks everything the types alone do not.
    fn validate(&self) -> Result<(), SpecError> {
        if self.terms.is_empty() {
            return Err(self.invalid("term", "at least one [[term]] table"));
        }
        if self.budget.max_input_bytes == 0 {
            return Err(self.invalid("budget.max_input_bytes", "a positive number of bytes"));
        }
        if self.budget.max_steps == 0 {
            return Err(self.invalid("budget.max_steps", "a positive number of steps"));
        }
        check_policy(&self.non_score)
            .map_err(|expected| self.invalid("non_score.value", expected))?;
        let mut names = HashSet::new();
        for (index, term) in self.terms.iter().enumerate() {
            if !valid_name(&term.name) {
                return Err(self.invalid(
                    format!("term[{index}].name"),
                    format!(
                        "a non-empty name of letters, digits, `_` or `-` (got {:?})",
                        term.name
                    ),
                ));
            }
            if !names.insert(term.name.as_str()) {
                return Err(self.invalid(
                    format!("term[{index}].name"),
                    format!("a unique name (`{}` is used twice)", term.name),
                ));
            }
            if !term.weight.is_finite() {
                return Err(self.invalid(
                    format!("term[{index}].weight"),
                    format!("a finite number (got {})", term.weight),
                ));
            }
            if let Some(policy) = &term.non_score {
                check_policy(policy).map_err(|expected| {
                    self.invalid(format!("term[{index}].non_score.value"), expected)
                })?;
            }
            for (k, transform) in term.transform.iter().enumerate() {
                transform.validate().map_err(|expected| {
                    self.invalid(format!("term[{index}].transform[{k}]"), expected)
                })?;
            }
        }
        self.validate_combine()?;
        if let Some(advantages) = &self.advantages {
            advantages
                .estimator()
                .map_err(|(key, expected)| self.invalid(key, expected))?;
            if !valid_name(&advantages.column) {
                return Err(self.invalid(
                    "advantages.column",
                    format!(
                        "a non-empty name of letters, digits, `_` or `-` (got {:?})",
                        advantages.column
                    ),
                ));
            }
            let taken = ["line", "index", "group", "reward", "outcome", "reason"];
            if taken.contains(&advantages.column.as_str())
                || self.terms.iter().any(|t| t.name == advantages.column)
            {
                return Err(self.invalid(
                    "advantages.column",
                    format!(
                        "a column name not already used by the output (`{}` is)",
                        advantages.column
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_combine(&self) -> Result<(), SpecError> {
        let known = |key: &str, name: &str| {
            if self.terms.iter().any(|t| t.name == name) {
                Ok(())
            } else {
                Err(self.invalid(
                    format!("combine.{key}"),
                    format!(
                        "the name of a term (got {name:?}; terms: {})",
                        self.terms
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        };
        let epsilon = |e: f64| {
            if e.is_finite() && e >= 0.0 {
                Ok(())
            } else {
                Err(self.invalid("combine.epsilon", format!("a finite number ≥ 0 (got {e})")))
            }
        };
        match &self.combine {
            Combine::WeightedSum | Combine::Min | Combine::Product => Ok(()),
            Combine::Conjunction => {
                for (index, term) in self.terms.iter().enumerate() {
                    if !matches!(
                        term.transform.last(),
                        Some(TransformSpec::LogSigmoid { .. })
                    ) {
                        return Err(self.invalid(
                            format!("term[{index}].transform"),
                            format!(
                                "a list ending with {{ kind = \"log_sigmoid\", ... }} (term `{}`): \
                                 a conjunction sums log σ(r_i − r_ref,i)",
                                term.name
                            ),
                        ));
                    }
                    if term.weight != 1.0 {
                        return Err(self.invalid(
                            format!("term[{index}].weight"),
                            format!(
                                "1 under a conjunction, which sums the log-probabilities unweighted (got {})",
                                term.weight
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Combine::Gate {
                gate,
                threshold,
                otherwise,
            } => {
                known("gate", gate)?;
                if threshold.is_nan() {
                    return Err(self.invalid("combine.threshold", "a number"));
                }
                if !otherwise.is_finite() {
                    return Err(self.invalid(
                        "combine.otherwise",
                        format!("a finite number (got {otherwise})"),
                    ));
                }
                if self.terms.len() < 2 {
                    return Err(self.invalid("combine.gate", "a gate and at least one other term"));
                }
                Ok(())
            }
            Combine::Hybrid { rule, model } => {
                known("rule", rule)?;
                known("model", model)?;
                if rule == model {
                    return Err(self.invalid("combine.model", "a term other than the rule term"));
                }
                Ok(())
            }
            Combine::SumThenNormalize { epsilon: e, .. }
            | Combine::NormalizeThenSum { epsilon: e, .. } => epsilon(*e),
            Combine::Lexicographic {
                order,
                margins,
                sigma_mult,
                lower_is_better,
                ..
            } => {
                for (k, name) in order.iter().enumerate() {
                    known(&format!("order[{k}]"), name)?;
                    if order[..k].contains(name) {
                        return Err(self.invalid(
                            format!("combine.order[{k}]"),
                            format!("each term once (`{name}` is listed twice)"),
                        ));
                    }
                }
                if let Some(term) = self.terms.iter().find(|t| !order.contains(&t.name)) {
                    return Err(self.invalid(
                        "combine.order",
                        format!(
                            "every term, most important first (`{}` is missing)",
                            term.name
                        ),
                    ));
                }
                if let Some(index) = self.terms.iter().position(|t| t.weight != 1.0) {
                    return Err(self.invalid(
                        format!("term[{index}].weight"),
                        "no weight (weights do not apply to a lexicographic combination)",
                    ));
                }
                match (margins, sigma_mult) {
                    (Some(_), Some(_)) => {
                        return Err(self.invalid(
                            "combine.sigma_mult",
                            "either `margins` or `sigma_mult`, not both",
                        ))
                    }
                    (Some(m), None)
                        if m.len() != order.len()
                            || m.iter().any(|x| !(x.is_finite() && *x >= 0.0)) =>
                    {
                        return Err(self.invalid(
                            "combine.margins",
                            format!("one finite margin ≥ 0 per term in `order` (got {m:?})"),
                        ));
                    }
                    (None, Some(m)) if !(m.is_finite() && *m >= 0.0) => {
                        return Err(self.invalid(
                            "combine.sigma_mult",
                            format!("a finite number ≥ 0 (got {m})"),
                        ))
                    }
                    _ => {}
                }
                for (k, name) in lower_is_better.iter().enumerate() {
                    if !order.contains(name) {
                        return Err(self.invalid(
                            format!("combine.lower_is_better[{k}]"),
                            format!("a term in `order` (got {name:?})"),
                        ));
                    }
                }
                Ok(())
            }
            Combine::Constrained {
                base, thresholds, ..
            } => {
                known("base", base)?;
                if thresholds.is_empty() {
                    return Err(self.invalid("combine.thresholds", "at least one constraint term"));
                }
                for (name, threshold) in thresholds {
                    known(&format!("thresholds.{name}"), name)?;
                    if name == base {
                        return Err(self.invalid(
                            format!("combine.thresholds.{name}"),
                            "a constraint term other than the base term",
                        ));
                    }
                    if !threshold.is_finite() {
                        return Err(self.invalid(
                            format!("combine.thresholds.{name}"),
                            format!("a finite threshold (got {threshold})"),
                        ));
                    }
                }
                if let Some(term) = self
                    .terms
                    .iter()
                    .find(|t| t.name != *base && !thresholds.contains_key(&t.name))
                {
                    return Err(self.invalid(
                        "combine.thresholds",
                        format!(
                            "a threshold for every term but the base (term `{}` has none)",
                            term.name
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The policy that applies to term `index`.
    pub fn policy_for(&self, index: usize) -> &NonScorePolicy {
        self.terms[index]
            .non_score
            .as_ref()
            .unwrap_or(&self.non_score)
    }
}

fn check_policy(policy: &NonScorePolicy) -> Result<(), String> {
    match policy {
        NonScorePolicy::Value { value } if !value.is_finite() => {
            Err(format!("a finite number (got {value})"))
        }
        _ => Ok(()),
    }
}

/// Term names become column names (`name`, `name.component`), so keep them simple.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Spec::from_toml_str(text, "s.toml").unwrap_err().to_string()
    }

    #[test]
    fn reads_a_full_spec() {
        let spec = Spec::from_toml_str(
            r#"
            [budget]
            timeout_ms = 0
            [non_score]
            policy = "value"
            value = -1.0
            [[term]]
            name = "a"
            kind = "gsm8k"
            [[term]]
            name = "b"
            kind = "think_format"
            weight = 0.5
            non_score = { policy = "exclude" }
            [term.options]
            think_tag = "reason"
            "#,
            "s.toml",
        )
        .unwrap();
        assert_eq!(spec.terms.len(), 2);
        assert_eq!(spec.terms[0].weight, 1.0);
        assert_eq!(spec.budget.to_budget().timeout, None);
        assert_eq!(spec.policy_for(0), &NonScorePolicy::Value { value: -1.0 });
        assert_eq!(spec.policy_for(1), &NonScorePolicy::Exclude);
        assert_eq!(spec.terms[1].options["think_tag"].as_str(), Some("reason"));
    }

    #[test]
    fn relative_option_paths_follow_the_spec_file() {
        let dir = std::env::temp_dir().join(format!("rk-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.toml");
        std::fs::write(
            &file,
            "[[term]]\nname = \"a\"\nkind = \"x\"\n[term.options]\ntokenizer = \"tok/tokenizer.json\"\n\
             model_path = \"/abs/m\"\nunit = \"tokens\"\n",
        )
        .unwrap();
        let spec = Spec::from_path(&file).unwrap();
        let options = &spec.terms[0].options;
        assert_eq!(
            options["tokenizer"].as_str().unwrap(),
            dir.join("tok/tokenizer.json").display().to_string()
        );
        assert_eq!(options["model_path"].as_str().unwrap(), "/abs/m");
        assert_eq!(options["unit"].as_str().unwrap(), "tokens");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let e = err("[[term]]\nname = \"a\"\nkind = \"gsm8k\"\nwieght = 2.0\n");
        assert!(e.contains("s.toml") && e.contains("wieght"), "{e}");
        let e = err("[[term]]\nname = \"a\"\nkind = \"gsm8k\"\nweight = nan\n");
        assert!(e.contains("term[0].weight") && e.contains("finite"), "{e}");
        let e = err("[[term]]\nname = \"a\"\nkind = \"gsm8k\"\nweight = inf\n");
        assert!(e.contains("term[0].weight"), "{e}");
        let e = err("[[term]]\nname = \"a\"\nkind = \"x\"\n[[term]]\nname = \"a\"\nkind = \"y\"\n");
        assert!(e.contains("term[1].name") && e.contains("twice"), "{e}");
        let e = err("");
        assert!(e.contains("[[term]]"), "{e}");
        let e = err("[[term]]\nname = \"a b\"\nkind = \"x\"\n");
        assert!(e.contains("term[0].name"), "{e}");
        let e = err(
            "[non_score]\npolicy = \"value\"\nvalue = nan\n[[term]]\nname = \"a\"\nkind = \"x\"\n",
        );
        assert!(e.contains("non_score.value"), "{e}");
        let e = err("[non_score]\npolicy = \"zero\"\n[[term]]\nname = \"a\"\nkind = \"x\"\n");
        assert!(e.contains("zero"), "{e}");
        let e = err("[[term]]\nkind = \"x\"\n");
        assert!(e.contains("name"), "{e}");
        let e = err("[budget]\nmax_steps = 0\n[[term]]\nname = \"a\"\nkind = \"x\"\n");
        assert!(e.contains("budget.max_steps"), "{e}");
        let e = err("this is not toml");
        assert!(e.starts_with("s.toml:"), "{e}");
    }
}
