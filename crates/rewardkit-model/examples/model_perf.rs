//! The rewardkit side of `bench/model_perf.sh`: MiniLM inference sequences/s and full
//! fine-tuning pairs/s on real HH-RLHF texts. One process is one benchmark round; the script
//! alternates it with `bench/model_perf.py` (the PyTorch side) and reports medians and ratios.
//!
//! ```text
//! model_perf --model DIR --data FILE --dump-texts OUT          # texts both sides use
//! model_perf --model DIR --data FILE [--batches 1,16,64] [--seqs 8,32,64]
//!            [--train-batch 8] [--train-steps 3] [--max-length 128] [--embed-out FILE]
//! ```
//!
//! Inference runs `RewardModel::score` (tokenisation, encoder, mean pooling, linear head) on
//! the chosen texts of the first pairs, in file order, in consecutive batches. Training runs the
//! real trainer (`rewardkit_model::train`, BT loss, clipping, AdamW, every encoder weight
//! trained) once over the first `(steps + 1)·B` pairs in its own seeded order (one epoch, batch
//! `B`), timing each step from one `Step` event to the next; the first step is a warm-up (the
//! optimizer's state is allocated in it) and is not reported. `bench/model_perf.py` replays the
//! same order.
//! Results are JSON lines on stdout.

use std::path::PathBuf;
use std::time::Instant;

use rewardkit_model::data::{read_pairs, PairFields};
use rewardkit_model::encoder::{EncoderConfig, Pooling};
use rewardkit_model::{
    train, BackboneConfig, CheckpointOptions, Device, Event, Examples, HeadConfig, ModelConfig,
    RewardInput, RewardModel, TrainConfig,
};

struct Args {
    model: PathBuf,
    data: PathBuf,
    dump_texts: Option<PathBuf>,
    embed_out: Option<PathBuf>,
    batches: Vec<usize>,
    seqs: Vec<usize>,
    train_batch: usize,
    train_steps: usize,
    max_length: usize,
}

fn list(value: &str, flag: &str) -> Result<Vec<usize>, String> {
    value
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("{flag}: expected comma-separated counts, got `{value}`"))
        })
        .collect()
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        model: PathBuf::new(),
        data: PathBuf::new(),
        dump_texts: None,
        embed_out: None,
        batches: vec![1, 16, 64],
        seqs: vec![8, 32, 64],
        train_batch: 8,
        train_steps: 3,
        max_length: 128,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag}: expected a value"))?;
        let count = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: expected a count, got `{v}`"))
        };
        match flag.as_str() {
            "--model" => args.model = value.into(),
            "--data" => args.data = value.into(),
            "--dump-texts" => args.dump_texts = Some(value.into()),
            "--embed-out" => args.embed_out = Some(value.into()),
            "--batches" => args.batches = list(&value, &flag)?,
            "--seqs" => args.seqs = list(&value, &flag)?,
            "--train-batch" => args.train_batch = count(&value)?,
            "--train-steps" => args.train_steps = count(&value)?,
            "--max-length" => args.max_length = count(&value)?,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if args.model.as_os_str().is_empty() || args.data.as_os_str().is_empty() {
        return Err("--model DIR and --data FILE are required".into());
    }
    if args.batches.len() != args.seqs.len() {
        return Err("--batches and --seqs need the same number of entries".into());
    }
    Ok(args)
}

