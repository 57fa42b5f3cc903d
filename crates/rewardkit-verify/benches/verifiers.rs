//! Criterion benchmarks, one group per verifier kind.
//!
//! Each benchmark scores a fixed set of samples per iteration, each with a fresh meter from the
//! default budget (what a pipeline pays per sample), and reports throughput in samples, so
//! criterion's "time" is per set and its "thrpt" is samples per second. The `gsm8k` group reads
//! the 5,276 real model solutions of `../shared/data/gsm8k/example_model_solutions.jsonl` when
//! that file exists, and a few embedded synthetic solutions otherwise (it says which).
//!
//! Options are given as JSON, the way a spec gives them, so the benchmarks follow the verifiers'
//! option structs as they grow.
//!
//! Runs are kept short (20 samples, 2 s of measurement per benchmark):
//! `cargo bench -p rewardkit-verify` takes a couple of minutes. These numbers are rewardkit alone;
//! speed *claims* against peers come from `bench/gsm8k_peers.sh`, which runs them side by side.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use rewardkit_core::{Budget, Reference, Reward, Sample};
use rewardkit_verify::choice::MultipleChoice;
use rewardkit_verify::format::ThinkFormat;
use rewardkit_verify::length::{LengthCap, Repetition, SoftOverlong};
use rewardkit_verify::numeric::{extract_answer, Gsm8k};
use rewardkit_verify::text::{RegexMatch, StringMatch};
use rewardkit_verify::tool::ToolCall;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Deserialises options from JSON, as a spec would.
fn options<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("benchmark options are valid")
}

/// A short, quick configuration for every group.
fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

