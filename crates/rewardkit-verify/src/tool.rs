//! Tool-call rewards after ToolRL (Qian et al. 2025, "ToolRL: Reward is All Tool Learning Needs",
//! reward code `verl/utils/reward_score/rlla.py`).
//!
//! # What is scored
//!
//! The total is `format + correctness`, and both are reported as components (in that order).
//!
//! **Format** is ToolRL's layout check: the completion (surrounding whitespace ignored) must be a
//! `<think>…</think>` block followed by exactly the blocks the reference requires — a
//! `<tool_call>…</tool_call>` block when calls are expected, then a `<response>…</response>` block
//! when a response is expected — and nothing else. As in ToolRL, each of the tags `<tool_call>`,
//! `</tool_call>`, `<response>`, `</response>` must occur exactly as often as the layout uses it
//! anywhere in the completion (a tag mentioned inside the thinking spoils the format), which is
//! what stops a lazy `.*?` from swallowing a second block. When the reference expects neither
//! calls nor a response, the completion must be a think block alone. The format scores the top of
//! its range when the layout holds and the bottom otherwise (`1` or `0` with the fixed schedule).
//! Options relax it: `require_think = false` makes the think block optional (then, when nothing is
//! expected, any text without tool-call or response tags passes), `multiple_blocks = true`
//! accepts several consecutive `<tool_call>` blocks (the Hermes/Qwen chat-template layout, one
//! block per call) where ToolRL accepts exactly one, and `strict_whitespace = true` restores
//! ToolRL's exact regular expression `^<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>…$`
//! (one newline between blocks, newlines just inside the tool-call tags) where the default allows
//! any whitespace in those places.
//!
//! **Correctness** compares the predicted calls `P` with the expected calls `G`, each a
//! `{name, arguments}` pair. An exact match scores the top of the range (`3`). Otherwise, in the
//! default `fine` mode (methods.md §11):
//!
//! ```text
//! S     = J(names_G, names_P) + Σ_{g∈G} best over unused p with p.name = g.name of
//!                                        [ J(keys_g, keys_p) + #{k ∈ keys_g : p[k] = g[k]} ]
//! S_max = 1 + Σ_{g∈G} (1 + |keys_g|)
//! R     = (max − min) · S / S_max + min            (= 6·S/S_max − 3 with the fixed schedule)
//! ```
//!
//! `J` is the multiset Jaccard index `|A ∩ B| / |A ∪ B|` (counts: `Σ min` over `Σ max`), with
//! `J(∅, ∅) = 1`. The matching is ToolRL's greedy one: expected calls are taken in order, each
//! takes the first same-name predicted call with the highest strictly positive score among those
//! not yet taken. A completion whose tool-call blocks do not parse scores the bottom of the range
//! (`−3`); a completion with no `<tool_call>` block predicts no calls.
//!
//! `correctness = "coarse"` (ToolRL's COARSEREWARD) keeps only the exact-match test: top or bottom.
//! `correctness = "intermediate"` (INTERMEDIATEREWARD) gives no partial credit for parameters:
//! `S = J(names_G, names_P) + #{g ∈ G matched greedily to an unused p equal to g}` and
//! `S_max = 1 + |G|`, with the same `R`.
//!
//! "Exact match" and "equal" here mean: same name and the same argument object (same keys, equal
//! values), where JSON numbers compare by value (`1` equals `1.0`, as in Python, which ToolRL's
//! code runs on; unlike Python, `true` does not equal `1`). An exact match between call lists
//! ignores their order (ToolRL compares lists in order, but a permutation of the expected calls
//! reaches `S = S_max` under the fine formula anyway, so only the coarse mode sees a difference,
//! and parallel calls have no meaningful order).
//!
//! # Parsing calls
//!
//! Each `<tool_call>…</tool_call>` block holds either one JSON value — a call object or a list of
//! call objects, possibly pretty-printed over several lines — or, as in ToolRL, one such value per
//! line. A call object is `{"name": string, "arguments": {…}}`; `"parameters"` (ToolRL's key) is
//! accepted for `"arguments"`, an arguments value that is a string holding a JSON object (the
//! OpenAI wire format) is decoded, missing arguments mean `{}`, and other keys are ignored. Calls
//! from all blocks are collected in order. An unclosed block, an empty block, text that is not
//! JSON, a call without a string name, arguments that are not an object, or both `arguments` and
//! `parameters` make the completion unparseable. With `bare_json = true`, a completion with no
//! `<tool_call>` tag is read as bare JSON instead (after an optional leading think block): text
//! starting with `{` or `[` must parse as calls, other text predicts no calls. The format
//! component still asks for tags, so give it no weight when the policy answers in bare JSON.
//!
//! A chat completion whose assistant message carries structured OpenAI-style `tool_calls` (with
//! null or text content) is read through the completion's text, where rewardkit-core renders
//! each call as a `<tool_call>` block after the content, one block per call, as the Hermes/Qwen
//! chat templates do: such calls are scored like the same calls written out, and several of them
//! need `multiple_blocks = true`.
//!
//! # The reference
//!
//! The expected calls come from the sample's reference: a JSON list of call objects, a single call
//! object, a string holding either, or a string in ToolRL's own ground-truth layout (with
//! `<tool_call>` and/or `<response>` blocks, parsed as above; it then also says whether a
//! response is expected). `[]` expects no calls. For the JSON forms, `expect_response` says
//! whether a `<response>` block is expected. A missing reference, or one that cannot be read as
//! calls, is unscorable (it is not the policy's fault).
//!
//! # Schedules
//!
//! The ranges the two components are scored in depend on `schedule` and the training step:
//!
//! - `fixed`: format `[0, 1]`, correctness `[−3, 3]`.
//! - `dynamic` (ToolRL's SCHEDULEREWARD): with `t = min(step, schedule_steps) / schedule_steps`
//!   (`schedule_steps = 150` in ToolRL), format `[−2 + t, 2 − t]` and correctness
//!   `[−2 − t, 2 + t]`: the format range shrinks linearly from `[−2, 2]` to `[−1, 1]` while the
//!   correctness range grows from `[−2, 2]` to `[−3, 3]`, and both stay there afterwards. A
//!   failed format therefore costs `−2` early on and `−1` later; it is never `0`.
//! - `max1step30max3` (ToolRL's MAX1STEP30MAX3): format `[0, 1]`; correctness `[−1, 1]` before
//!   step 30 (a third of the usual range) and `[−3, 3]` from step 30 on.
//!
//! The step is read from the sample's `metadata["step"]` (a non-negative integer), falling back
//! to the `step` option. A schedule that needs a step and finds none (or an invalid one) makes the
//! sample unscorable rather than silently assuming step 0.
//!
//! ToolRL's optional think-length term (WITHLENGTH) is not part of this verifier: combine it with a
//! length term in the spec instead.
//!
//! # Bounds
//!
//! Everything is linear in the input except the matching, which compares every expected call with
//! every predicted one; all of it is charged to the meter, so a completion with thousands of calls
//! times out instead of hanging. JSON nesting is limited to 128 levels (serde_json's parser limit,
//! also enforced on structured references).

use std::collections::HashMap;

use rewardkit_core::{Exhausted, Meter, Outcome, Reference, Reward, RewardOutput, Sample};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use crate::VerifyError;

/// The names of the components, in output order.
const COMPONENTS: [&str; 2] = ["format", "correctness"];

/// Deepest JSON nesting accepted in a structured reference (serde_json's own parser limit).
const MAX_DEPTH: usize = 128;

/// The step at which the `max1step30max3` schedule switches to the full correctness range.
const MAX1_SWITCH_STEP: u64 = 30;