fn model(args: &Args, train_encoder: bool) -> Result<RewardModel, Box<dyn std::error::Error>> {
    let encoder = EncoderConfig {
        source: args.model.clone(),
        pooling: Pooling::Mean,
        max_length: args.max_length,
        train_encoder,
        bert: serde_json::Value::Null,
    };
    Ok(RewardModel::new(
        ModelConfig::new(BackboneConfig::Encoder(encoder), HeadConfig::Linear, &[]),
        1,
        &Device::Cpu,
    )?)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let pairs = read_pairs(&args.data, &PairFields::default())?;
    let text = |input: RewardInput| format!("{}{}", input.prompt, input.response);
    if let Some(out) = &args.dump_texts {
        let mut lines = String::new();
        for pair in &pairs {
            let row = serde_json::json!({
                "chosen": text(pair.chosen_input()),
                "rejected": text(pair.rejected_input()),
            });
            lines.push_str(&row.to_string());
            lines.push('\n');
        }
        std::fs::write(out, lines)?;
        return Ok(());
    }
    let threads = candle_core_threads();

    // Inference: the frozen encoder, as `rewardkit score` runs it.
    let scorer = model(&args, false)?;
    let chosen: Vec<RewardInput> = pairs.iter().map(|p| p.chosen_input()).collect();
    if let Some(out) = &args.embed_out {
        let n = chosen.len().min(4);
        let vectors = scorer.backbone().forward(&chosen[..n])?.to_vec2::<f32>()?;
        std::fs::write(out, serde_json::to_string(&vectors)?)?;
    }
    for (&batch, &seqs) in args.batches.iter().zip(&args.seqs) {
        if seqs > chosen.len() || batch == 0 {
            return Err(format!("{seqs} sequences asked, {} in the data", chosen.len()).into());
        }
        // One small untimed warm-up batch (thread pool, first touches of the weights).
        scorer.score(&chosen[..batch.min(seqs).min(2)])?;
        let (start, cpu_start) = (Instant::now(), cpu_seconds());
        for chunk in chosen[..seqs].chunks(batch) {
            scorer.score(chunk)?;
        }
        let seconds = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_start;
        println!(
            "{}",
            serde_json::json!({"side": "rewardkit", "mode": "infer", "batch": batch, "seqs": seqs,
                "seconds": seconds, "per_sec": seqs as f64 / seconds,
                "per_cpu_sec": seqs as f64 / cpu, "threads": threads})
        );
    }

    // Training: full fine-tuning, one call of the real trainer over (steps + 1) batches.
    if args.train_steps > 0 {
        let trainee = model(&args, true)?;
        let config = TrainConfig {
            epochs: 1,
            batch_size: args.train_batch,
            warmup_ratio: 0.0,
            ..TrainConfig::default()
        };
        let needed = (args.train_steps + 1) * args.train_batch;
        if needed > pairs.len() {
            return Err(format!("{needed} pairs needed, {} in the data", pairs.len()).into());
        }
        let data = Examples::Pairs(pairs[..needed].to_vec());
        let mut last = None;
        let mut times = Vec::new();
        let mut cpu_times = Vec::new();
        train(
            &trainee,
            &config,
            &data,
            None,
            &CheckpointOptions::default(),
            &mut |event| match event {
                Event::Start { .. } => last = Some((Instant::now(), cpu_seconds())),
                Event::Step { step, .. } => {
                    let now = (Instant::now(), cpu_seconds());
                    // Step 1 is the warm-up (the optimizer's state is allocated in it).
                    if let (Some(then), true) = (last, *step > 1) {
                        times.push(now.0.duration_since(then.0).as_secs_f64());
                        cpu_times.push(now.1 - then.1);
                    }
                    last = Some(now);
                }
                _ => {}
            },
        )?;
        if times.len() != args.train_steps {
            return Err(format!("the trainer reported {} timed steps", times.len()).into());
        }
        let seconds: f64 = times.iter().sum();
        let pairs_done = args.train_batch * args.train_steps;
        println!(
            "{}",
            serde_json::json!({"side": "rewardkit", "mode": "train", "batch": args.train_batch,
                "steps": args.train_steps, "seconds": seconds,
                "per_sec": pairs_done as f64 / seconds,
                "per_cpu_sec": pairs_done as f64 / cpu_times.iter().sum::<f64>(),
                "step_seconds": times, "threads": threads})
        );
    }
    Ok(())
}

/// CPU time of the whole process (all threads), in seconds: with one thread a measure of the
/// work that other processes on a shared machine disturb far less than wall time.
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// The thread count candle's matrix products use (`RAYON_NUM_THREADS`, else every core).
fn candle_core_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("model_perf: {e}");
        std::process::exit(2);
    }
}