/// Benchmarks `reward` over `samples`, one fresh meter per sample.
fn bench_term(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    reward: &dyn Reward,
    samples: &[Sample],
) {
    let budget = Budget::default();
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function(id, |b| {
        b.iter(|| {
            for sample in samples {
                black_box(reward.score(black_box(sample), &mut budget.meter()));
            }
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

const SOLUTION_KEYS: [&str; 4] = [
    "6b_finetuning",
    "6b_verification",
    "175b_finetuning",
    "175b_verification",
];

/// The real GSM8K model solutions with their questions' worked answers as references, or a few
/// synthetic ones when the shared data folder is absent.
fn gsm8k_samples() -> Vec<Sample> {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/gsm8k/example_model_solutions.jsonl"
    ));
    if let Ok(text) = std::fs::read_to_string(path) {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let row: Value = serde_json::from_str(line).expect("the data file is valid JSONL");
            let reference = row["ground_truth"].as_str().expect("ground_truth is text");
            for key in SOLUTION_KEYS {
                let solution = row[key]["solution"].as_str().expect("solution is text");
                samples.push(Sample::new("", solution).with_reference(reference));
            }
        }
        eprintln!("gsm8k: {} real model solutions", samples.len());
        return samples;
    }
    eprintln!("gsm8k: ../shared/data not found, using synthetic solutions");
    let synthetic = [
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\nA: 18", "18"),
        ("It takes 2/2 = 1 bolt of white fiber, so 2 + 1 = 3 bolts in total.\n#### 3", "3"),
        ("The house cost 80,000 + 50,000 = $130,000. The profit is 200,000 - 130,000 = 70000.\nThe answer is $70,000.", "70000"),
        ("<think>He runs 3 sprints 3 times a week, 60 m each: 3 * 3 * 60 = 540.</think>\nSo he runs \\boxed{540} meters a week.", "540"),
        ("Each chicken eats 3 cups a day, 20 chickens eat 60 cups; minus 15 + 25 = 40 given already, 20 cups remain.", "20"),
        ("The glasses cost 5 + 3 = 8 dollars for a pair, 16 glasses are 8 pairs, 8 * 8 = 64.\nFinal answer: 64.00", "64"),
        ("Toulouse has 2 * 20 = 40 sheep, Charleston 4 * 20 = 80; together 20 + 40 + 80 = 140 sheep.", "260"),
        ("Carla downloads 40% of 200 GB = 80 GB in 80 / 2 = 40 minutes, then restarts: 20 + 40 + 100 = 160.\nA: 160", "160"),
    ];
    synthetic
        .iter()
        .map(|(solution, answer)| Sample::new("", *solution).with_reference(*answer))
        .collect()
}

/// Completions of roughly `target` bytes: reasoning inside `<think>`, then an answer, with some
/// repetition so that the repetition penalty has work to do.
fn prose_samples(target: usize) -> Vec<Sample> {
    let sentences = [
        "First, compute the total number of eggs laid per day, which is sixteen.",
        "She eats three of them and bakes four into muffins, leaving nine to sell.",
        "At two dollars per egg, the nine eggs bring in eighteen dollars a day.",
        "Let me double-check the arithmetic: 16 - 3 - 4 = 9 and 9 * 2 = 18.",
        "The answer is consistent with the question, so I am confident in it.",
    ];
    (0..8)
        .map(|seed: usize| {
            let mut text = String::from("<think>");
            let mut i = seed;
            while text.len() < target {
                text.push_str(sentences[i % sentences.len()]);
                text.push(' ');
                i = i * 7 + 3;
            }
            text.push_str("</think>\n<answer>18</answer>");
            Sample::new("How much does she make every day?", text).with_reference("18")
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------

fn gsm8k(c: &mut Criterion) {
    let samples = gsm8k_samples();
    let verifier = Gsm8k::new(options(json!({}))).expect("default options are valid");
    let strict = Gsm8k::new(options(json!({"strategies": ["hashes", "answer_line"]})))
        .expect("valid options");
    let mut group = group(c, "gsm8k");
    bench_term(&mut group, "score/default", &verifier, &samples);
    bench_term(&mut group, "score/strict", &strict, &samples);

    // Extraction alone, on the completions (no reference parsing).
    let texts: Vec<String> = samples
        .iter()
        .map(|s| s.completion.text().into_owned())
        .collect();
    let budget = Budget::default();
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.bench_function("extract_answer", |b| {
        b.iter(|| {
            for text in &texts {
                black_box(extract_answer(black_box(text), &mut budget.meter()).ok());
            }
        })
    });
    group.finish();
}

fn tool_call(c: &mut Criterion) {
    let reference = json!([
        {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
        {"name": "get_time", "arguments": {"timezone": "Europe/Paris"}}
    ]);
    let completions = [
        // Exact match.
        "<think>The user wants the weather and the time in Paris.</think>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n{\"name\": \"get_time\", \"arguments\": {\"timezone\": \"Europe/Paris\"}}\n</tool_call>",
        // Partial credit: a wrong value, a missing call.
        "<think>Weather first.</think>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"fahrenheit\"}}\n</tool_call>",
        // Broken JSON.
        "<think>Calling.</think>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"\n</tool_call>",
        // Bad format: no think block.
        "<tool_call>\n[{\"name\": \"get_time\", \"arguments\": {\"timezone\": \"Europe/Paris\"}}]\n</tool_call>",
    ];
    let samples: Vec<Sample> = completions
        .iter()
        .map(|text| Sample {
            reference: Some(Reference::Json(reference.clone())),
            ..Sample::new("What is the weather and the time in Paris?", *text)
        })
        .collect();
    let mut group = group(c, "tool_call");
    for mode in ["fine", "coarse"] {
        let verifier = ToolCall::new(options(json!({"correctness": mode}))).expect("valid options");
        bench_term(&mut group, mode, &verifier, &samples);
    }
    group.finish();
}

fn soft_overlong(c: &mut Criterion) {
    let mut group = group(c, "soft_overlong");
    for size in [400, 4000] {
        let samples = prose_samples(size);
        for unit in ["chars", "words"] {
            let verifier = SoftOverlong::new(options(
                json!({"max_length": 1000, "cache": 200, "unit": unit}),
            ))
            .expect("valid options");
            bench_term(&mut group, &format!("{unit}/{size}B"), &verifier, &samples);
        }
    }
    group.finish();
}

fn length_cap(c: &mut Criterion) {
    let mut group = group(c, "length_cap");
    for size in [400, 4000] {
        let samples = prose_samples(size);
        let verifier = LengthCap::new(options(json!({"max_length": 600, "unit": "words"})))
            .expect("valid options");
        bench_term(&mut group, &format!("words/{size}B"), &verifier, &samples);
    }
    group.finish();
}

fn repetition(c: &mut Criterion) {
    let mut group = group(c, "repetition");
    for size in [400, 4000] {
        let samples = prose_samples(size);
        for unit in ["words", "chars"] {
            let verifier = Repetition::new(options(json!({"ngram_size": 3, "unit": unit})))
                .expect("valid options");
            bench_term(&mut group, &format!("{unit}/{size}B"), &verifier, &samples);
        }
    }
    group.finish();
}

fn multiple_choice(c: &mut Criterion) {
    let completions = [
        (
            "Comparing the options, only (B) keeps the ratio constant. The answer is (B).",
            "B",
        ),
        ("Answer: C", "C"),
        (
            "<think>A is too small and D too large.</think> So I pick \\boxed{D}.",
            "B",
        ),
        ("Option A fails the second condition, so it must be E.", "E"),
        ("I am not sure which of these is right.", "A"),
    ];
    let samples: Vec<Sample> = completions
        .iter()
        .map(|(text, gold)| Sample::new("Which option is correct?", *text).with_reference(*gold))
        .collect();
    let verifier = MultipleChoice::new(options(json!({}))).expect("default options are valid");
    let mut group = group(c, "multiple_choice");
    bench_term(&mut group, "default", &verifier, &samples);
    group.finish();
}

fn string_match(c: &mut Criterion) {
    let completions = [
        ("The Eiffel Tower", "the eiffel tower"),
        ("  Paris,   France ", "Paris, France"),
        (
            "<think>It is the capital.</think><answer>Paris</answer>",
            "Paris",
        ),
        ("Berlin", "Paris"),
    ];
    let samples: Vec<Sample> = completions
        .iter()
        .map(|(text, gold)| Sample::new("Where?", *text).with_reference(*gold))
        .collect();
    let mut group = group(c, "string_match");
    let whole = StringMatch::new(options(json!({}))).expect("default options are valid");
    bench_term(&mut group, "whole", &whole, &samples);
    let squad = StringMatch::new(options(json!({
        "extract": "answer_tag", "strip_punctuation": true, "strip_articles": true
    })))
    .expect("valid options");
    bench_term(&mut group, "answer_tag_squad", &squad, &samples);
    group.finish();
}

fn regex_match(c: &mut Criterion) {
    let samples = prose_samples(400);
    let mut group = group(c, "regex_match");
    let fixed = RegexMatch::new(options(json!({
        "pattern": r"<answer>\s*-?\d+(\.\d+)?\s*</answer>\s*$"
    })))
    .expect("valid options");
    bench_term(&mut group, "fixed_pattern/400B", &fixed, &samples);
    let per_reference: Vec<Sample> = samples
        .iter()
        .map(|s| Sample {
            reference: Some(Reference::Text(r"<answer>18</answer>".into())),
            ..s.clone()
        })
        .collect();
    let from_reference =
        RegexMatch::new(options(json!({"pattern_from_reference": true}))).expect("valid options");
    bench_term(
        &mut group,
        "pattern_from_reference/400B",
        &from_reference,
        &per_reference,
    );
    group.finish();
}

fn think_format(c: &mut Criterion) {
    let mut samples = prose_samples(400);
    samples.extend(prose_samples(4000));
    // Malformed ones: a missing close tag, a second think block.
    samples.push(Sample::new(
        "",
        "<think>Sixteen minus seven is nine. The answer is 18",
    ));
    samples.push(Sample::new(
        "",
        "<think>a</think><think>b</think><answer>18</answer>",
    ));
    let mut group = group(c, "think_format");
    let plain = ThinkFormat::new(options(json!({}))).expect("default options are valid");
    bench_term(&mut group, "default", &plain, &samples);
    let tagged =
        ThinkFormat::new(options(json!({"require_answer_tag": true}))).expect("valid options");
    bench_term(&mut group, "require_answer_tag", &tagged, &samples);
    group.finish();
}

criterion_group!(
    benches,
    gsm8k,
    tool_call,
    soft_overlong,
    length_cap,
    repetition,
    multiple_choice,
    string_match,
    regex_match,
    think_format
);
criterion_main!(benches);