/// How the format and correctness ranges change over training (ToolRL's reward-scale variants).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Format in `[0, 1]`, correctness in `[−3, 3]`, whatever the step.
    #[default]
    Fixed,
    /// Format range shrinking from `[−2, 2]` to `[−1, 1]` and correctness range growing from
    /// `[−2, 2]` to `[−3, 3]`, linearly over `schedule_steps` steps (ToolRL's SCHEDULEREWARD).
    Dynamic,
    /// Correctness in `[−1, 1]` before step 30, `[−3, 3]` after (ToolRL's MAX1STEP30MAX3).
    #[serde(rename = "max1step30max3")]
    Max1Step30Max3,
}

/// How much partial credit the correctness component gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectnessMode {
    /// Names, parameter names and parameter values all earn credit (ToolRL's default).
    #[default]
    Fine,
    /// Exact match or nothing (ToolRL's COARSEREWARD).
    Coarse,
    /// Tool names and whole-call exact matches earn credit, parameters alone do not (ToolRL's
    /// INTERMEDIATEREWARD).
    Intermediate,
}

/// Options of the [`ToolCall`] verifier.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolCallOptions {
    /// Whether the format requires a leading `<think>…</think>` block (ToolRL: yes). Default
    /// `true`.
    pub require_think: bool,
    /// Whether the format demands ToolRL's exact whitespace: one `\n` between blocks and `\n`
    /// just inside the `<tool_call>` tags. By default any whitespace is accepted there. Default
    /// `false`.
    pub strict_whitespace: bool,
    /// Whether the format accepts several consecutive `<tool_call>` blocks (one call per block,
    /// as Hermes/Qwen chat templates write them) instead of ToolRL's single block. Calls are read
    /// from every block either way. Default `false`.
    pub multiple_blocks: bool,
    /// Whether a completion without any `<tool_call>` tag is read as bare JSON (a call object or
    /// a list of them) for correctness. Default `false`.
    pub bare_json: bool,
    /// Whether the format expects a `<response>` block after the calls when the reference is
    /// given as JSON (a reference in ToolRL's tagged layout says so itself). Default `false`.
    pub expect_response: bool,
    /// How much partial credit correctness gives: `fine`, `coarse` or `intermediate`. Default
    /// `fine`.
    pub correctness: CorrectnessMode,
    /// How the reward ranges change with the training step: `fixed`, `dynamic` or
    /// `max1step30max3`. Default `fixed`.
    pub schedule: Schedule,
    /// The training step to use when a sample has no `metadata.step`; only read by the
    /// `dynamic` and `max1step30max3` schedules. Default: none (such samples are unscorable).
    pub step: Option<u64>,
    /// Length of the `dynamic` schedule's linear ramp, in training steps (ToolRL: 150). Must be
    /// positive. Default `150`.
    pub schedule_steps: u64,
}

impl Default for ToolCallOptions {
    fn default() -> Self {
        ToolCallOptions {
            require_think: true,
            strict_whitespace: false,
            multiple_blocks: false,
            bare_json: false,
            expect_response: false,
            correctness: CorrectnessMode::Fine,
            schedule: Schedule::Fixed,
            step: None,
            schedule_steps: 150,
        }
    }
}

/// The ToolRL tool-call reward (kind `tool_call`, components `format` and `correctness`); see the
/// module documentation.
#[derive(Clone, Debug)]
pub struct ToolCall {
    options: ToolCallOptions,
}

impl ToolCall {
    /// Builds the verifier, checking its options.
    pub fn new(options: ToolCallOptions) -> Result<ToolCall, VerifyError> {
        if options.schedule_steps == 0 {
            return Err(VerifyError::invalid(
                "schedule_steps",
                "a positive number of training steps",
            ));
        }
        Ok(ToolCall { options })
    }

    /// The options this verifier was built with.
    pub fn options(&self) -> &ToolCallOptions {
        &self.options
    }

    /// The training step for `sample`: its `metadata.step`, else the `step` option.
    fn training_step(&self, sample: &Sample) -> Result<u64, &'static str> {
        match sample.metadata.get("step") {
            Some(value) => {
                step_from_json(value).ok_or("metadata `step` is not a non-negative integer")
            }
            None => self.options.step.ok_or("missing training step"),
        }
    }

    /// The `(min, max)` ranges of the format and correctness components at `step`.
    fn ranges(&self, step: u64) -> Ranges {
        match self.options.schedule {
            Schedule::Fixed => Ranges::FIXED,
            Schedule::Dynamic => {
                let ramp = self.options.schedule_steps;
                let t = step.min(ramp) as f64 / ramp as f64;
                Ranges {
                    format: (-2.0 + t, 2.0 - t),
                    correctness: (-2.0 - t, 2.0 + t),
                }
            }
            Schedule::Max1Step30Max3 if step < MAX1_SWITCH_STEP => Ranges {
                correctness: (-1.0, 1.0),
                ..Ranges::FIXED
            },
            Schedule::Max1Step30Max3 => Ranges::FIXED,
        }
    }

    /// Where the correctness score falls in its range, from 0 (bottom) to 1 (top).
    fn correctness_fraction(
        &self,
        expected: &[Call],
        predicted: &[Call],
        meter: &mut Meter,
    ) -> Result<f64, Exhausted> {
        if calls_match_exactly(expected, predicted, meter)? {
            return Ok(1.0);
        }
        match self.options.correctness {
            CorrectnessMode::Coarse => Ok(0.0),
            CorrectnessMode::Fine => partial_credit(expected, predicted, false, meter),
            CorrectnessMode::Intermediate => partial_credit(expected, predicted, true, meter),
        }
    }

    fn score_checked(&self, sample: &Sample, meter: &mut Meter) -> Result<[f64; 2], Outcome> {
        let text = sample.completion.text();
        meter.check_input(text.len())?;
        let Some(reference) = &sample.reference else {
            return Err(Outcome::unscorable("missing reference"));
        };
        let expected = match expected_calls(reference, self.options.expect_response, meter) {
            Ok(expected) => expected,
            Err(CallError::Exhausted(e)) => return Err(e.into_outcome()),
            Err(CallError::Malformed) => {
                return Err(Outcome::unscorable("reference is not a list of tool calls"))
            }
        };
        let step = match self.options.schedule {
            Schedule::Fixed => 0,
            _ => self.training_step(sample).map_err(Outcome::unscorable)?,
        };
        let ranges = self.ranges(step);

        meter.step(text.len() as u64)?;
        let format = if format_holds(&text, &expected, &self.options) {
            ranges.format.1
        } else {
            ranges.format.0
        };

        let (low, high) = ranges.correctness;
        let correctness = match predicted_calls(&text, self.options.bare_json, meter) {
            Ok(predicted) => {
                let fraction = self.correctness_fraction(&expected.calls, &predicted, meter)?;
                if fraction >= 1.0 {
                    high
                } else {
                    (high - low) * fraction + low
                }
            }
            Err(CallError::Malformed) => low,
            Err(CallError::Exhausted(e)) => return Err(e.into_outcome()),
        };
        Ok([format, correctness])
    }
}

impl Reward for ToolCall {
    fn kind(&self) -> &str {
        "tool_call"
    }

    fn component_names(&self) -> &[&'static str] {
        &COMPONENTS
    }

    fn score(&self, sample: &Sample, meter: &mut Meter) -> RewardOutput {
        match self.score_checked(sample, meter) {
            Ok([format, correctness]) => RewardOutput {
                outcome: Outcome::scored(format + correctness),
                components: vec![Outcome::scored(format), Outcome::scored(correctness)],
            },
            Err(outcome) => RewardOutput::all(outcome, COMPONENTS.len()),
        }
    }
}

/// The `(min, max)` ranges of the two components at one training step.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ranges {
    format: (f64, f64),
    correctness: (f64, f64),
}

impl Ranges {
    const FIXED: Ranges = Ranges {
        format: (0.0, 1.0),
        correctness: (-3.0, 3.0),
    };
}

/// A step from sample metadata: a non-negative integer (an integral float such as `30.0` too).
fn step_from_json(value: &Value) -> Option<u64> {
    if let Some(step) = value.as_u64() {
        return Some(step);
    }
    let step = value.as_f64()?;
    (step.is_finite() && step >= 0.0 && step.fract() == 0.0 && step < u64::MAX as f64)
        .then_some(step as u64)
}

/// One tool call, normalised: its name and its argument object.
#[derive(Clone, Debug, PartialEq)]
struct Call {
    name: String,
    arguments: Map<String, Value>,
}

/// What the reference asks for.
#[derive(Clone, Debug, PartialEq)]
struct Expected {
    calls: Vec<Call>,
    response: bool,
}

/// Why calls could not be read.
#[derive(Debug)]
enum CallError {
    /// The text or value is not a (list of) tool call(s).
    Malformed,
    /// The budget ran out while reading.
    Exhausted(Exhausted),
}

impl From<Exhausted> for CallError {
    fn from(e: Exhausted) -> Self {
        CallError::Exhausted(e)
    }
}

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";
const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";
const RESPONSE_OPEN: &str = "<response>";
const RESPONSE_CLOSE: &str = "</response>";

/// Reads the expected calls (and whether a response is expected) from a reference.
/// `expect_response` applies to the JSON forms; ToolRL's tagged layout says so itself.
fn expected_calls(
    reference: &Reference,
    expect_response: bool,
    meter: &mut Meter,
) -> Result<Expected, CallError> {
    match reference {
        Reference::Text(text) | Reference::Json(Value::String(text)) => {
            expected_from_text(text, expect_response, meter)
        }
        Reference::Json(value) => {
            check_depth(value, meter)?;
            Ok(Expected {
                calls: calls_from_value(value.clone(), meter)?,
                response: expect_response,
            })
        }
    }
}

/// Reads a string reference: ToolRL's tagged layout, or JSON text.
fn expected_from_text(
    text: &str,
    expect_response: bool,
    meter: &mut Meter,
) -> Result<Expected, CallError> {
    meter.check_input(text.len())?;
    meter.step(text.len() as u64)?;
    let has_calls = text.contains(CALL_OPEN);
    let has_response = text.contains(RESPONSE_OPEN);
    if has_calls || has_response {
        let calls = if has_calls {
            calls_from_blocks(text, meter)?
        } else {
            Vec::new()
        };
        return Ok(Expected {
            calls,
            response: has_response,
        });
    }
    let value: Value = serde_json::from_str(text.trim()).map_err(|_| CallError::Malformed)?;
    Ok(Expected {
        calls: calls_from_value(value, meter)?,
        response: expect_response,
    })
}

/// Refuses structured values nested deeper than [`MAX_DEPTH`] (iteratively, so that checking
/// cannot itself overflow the stack), charging one step per node.
fn check_depth(value: &Value, meter: &mut Meter) -> Result<(), CallError> {
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        meter.step(1)?;
        if depth > MAX_DEPTH {
            return Err(CallError::Malformed);
        }
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// The calls a completion makes: from its `<tool_call>` blocks, or (with `bare_json`, when it has
/// no such tag) from bare JSON after an optional think block.
fn predicted_calls(text: &str, bare_json: bool, meter: &mut Meter) -> Result<Vec<Call>, CallError> {
    if !bare_json || text.contains(CALL_OPEN) {
        return calls_from_blocks(text, meter);
    }
    let mut rest = text.trim_start();
    if let Some(after) = rest.strip_prefix(THINK_OPEN) {
        if let Some(end) = after.find(THINK_CLOSE) {
            rest = &after[end + THINK_CLOSE.len()..];
        }
    }
    let rest = rest.trim();
    if rest.starts_with('{') || rest.starts_with('[') {
        meter.step(rest.len() as u64)?;
        let value: Value = serde_json::from_str(rest).map_err(|_| CallError::Malformed)?;
        calls_from_value(value, meter)
    } else {
        Ok(Vec::new())
    }
}

/// The calls in all `<tool_call>…</tool_call>` blocks of `text`, in order.
fn calls_from_blocks(text: &str, meter: &mut Meter) -> Result<Vec<Call>, CallError> {
    meter.step(text.len() as u64)?;
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(CALL_OPEN) {
        let after = &rest[start + CALL_OPEN.len()..];
        let end = after.find(CALL_CLOSE).ok_or(CallError::Malformed)?;
        calls.extend(calls_from_block(&after[..end], meter)?);
        rest = &after[end + CALL_CLOSE.len()..];
    }
    Ok(calls)
}

/// The calls in one block's content: one JSON value (a call or a list of calls), or one such
/// value per line as ToolRL writes them.
fn calls_from_block(content: &str, meter: &mut Meter) -> Result<Vec<Call>, CallError> {
    let content = content.trim();
    if content.is_empty() {
        return Err(CallError::Malformed);
    }
    meter.step(content.len() as u64)?;
    if let Ok(value) = serde_json::from_str::<Value>(content) {
        return calls_from_value(value, meter);
    }
    meter.step(content.len() as u64)?;
    let mut calls = Vec::new();
    for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let value: Value = serde_json::from_str(line).map_err(|_| CallError::Malformed)?;
        calls.extend(calls_from_value(value, meter)?);
    }
    Ok(calls)
}

/// A call object or a list of call objects.
fn calls_from_value(value: Value, meter: &mut Meter) -> Result<Vec<Call>, CallError> {
    match value {
        Value::Array(items) => {
            let mut calls = Vec::with_capacity(items.len());
            for item in items {
                meter.step(1)?;
                calls.push(call_from_value(item, meter)?);
            }
            Ok(calls)
        }
        value @ Value::Object(_) => Ok(vec![call_from_value(value, meter)?]),
        _ => Err(CallError::Malformed),
    }
}

/// One call object: `{"name": string, "arguments" | "parameters": object}`.
fn call_from_value(value: Value, meter: &mut Meter) -> Result<Call, CallError> {
    let Value::Object(mut map) = value else {
        return Err(CallError::Malformed);
    };
    let Some(Value::String(name)) = map.remove("name") else {
        return Err(CallError::Malformed);
    };
    let arguments = match (map.remove("arguments"), map.remove("parameters")) {
        (Some(arguments), None) | (None, Some(arguments)) => arguments_object(arguments, meter)?,
        (None, None) => Map::new(),
        (Some(_), Some(_)) => return Err(CallError::Malformed),
    };
    Ok(Call { name, arguments })
}

/// An argument object, decoding one that arrives as a JSON string (the OpenAI wire format).
fn arguments_object(value: Value, meter: &mut Meter) -> Result<Map<String, Value>, CallError> {
    match value {
        Value::Object(map) => Ok(map),
        Value::String(text) => {
            meter.step(text.len() as u64)?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err(CallError::Malformed),
            }
        }
        _ => Err(CallError::Malformed),
    }
}

/// Whether the completion has the layout the reference requires (see the module documentation).
fn format_holds(text: &str, expected: &Expected, options: &ToolCallOptions) -> bool {
    let strict = options.strict_whitespace;
    let mut rest = if strict {
        text.strip_suffix('\n').unwrap_or(text)
    } else {
        text.trim()
    };
    let had_think = match take_block(rest, THINK_OPEN, THINK_CLOSE) {
        Block::Found { after, .. } => {
            rest = after;
            true
        }
        Block::Unclosed => return false,
        Block::Absent if options.require_think => return false,
        Block::Absent => false,
    };
    let wants_calls = !expected.calls.is_empty();
    if !wants_calls && !expected.response {
        // Only a think block (ToolRL); without a required think, any untagged text passes.
        let untagged = [CALL_OPEN, CALL_CLOSE, RESPONSE_OPEN, RESPONSE_CLOSE]
            .iter()
            .all(|tag| !text.contains(tag));
        return untagged && (!had_think || rest.is_empty());
    }

    // A block needs a separator before it unless it opens the completion.
    let mut needs_separator = had_think;
    let mut call_blocks = 0usize;
    let block_limit = if !wants_calls {
        0
    } else if options.multiple_blocks {
        usize::MAX
    } else {
        1
    };
    while call_blocks < block_limit {
        let mut candidate = rest;
        if needs_separator && !skip_separator(&mut candidate, strict) {
            break;
        }
        match take_block(candidate, CALL_OPEN, CALL_CLOSE) {
            Block::Found { content, after } => {
                if strict
                    && !(content.len() >= 2 && content.starts_with('\n') && content.ends_with('\n'))
                {
                    return false;
                }
                rest = after;
                call_blocks += 1;
                needs_separator = true;
            }
            Block::Unclosed => return false,
            Block::Absent => break,
        }
    }
    if wants_calls && call_blocks == 0 {
        return false;
    }
    let mut response_blocks = 0usize;
    if expected.response {
        if needs_separator && !skip_separator(&mut rest, strict) {
            return false;
        }
        match take_block(rest, RESPONSE_OPEN, RESPONSE_CLOSE) {
            Block::Found { after, .. } => rest = after,
            Block::Unclosed | Block::Absent => return false,
        }
        response_blocks = 1;
    }
    rest.is_empty()
        && text.matches(CALL_OPEN).count() == call_blocks
        && text.matches(CALL_CLOSE).count() == call_blocks
        && text.matches(RESPONSE_OPEN).count() == response_blocks
        && text.matches(RESPONSE_CLOSE).count() == response_blocks
}

/// A tagged block at the start of a text.
enum Block<'a> {
    /// The text does not start with the opening tag.
    Absent,
    /// The opening tag is never closed.
    Unclosed,
    /// The block's content (up to the first closing tag) and the text after the closing tag.
    Found { content: &'a str, after: &'a str },
}

/// Reads the `open…close` block at the start of `text`.
fn take_block<'a>(text: &'a str, open: &str, close: &str) -> Block<'a> {
    let Some(inner) = text.strip_prefix(open) else {
        return Block::Absent;
    };
    match inner.find(close) {
        Some(end) => Block::Found {
            content: &inner[..end],
            after: &inner[end + close.len()..],
        },
        None => Block::Unclosed,
    }
}

/// Skips the separator between two blocks: exactly one newline when `strict`, any whitespace
/// (possibly none) otherwise. `false` if a strict separator is missing.
fn skip_separator(rest: &mut &str, strict: bool) -> bool {
    if strict {
        match rest.strip_prefix('\n') {
            Some(after) => {
                *rest = after;
                true
            }
            None => false,
        }
    } else {
        *rest = rest.trim_start();
        true
    }
}

/// Whether two call lists are equal as multisets (order ignored). Greedy matching is exact here
/// because call equality is an equivalence relation.
fn calls_match_exactly(
    expected: &[Call],
    predicted: &[Call],
    meter: &mut Meter,
) -> Result<bool, Exhausted> {
    if expected.len() != predicted.len() {
        return Ok(false);
    }
    let mut used = vec![false; predicted.len()];
    for g in expected {
        let mut found = false;
        for (i, p) in predicted.iter().enumerate() {
            if !used[i] && calls_equal(g, p, meter)? {
                used[i] = true;
                found = true;
                break;
            }
        }
        if !found {
            return Ok(false);
        }
    }
    Ok(true)
}

/// ToolRL's partial credit `S / S_max` (fine) or its per-call exact-match variant
/// (`intermediate`); see the module documentation.
fn partial_credit(
    expected: &[Call],
    predicted: &[Call],
    intermediate: bool,
    meter: &mut Meter,
) -> Result<f64, Exhausted> {
    let expected_names: Vec<&str> = expected.iter().map(|c| c.name.as_str()).collect();
    let predicted_names: Vec<&str> = predicted.iter().map(|c| c.name.as_str()).collect();
    let mut score = multiset_jaccard(&expected_names, &predicted_names, meter)?;
    let mut max_score = 1.0;
    let mut used = vec![false; predicted.len()];
    for g in expected {
        max_score += if intermediate {
            1.0
        } else {
            1.0 + g.arguments.len() as f64
        };
        let mut best: Option<(usize, f64)> = None;
        for (i, p) in predicted.iter().enumerate() {
            meter.step(1)?;
            if used[i] || !strings_equal(&g.name, &p.name, meter)? {
                continue;
            }
            if intermediate {
                if calls_equal(g, p, meter)? {
                    best = Some((i, 1.0));
                    break;
                }
                continue;
            }
            let candidate = argument_score(&g.arguments, &p.arguments, meter)?;
            if candidate > best.map_or(0.0, |(_, s)| s) {
                best = Some((i, candidate));
            }
        }
        if let Some((i, best_score)) = best {
            used[i] = true;
            score += best_score;
        }
    }
    Ok(score / max_score)
}

/// `J(keys_g, keys_p) + #{k ∈ keys_g : p[k] = g[k]}`.
fn argument_score(
    expected: &Map<String, Value>,
    predicted: &Map<String, Value>,
    meter: &mut Meter,
) -> Result<f64, Exhausted> {
    let expected_keys: Vec<&str> = expected.keys().map(String::as_str).collect();
    let predicted_keys: Vec<&str> = predicted.keys().map(String::as_str).collect();
    let mut score = multiset_jaccard(&expected_keys, &predicted_keys, meter)?;
    for (key, value) in expected {
        meter.step(1)?;
        if let Some(other) = predicted.get(key) {
            if values_equal(value, other, meter)? {
                score += 1.0;
            }
        }
    }
    Ok(score)
}

/// The multiset Jaccard index `Σ min(count_a, count_b) / Σ max(count_a, count_b)`, with
/// `J(∅, ∅) = 1` (ToolRL's `match_score`).
fn multiset_jaccard(a: &[&str], b: &[&str], meter: &mut Meter) -> Result<f64, Exhausted> {
    if a.is_empty() && b.is_empty() {
        return Ok(1.0);
    }
    if a.is_empty() || b.is_empty() {
        return Ok(0.0);
    }
    let bytes: usize = a.iter().chain(b).map(|s| s.len()).sum();
    meter.step((a.len() + b.len()) as u64 + bytes as u64 / 64)?;
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for item in a {
        counts.entry(item).or_default().0 += 1;
    }
    for item in b {
        counts.entry(item).or_default().1 += 1;
    }
    let intersection: usize = counts.values().map(|&(x, y)| x.min(y)).sum();
    let union = a.len() + b.len() - intersection;
    Ok(intersection as f64 / union as f64)
}

/// Same name and equal argument objects.
fn calls_equal(a: &Call, b: &Call, meter: &mut Meter) -> Result<bool, Exhausted> {
    Ok(
        strings_equal(&a.name, &b.name, meter)?
            && objects_equal(&a.arguments, &b.arguments, meter)?,
    )
}

/// String equality, charged by length.
fn strings_equal(a: &str, b: &str, meter: &mut Meter) -> Result<bool, Exhausted> {
    meter.step(1 + a.len().min(b.len()) as u64 / 64)?;
    Ok(a == b)
}

/// Object equality: the same keys with equal values.
fn objects_equal(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    meter: &mut Meter,
) -> Result<bool, Exhausted> {
    if a.len() != b.len() {
        return Ok(false);
    }
    for (key, value) in a {
        meter.step(1)?;
        match b.get(key) {
            Some(other) if values_equal(value, other, meter)? => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// JSON equality with numbers compared by value. Recursion is bounded by the nesting limit of
/// parsed JSON and of references ([`MAX_DEPTH`]).
fn values_equal(a: &Value, b: &Value, meter: &mut Meter) -> Result<bool, Exhausted> {
    meter.step(1)?;
    Ok(match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::String(x), Value::String(y)) => strings_equal(x, y, meter)?,
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (u, v) in x.iter().zip(y) {
                if !values_equal(u, v, meter)? {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Object(x), Value::Object(y)) => objects_equal(x, y, meter)?,
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        _ => false,
    })
}

/// Numeric equality by value: integers exactly, otherwise as floats (so `1` equals `1.0`).
fn numbers_equal(x: &Number, y: &Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use rewardkit_core::{Budget, Message, OutcomeKind};
    use serde_json::json;

    use super::*;

    fn verifier(options: ToolCallOptions) -> ToolCall {
        ToolCall::new(options).expect("valid options")
    }

    fn sample(completion: &str, reference: Value) -> Sample {
        Sample {
            reference: Some(Reference::Json(reference)),
            ..Sample::new("", completion)
        }
    }

    /// `[total, format, correctness]` with the given options, panicking on a non-score.
    fn scores_with(options: ToolCallOptions, sample: &Sample) -> [f64; 3] {
        let output = verifier(options).score(sample, &mut Budget::default().meter());
        let value = |o: &Outcome| o.value().unwrap_or_else(|| panic!("not scored: {o}"));
        assert_eq!(output.components.len(), 2);
        [
            value(&output.outcome),
            value(&output.components[0]),
            value(&output.components[1]),
        ]
    }

    /// Checks `[total, format, correctness]` under default options.
    fn check(completion: &str, reference: Value, expected: [f64; 3]) {
        check_with(ToolCallOptions::default(), completion, reference, expected);
    }

    fn check_with(
        options: ToolCallOptions,
        completion: &str,
        reference: Value,
        expected: [f64; 3],
    ) {
        let got = scores_with(options, &sample(completion, reference));
        for (g, e) in got.iter().zip(expected) {
            assert!(
                (g - e).abs() < 1e-12,
                "completion {completion:?}: got {got:?}, expected {expected:?}"
            );
        }
    }

    /// The format component alone under `options`.
    fn format_with(options: &ToolCallOptions, completion: &str, reference: Value) -> f64 {
        scores_with(options.clone(), &sample(completion, reference))[1]
    }

    fn wrap(calls: &str) -> String {
        format!("<think>Let me call the tools.</think>\n<tool_call>\n{calls}\n</tool_call>")
    }

    fn kind_of(options: ToolCallOptions, sample: &Sample, budget: Budget) -> RewardOutput {
        verifier(options).score(sample, &mut budget.meter())
    }

    #[test]
    fn exact_match_scores_four() {
        let reference = json!([{"name": "f", "arguments": {"a": 1, "b": "x"}}]);
        check(
            &wrap(r#"{"name": "f", "arguments": {"b": "x", "a": 1}}"#),
            reference.clone(),
            [4.0, 1.0, 3.0],
        );
        // `parameters` is ToolRL's key; a list inside the block; a pretty-printed object.
        check(
            &wrap(r#"{"name": "f", "parameters": {"a": 1, "b": "x"}}"#),
            reference.clone(),
            [4.0, 1.0, 3.0],
        );
        check(
            &wrap(r#"[{"name": "f", "arguments": {"a": 1, "b": "x"}}]"#),
            reference.clone(),
            [4.0, 1.0, 3.0],
        );
        check(
            &wrap("{\n  \"name\": \"f\",\n  \"arguments\": {\"a\": 1, \"b\": \"x\"}\n}"),
            reference.clone(),
            [4.0, 1.0, 3.0],
        );
        // 1 equals 1.0, as in Python; OpenAI-style string-encoded arguments are decoded.
        check(
            &wrap(r#"{"name": "f", "arguments": {"a": 1.0, "b": "x"}}"#),
            reference.clone(),
            [4.0, 1.0, 3.0],
        );
        check(
            &wrap(r#"{"name": "f", "arguments": "{\"a\": 1, \"b\": \"x\"}"}"#),
            reference,
            [4.0, 1.0, 3.0],
        );
    }

    #[test]
    fn partial_parameters_match_hand_computation() {
        // S = J({f},{f}) + [J({a,b},{a,b}) + 1 correct value] = 1 + 2 = 3; S_max = 1 + 3 = 4;
        // R = 6·3/4 − 3 = 1.5.
        check(
            &wrap(r#"{"name": "f", "arguments": {"a": 1, "b": 3}}"#),
            json!([{"name": "f", "arguments": {"a": 1, "b": 2}}]),
            [2.5, 1.0, 1.5],
        );
        // Names {f,g} vs {f,h}: J = 1/3. f: J({a,b},{a}) = 1/2 plus a correct → 1.5. g: no
        // same-name prediction. S = 1/3 + 3/2 = 11/6; S_max = 1 + 3 + 2 = 6; R = 11/6 − 3.
        check(
            &wrap(
                "{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n\
                 {\"name\": \"h\", \"arguments\": {\"z\": 1}}",
            ),
            json!([
                {"name": "f", "arguments": {"a": 1, "b": 2}},
                {"name": "g", "arguments": {"x": "y"}}
            ]),
            [1.0 + 11.0 / 6.0 - 3.0, 1.0, 11.0 / 6.0 - 3.0],
        );
        // A wrong type is a wrong value: S = 1 + (1 + 0) = 2; S_max = 3; R = 1.
        check(
            &wrap(r#"{"name": "f", "arguments": {"a": "1"}}"#),
            json!([{"name": "f", "arguments": {"a": 1}}]),
            [2.0, 1.0, 1.0],
        );
        // An extra argument: J({a},{a,c}) = 1/2, a correct: S = 1 + 1.5; S_max = 3; R = 2.
        check(
            &wrap(r#"{"name": "f", "arguments": {"a": 1, "c": 0}}"#),
            json!([{"name": "f", "arguments": {"a": 1}}]),
            [3.0, 1.0, 2.0],
        );
        // Right name, nothing else right: the call scores 0 and is not taken. S = 1; S_max = 3;
        // R = 6/3 − 3 = −1.
        check(
            &wrap(r#"{"name": "f", "arguments": {"b": 1}}"#),
            json!([{"name": "f", "arguments": {"a": 1}}]),
            [0.0, 1.0, -1.0],
        );
        // No arguments expected, some given: J(∅,{a}) = 0. S = 1; S_max = 2; R = 0.
        check(
            &wrap(r#"{"name": "f", "arguments": {"a": 1}}"#),
            json!([{"name": "f", "arguments": {}}]),
            [1.0, 1.0, 0.0],
        );
        // Nested values must match whole.
        check(
            &wrap(r#"{"name": "f", "arguments": {"a": {"x": [1, 2]}, "b": [3]}}"#),
            json!([{"name": "f", "arguments": {"a": {"x": [1, 2]}, "b": [4]}}]),
            [2.5, 1.0, 1.5],
        );
    }

    #[test]
    fn duplicate_calls_count_as_a_multiset() {
        // Names [f] vs [f,f]: J = 1/2; f takes one prediction for 2. S = 2.5; S_max = 3; R = 2.
        check(
            &wrap(
                "{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n\
                 {\"name\": \"f\", \"arguments\": {\"a\": 1}}",
            ),
            json!([{"name": "f", "arguments": {"a": 1}}]),
            [3.0, 1.0, 2.0],
        );
        // Names [f,f] vs [f]: J = 1/2; the second f finds nothing unused. S = 2.5; S_max = 5.
        check(
            &wrap(r#"{"name": "f", "arguments": {"a": 1}}"#),
            json!([
                {"name": "f", "arguments": {"a": 1}},
                {"name": "f", "arguments": {"a": 1}}
            ]),
            [1.0, 1.0, 0.0],
        );
        // Order is ignored: the same calls in another order (two blocks' worth) are exact.
        check(
            &wrap(
                "{\"name\": \"g\", \"arguments\": {}}\n{\"name\": \"f\", \"arguments\": {\"a\": 2}}",
            ),
            json!([{"name": "f", "arguments": {"a": 2}}, {"name": "g", "arguments": {}}]),
            [4.0, 1.0, 3.0],
        );
    }

    #[test]
    fn malformed_predictions_score_the_bottom() {
        let reference = json!([{"name": "f", "arguments": {"a": 1}}]);
        for calls in [
            r#"{"name": "f", "arguments": {"a": 1}"#, // unbalanced
            r#"{"name": 7, "arguments": {"a": 1}}"#,  // name not a string
            r#"{"arguments": {"a": 1}}"#,             // no name
            r#"{"name": "f", "arguments": [1]}"#,     // arguments not an object
            r#"{"name": "f", "arguments": "[1]"}"#,   // string arguments not an object
            r#"{"name": "f", "arguments": {}, "parameters": {}}"#, // ambiguous
            r#"[{"name": "f"}, 3]"#,                  // junk in the list
            r#"[[{"name": "f", "arguments": {"a": 1}}]]"#, // nested list
            "\"f\"",
            "null",
            "",
        ] {
            check(&wrap(calls), reference.clone(), [-2.0, 1.0, -3.0]);
        }
        // An unclosed block: format and correctness both fail.
        check(
            "<think>x</think>\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
            reference.clone(),
            [-3.0, 0.0, -3.0],
        );
        // No call at all predicts nothing: R = 6·0/2 − 3.
        check("<think>x</think>\nI cannot.", reference, [-3.0, 0.0, -3.0]);
    }

    #[test]
    fn nested_junk_is_refused_not_recursed_into() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        check(&wrap(&deep), json!([{"name": "f"}]), [-2.0, 1.0, -3.0]);
        let deep_arg = format!(
            r#"{{"name": "f", "arguments": {{"a": {}1{}}}}}"#,
            "[".repeat(500),
            "]".repeat(500)
        );
        check(&wrap(&deep_arg), json!([{"name": "f"}]), [-2.0, 1.0, -3.0]);

        // A structured reference built in code deeper than the limit is unscorable.
        let mut value = json!(1);
        for _ in 0..200 {
            value = json!([value]);
        }
        let reference = json!([{"name": "f", "arguments": {"a": value}}]);
        let output = kind_of(
            ToolCallOptions::default(),
            &sample(&wrap(r#"{"name": "f"}"#), reference),
            Budget::default(),
        );
        assert_eq!(output.outcome.kind(), OutcomeKind::Unscorable);
    }

    #[test]
    fn a_megabyte_of_tags_is_bounded() {
        let tags = "<tool_call>".repeat(1 << 20 >> 4);
        let reference = json!([{"name": "f", "arguments": {"a": 1}}]);
        check(&tags, reference.clone(), [-3.0, 0.0, -3.0]);
        let closed = "<tool_call></tool_call>".repeat(40_000);
        check(&closed, reference.clone(), [-3.0, 0.0, -3.0]);

        // Many valid calls: scored with the default budget, timed out with a small one.
        let line = "{\"name\": \"f\", \"arguments\": {\"a\": 2}}\n";
        let many = wrap(&line.repeat(20_000));
        let output = kind_of(
            ToolCallOptions::default(),
            &sample(&many, reference.clone()),
            Budget::default(),
        );
        assert_eq!(output.outcome.kind(), OutcomeKind::Scored);
        let small = Budget {
            max_steps: 100_000,
            ..Budget::default()
        };
        let output = kind_of(ToolCallOptions::default(), &sample(&many, reference), small);
        assert_eq!(output.outcome, Outcome::TimedOut);
        assert_eq!(
            output.components,
            vec![Outcome::TimedOut, Outcome::TimedOut]
        );
    }

    #[test]
    fn empty_call_lists() {
        // Nothing expected, nothing called: a think block alone is the format, and it is exact.
        check("<think>No tool needed.</think>", json!([]), [4.0, 1.0, 3.0]);
        // Nothing expected, something called: S = J(∅, {f}) = 0, S_max = 1.
        check(&wrap(r#"{"name": "f"}"#), json!([]), [-3.0, 0.0, -3.0]);
        // An empty list in a block predicts nothing, but the tags spoil the format.
        check(&wrap("[]"), json!([]), [3.0, 0.0, 3.0]);
        // Calls expected, an empty list predicted.
        check(&wrap("[]"), json!([{"name": "f"}]), [-2.0, 1.0, -3.0]);
    }

    /// A chat completion that calls tools through OpenAI-style `tool_calls` fields (null content)
    /// is scored on those calls, exactly as the same calls written in `<tool_call>` blocks.
    #[test]
    fn structured_tool_calls_in_chat_messages_are_scored() {
        let reference = json!([{"name": "f", "arguments": {"a": 1}}, {"name": "g"}]);
        let structured = |calls: Value| Sample {
            completion: rewardkit_core::Completion::Chat(vec![
                Message::new("user", "call f and g"),
                Message {
                    tool_calls: Some(calls),
                    ..Message::new("assistant", "<think>Two calls.</think>")
                },
            ]),
            reference: Some(Reference::Json(reference.clone())),
            ..Sample::default()
        };
        // One block per call (the Hermes/Qwen layout) needs `multiple_blocks`.
        let options = ToolCallOptions {
            multiple_blocks: true,
            ..ToolCallOptions::default()
        };
        let openai = structured(json!([
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}},
            {"id": "2", "type": "function", "function": {"name": "g", "arguments": "{}"}}
        ]));
        assert_eq!(scores_with(options.clone(), &openai), [4.0, 1.0, 3.0]);
        let tagged = sample(
            "<think>Two calls.</think>\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n\
             </tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>",
            reference.clone(),
        );
        assert_eq!(scores_with(options.clone(), &tagged), [4.0, 1.0, 3.0]);
        // A wrong argument costs what it costs in text form.
        let wrong = structured(json!([
            {"function": {"name": "f", "arguments": {"a": 2}}},
            {"function": {"name": "g"}}
        ]));
        let [total, format, correctness] = scores_with(options, &wrong);
        assert_eq!(format, 1.0);
        assert!(correctness < 3.0 && (total - format - correctness).abs() < 1e-12);
    }

    #[test]
    fn references_in_every_accepted_shape() {
        let completion = wrap(r#"{"name": "f", "arguments": {"a": 1}}"#);
        for reference in [
            json!({"name": "f", "arguments": {"a": 1}}),
            json!([{"name": "f", "parameters": {"a": 1}}]),
            json!(r#"[{"name": "f", "arguments": {"a": 1}}]"#),
            json!(r#"{"name": "f", "arguments": {"a": 1}}"#),
            json!("<think>t</think>\n<tool_call>\n{\"name\": \"f\", \"parameters\": {\"a\": 1}}\n</tool_call>"),
        ] {
            check(&completion, reference, [4.0, 1.0, 3.0]);
        }
        let text = Sample {
            reference: Some(Reference::Text(
                r#"[{"name": "f", "arguments": {"a": 1}}]"#.into(),
            )),
            ..Sample::new("", completion.clone())
        };
        assert_eq!(
            scores_with(ToolCallOptions::default(), &text),
            [4.0, 1.0, 3.0]
        );

        // ToolRL's layout with a response: the format now needs the response block.
        let reference = json!(
            "<think>t</think>\n<tool_call>\n{\"name\": \"f\", \"parameters\": {\"a\": 1}}\n\
             </tool_call>\n<response>Done.</response>"
        );
        check(&completion, reference.clone(), [3.0, 0.0, 3.0]);
        check(
            &format!("{completion}\n<response>Calling f.</response>"),
            reference,
            [4.0, 1.0, 3.0],
        );
    }

    #[test]
    fn reference_problems_are_unscorable() {
        let completion = wrap(r#"{"name": "f"}"#);
        let verifier = verifier(ToolCallOptions::default());
        let missing = Sample::new("", completion.clone());
        let output = verifier.score(&missing, &mut Budget::default().meter());
        assert_eq!(output.outcome, Outcome::unscorable("missing reference"));
        assert_eq!(output.components.len(), 2);
        for reference in [
            json!("not json"),
            json!(42),
            json!(null),
            json!([1, 2]),
            json!({"tool": "f"}),
            json!("<tool_call>{broken</tool_call>"),
        ] {
            let output = verifier.score(
                &sample(&completion, reference.clone()),
                &mut Budget::default().meter(),
            );
            assert_eq!(
                output.outcome,
                Outcome::unscorable("reference is not a list of tool calls"),
                "{reference}"
            );
        }
    }

    #[test]
    fn format_follows_the_reference() {
        let calls = json!([{"name": "f"}]);
        let default = ToolCallOptions::default();
        let cases: &[(&str, f64)] = &[
            (
                "<think>a</think>\n<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
                1.0,
            ),
            (
                "  <think>a</think><tool_call>{\"name\": \"f\"}</tool_call>\n\n",
                1.0,
            ),
            (
                "<think>a</think>\n\n<tool_call>{\"name\": \"f\"}</tool_call>",
                1.0,
            ),
            ("<tool_call>{\"name\": \"f\"}</tool_call>", 0.0),
            (
                "Sure. <think>a</think><tool_call>{\"name\": \"f\"}</tool_call>",
                0.0,
            ),
            (
                "<think>a</think><tool_call>{\"name\": \"f\"}</tool_call> done",
                0.0,
            ),
            (
                "<think>a<tool_call></think><tool_call>{\"name\": \"f\"}</tool_call>",
                0.0,
            ),
            (
                "<think>a</think><tool_call>{}</tool_call><response>x</response>",
                0.0,
            ),
            (
                "<think>a</think><tool_call>{}</tool_call><tool_call>{}</tool_call>",
                0.0,
            ),
            ("<think>a</think>", 0.0),
            ("<think>a<tool_call>{\"name\": \"f\"}</tool_call>", 0.0),
            ("", 0.0),
        ];
        for &(completion, expected) in cases {
            assert_eq!(
                format_with(&default, completion, calls.clone()),
                expected,
                "{completion:?}"
            );
        }

        let multiple = ToolCallOptions {
            multiple_blocks: true,
            ..ToolCallOptions::default()
        };
        let two = "<think>a</think>\n<tool_call>{}</tool_call>\n<tool_call>{}</tool_call>";
        assert_eq!(format_with(&multiple, two, calls.clone()), 1.0);
        assert_eq!(format_with(&default, two, calls.clone()), 0.0);

        let no_think = ToolCallOptions {
            require_think: false,
            ..ToolCallOptions::default()
        };
        assert_eq!(
            format_with(&no_think, "<tool_call>{}</tool_call>", calls.clone()),
            1.0
        );
        assert_eq!(
            format_with(
                &no_think,
                "<think>a</think><tool_call>{}</tool_call>",
                calls.clone()
            ),
            1.0
        );
        assert_eq!(format_with(&no_think, "Hello there.", json!([])), 1.0);
        assert_eq!(format_with(&default, "Hello there.", json!([])), 0.0);
        assert_eq!(
            format_with(&default, "<think>a</think> Hello.", json!([])),
            0.0
        );

        let strict = ToolCallOptions {
            strict_whitespace: true,
            ..ToolCallOptions::default()
        };
        for (completion, expected) in [
            ("<think>a</think>\n<tool_call>\n{}\n</tool_call>", 1.0),
            ("<think>a</think>\n<tool_call>\n{}\n</tool_call>\n", 1.0),
            ("<think>a</think>\n<tool_call>{}</tool_call>", 0.0),
            ("<think>a</think> <tool_call>\n{}\n</tool_call>", 0.0),
            (" <think>a</think>\n<tool_call>\n{}\n</tool_call>", 0.0),
            ("<think>a</think>\n<tool_call>\n</tool_call>", 0.0),
        ] {
            assert_eq!(
                format_with(&strict, completion, calls.clone()),
                expected,
                "{completion:?}"
            );
        }

        let response = ToolCallOptions {
            expect_response: true,
            ..ToolCallOptions::default()
        };
        assert_eq!(
            format_with(
                &response,
                "<think>a</think>\n<tool_call>{}</tool_call>\n<response>ok</response>",
                calls.clone()
            ),
            1.0
        );
        assert_eq!(
            format_with(
                &response,
                "<think>a</think>\n<response>ok</response>",
                json!([])
            ),
            1.0
        );
        assert_eq!(
            format_with(
                &response,
                "<think>a</think>\n<response>ok</response><response>again</response>",
                json!([])
            ),
            0.0
        );
    }

    #[test]
    fn coarse_and_intermediate_correctness() {
        let reference = json!([
            {"name": "f", "arguments": {"a": 1, "b": 2}},
            {"name": "g", "arguments": {"x": 1}}
        ]);
        let near = wrap(
            "{\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": 2}}\n\
             {\"name\": \"g\", \"arguments\": {\"x\": 2}}",
        );
        let exact = wrap(
            "{\"name\": \"g\", \"arguments\": {\"x\": 1}}\n\
             {\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": 2}}",
        );
        // Fine: S = 1 + (1 + 2) + (1 + 0) = 5; S_max = 1 + 3 + 2 = 6; R = 2.
        check(&near, reference.clone(), [3.0, 1.0, 2.0]);
        let coarse = ToolCallOptions {
            correctness: CorrectnessMode::Coarse,
            ..ToolCallOptions::default()
        };
        check_with(coarse.clone(), &near, reference.clone(), [-2.0, 1.0, -3.0]);
        check_with(coarse, &exact, reference.clone(), [4.0, 1.0, 3.0]);
        // Intermediate: S = 1 + 1 (f exact) + 0 (g differs); S_max = 1 + 2; R = 1.
        let intermediate = ToolCallOptions {
            correctness: CorrectnessMode::Intermediate,
            ..ToolCallOptions::default()
        };
        check_with(
            intermediate.clone(),
            &near,
            reference.clone(),
            [2.0, 1.0, 1.0],
        );
        check_with(intermediate, &exact, reference, [4.0, 1.0, 3.0]);
    }

    fn at_step(
        options: &ToolCallOptions,
        completion: &str,
        reference: Value,
        step: u64,
    ) -> [f64; 3] {
        let mut sample = sample(completion, reference);
        sample.metadata.insert("step".into(), json!(step));
        scores_with(options.clone(), &sample)
    }

    fn assert_close(got: [f64; 3], expected: [f64; 3]) {
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-12, "got {got:?}, expected {expected:?}");
        }
    }

    #[test]
    fn dynamic_schedule_endpoints() {
        let dynamic = ToolCallOptions {
            schedule: Schedule::Dynamic,
            ..ToolCallOptions::default()
        };
        let reference = json!([{"name": "f", "arguments": {"a": 1, "b": 2}}]);
        let exact = wrap(r#"{"name": "f", "arguments": {"a": 1, "b": 2}}"#);
        let partial = wrap(r#"{"name": "f", "arguments": {"a": 1, "b": 3}}"#);
        let broken = "no tags, no calls";
        // Step 0: format [−2, 2], correctness [−2, 2].
        assert_close(
            at_step(&dynamic, &exact, reference.clone(), 0),
            [4.0, 2.0, 2.0],
        );
        assert_close(
            at_step(&dynamic, broken, reference.clone(), 0),
            [-4.0, -2.0, -2.0],
        );
        // S/S_max = 3/4: R = 4·3/4 − 2 = 1.
        assert_close(
            at_step(&dynamic, &partial, reference.clone(), 0),
            [3.0, 2.0, 1.0],
        );
        // Step 75 (half way): format [−1.5, 1.5], correctness [−2.5, 2.5].
        assert_close(
            at_step(&dynamic, &exact, reference.clone(), 75),
            [4.0, 1.5, 2.5],
        );
        assert_close(
            at_step(&dynamic, broken, reference.clone(), 75),
            [-4.0, -1.5, -2.5],
        );
        // Step 150 and beyond: format [−1, 1], correctness [−3, 3].
        for step in [150, 151, 10_000] {
            assert_close(
                at_step(&dynamic, &exact, reference.clone(), step),
                [4.0, 1.0, 3.0],
            );
            assert_close(
                at_step(&dynamic, broken, reference.clone(), step),
                [-4.0, -1.0, -3.0],
            );
            assert_close(
                at_step(&dynamic, &partial, reference.clone(), step),
                [2.5, 1.0, 1.5],
            );
        }
        // A shorter ramp reaches the end sooner.
        let short = ToolCallOptions {
            schedule_steps: 10,
            ..dynamic
        };
        assert_close(at_step(&short, &exact, reference, 10), [4.0, 1.0, 3.0]);
    }

    #[test]
    fn max1_step30_max3_schedule() {
        let options = ToolCallOptions {
            schedule: Schedule::Max1Step30Max3,
            ..ToolCallOptions::default()
        };
        let reference = json!([{"name": "f", "arguments": {"a": 1, "b": 2}}]);
        let exact = wrap(r#"{"name": "f", "arguments": {"a": 1, "b": 2}}"#);
        let partial = wrap(r#"{"name": "f", "arguments": {"a": 1, "b": 3}}"#);
        assert_close(
            at_step(&options, &exact, reference.clone(), 0),
            [2.0, 1.0, 1.0],
        );
        assert_close(
            at_step(&options, &exact, reference.clone(), 29),
            [2.0, 1.0, 1.0],
        );
        assert_close(
            at_step(&options, "x", reference.clone(), 29),
            [-1.0, 0.0, -1.0],
        );
        // R = 2·3/4 − 1 = 0.5 before step 30; 1.5 from step 30.
        assert_close(
            at_step(&options, &partial, reference.clone(), 29),
            [1.5, 1.0, 0.5],
        );
        assert_close(
            at_step(&options, &partial, reference.clone(), 30),
            [2.5, 1.0, 1.5],
        );
        assert_close(at_step(&options, &exact, reference, 30), [4.0, 1.0, 3.0]);
    }

    #[test]
    fn the_step_comes_from_metadata_then_options() {
        let reference = json!([{"name": "f"}]);
        let exact = wrap(r#"{"name": "f"}"#);
        let with_option = ToolCallOptions {
            schedule: Schedule::Dynamic,
            step: Some(150),
            ..ToolCallOptions::default()
        };
        // The option is the fallback; metadata wins.
        assert_close(
            scores_with(with_option.clone(), &sample(&exact, reference.clone())),
            [4.0, 1.0, 3.0],
        );
        assert_close(
            at_step(&with_option, &exact, reference.clone(), 0),
            [4.0, 2.0, 2.0],
        );
        let mut float_step = sample(&exact, reference.clone());
        float_step.metadata.insert("step".into(), json!(0.0));
        assert_close(scores_with(with_option, &float_step), [4.0, 2.0, 2.0]);

        let without = verifier(ToolCallOptions {
            schedule: Schedule::Dynamic,
            ..ToolCallOptions::default()
        });
        let output = without.score(
            &sample(&exact, reference.clone()),
            &mut Budget::default().meter(),
        );
        assert_eq!(output.outcome, Outcome::unscorable("missing training step"));
        for bad in [json!(-1), json!(1.5), json!("3"), json!(null)] {
            let mut s = sample(&exact, reference.clone());
            s.metadata.insert("step".into(), bad);
            let output = without.score(&s, &mut Budget::default().meter());
            assert_eq!(output.outcome.kind(), OutcomeKind::Unscorable);
        }
        // The fixed schedule ignores the step entirely.
        let mut s = sample(&exact, reference);
        s.metadata.insert("step".into(), json!("junk"));
        assert_eq!(scores_with(ToolCallOptions::default(), &s), [4.0, 1.0, 3.0]);
    }

    #[test]
    fn bare_json_option() {
        let bare = ToolCallOptions {
            bare_json: true,
            ..ToolCallOptions::default()
        };
        let reference = json!([{"name": "f", "arguments": {"a": 1}}]);
        check_with(
            bare.clone(),
            r#"[{"name": "f", "arguments": {"a": 1}}]"#,
            reference.clone(),
            [3.0, 0.0, 3.0],
        );
        check_with(
            bare.clone(),
            "<think>t</think>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
            reference.clone(),
            [3.0, 0.0, 3.0],
        );
        check_with(
            bare.clone(),
            "[{\"name\": ",
            reference.clone(),
            [-3.0, 0.0, -3.0],
        );
        check_with(bare.clone(), "Just text.", json!([]), [3.0, 0.0, 3.0]);
        // Without the option, bare JSON predicts nothing.
        check(
            r#"[{"name": "f", "arguments": {"a": 1}}]"#,
            reference.clone(),
            [-3.0, 0.0, -3.0],
        );
        // Tags win over bare JSON when both are there.
        check_with(
            bare,
            &wrap(r#"{"name": "f", "arguments": {"a": 1}}"#),
            reference,
            [4.0, 1.0, 3.0],
        );
    }

    #[test]
    fn chat_completions_and_oversize_inputs() {
        let reference = json!([{"name": "f"}]);
        let chat = Sample {
            completion: rewardkit_core::Completion::Chat(vec![
                Message::new("user", "call f"),
                Message::new("assistant", wrap(r#"{"name": "f"}"#)),
            ]),
            reference: Some(Reference::Json(reference.clone())),
            ..Sample::default()
        };
        assert_eq!(
            scores_with(ToolCallOptions::default(), &chat),
            [4.0, 1.0, 3.0]
        );

        let tiny = Budget {
            max_input_bytes: 8,
            ..Budget::default()
        };
        let output = kind_of(
            ToolCallOptions::default(),
            &sample(&wrap("{}"), reference),
            tiny,
        );
        assert_eq!(output.outcome, Outcome::unscorable("input too large"));
        assert_eq!(output.components.len(), 2);
    }

    #[test]
    fn options_deserialise_and_validate() {
        let options: ToolCallOptions = serde_json::from_value(json!({
            "schedule": "max1step30max3", "correctness": "intermediate", "step": 12,
            "require_think": false
        }))
        .unwrap();
        assert_eq!(options.schedule, Schedule::Max1Step30Max3);
        assert_eq!(options.correctness, CorrectnessMode::Intermediate);
        assert_eq!(options.step, Some(12));
        assert!(!options.require_think);
        assert_eq!(options.schedule_steps, 150);
        assert!(serde_json::from_value::<ToolCallOptions>(json!({"sched": "fixed"})).is_err());
        assert!(serde_json::from_value::<ToolCallOptions>(json!({"schedule": "linear"})).is_err());
        assert!(serde_json::from_value::<ToolCallOptions>(json!({"step": -1})).is_err());
        let error = ToolCall::new(ToolCallOptions {
            schedule_steps: 0,
            ..ToolCallOptions::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("schedule_steps"), "{error}");
        let verifier = verifier(ToolCallOptions::default());
        assert_eq!(verifier.kind(), "tool_call");
        assert_eq!(verifier.component_names(), &["format", "correctness"]);
    }
}
