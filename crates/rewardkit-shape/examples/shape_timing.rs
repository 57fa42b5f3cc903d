//! Times advantage estimators and GAE on inputs written by `bench/shape_advantages.py` (raw
//! little-endian `f64` files), and writes the results back for the script to compare with NumPy.
//!
//! `shape_timing DIR REPEATS GROUP_SIZE EPISODE_LENGTH`: reads `DIR/rewards.f64`,
//! `DIR/step_rewards.f64`, `DIR/step_values.f64`; prints one JSON object with the median seconds
//! of each operation over `REPEATS` runs; writes `DIR/rust_*.f64`.

use std::time::Instant;

use rewardkit_shape::{advantages, advantages_into, gae, gae_into, Estimator, Groups};

fn read(path: &str) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect()
}

fn write(path: &str, values: &[f64]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// The median and the fastest of `repeats` timed calls, and the last call's result. On a
/// shared machine other processes only ever add time, so the fastest call is the closest to the
/// cost of the work itself; the median says how typical that was.
fn median_seconds<T>(repeats: usize, mut f: impl FnMut() -> T) -> ((f64, f64), T) {
    let mut times = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats {
        let start = Instant::now();
        let out = f();
        times.push(start.elapsed().as_secs_f64());
        last = Some(out);
    }
    times.sort_by(f64::total_cmp);
    (
        (times[times.len() / 2], times[0]),
        last.expect("at least one repeat"),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, repeats, group_size, episode_length] = &args[..] else {
        eprintln!("usage: shape_timing DIR REPEATS GROUP_SIZE EPISODE_LENGTH");
        std::process::exit(2);
    };
    let repeats: usize = repeats.parse().expect("REPEATS is a number");
    let group_size: usize = group_size.parse().expect("GROUP_SIZE is a number");
    let episode_length: usize = episode_length.parse().expect("EPISODE_LENGTH is a number");
    let rewards = read(&format!("{dir}/rewards.f64"));
    let step_rewards = read(&format!("{dir}/step_rewards.f64"));
    let step_values = read(&format!("{dir}/step_values.f64"));

    let mut timings = Vec::new();
    // The group table is part of the work (a trainer builds it from group ids every step).
    // Each estimator is timed twice: allocating its output (as the NumPy side does), and into a
    // buffer reused across calls (`advantages_into`, as a trainer holding its buffers would).
    let mut buffer = vec![0.0; rewards.len()];
    for (name, estimator) in [
        ("grpo", Estimator::GRPO),
        ("dr_grpo", Estimator::DrGrpo),
        ("rloo", Estimator::Rloo),
        ("reinforce_pp", Estimator::reinforce_plus_plus(false)),
        (
            "reinforce_pp_baseline",
            Estimator::reinforce_plus_plus(true),
        ),
    ] {
        let (seconds, out) = median_seconds(repeats, || {
            let groups = Groups::uniform(rewards.len(), group_size).expect("group size ≥ 1");
            advantages(&rewards, &groups, &estimator, false).expect("valid request")
        });
        write(&format!("{dir}/rust_{name}.f64"), &out.values);
        timings.push(format!(
            "\"{name}\": {}, \"{name}_min\": {}",
            seconds.0, seconds.1
        ));
        let (seconds, _) = median_seconds(repeats, || {
            let groups = Groups::uniform(rewards.len(), group_size).expect("group size ≥ 1");
            advantages_into(&rewards, &groups, &estimator, false, &mut buffer)
                .expect("valid request")
        });
        assert_eq!(
            buffer.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            out.values.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "advantages_into differs from advantages"
        );
        timings.push(format!(
            "\"{name}_into\": {}, \"{name}_into_min\": {}",
            seconds.0, seconds.1
        ));
    }
    // The floor under every estimator: read the rewards and write as many values (a copy).
    let (seconds, out) = median_seconds(repeats, || rewards.to_vec());
    write(&format!("{dir}/rust_copy.f64"), &out);
    timings.push(format!(
        "\"copy\": {}, \"copy_min\": {}",
        seconds.0, seconds.1
    ));
    let (seconds, _) = median_seconds(repeats, || buffer.copy_from_slice(&rewards));
    timings.push(format!(
        "\"copy_into\": {}, \"copy_into_min\": {}",
        seconds.0, seconds.1
    ));
    let lengths = vec![episode_length; step_rewards.len() / episode_length];
    let (seconds, out) = median_seconds(repeats, || {
        gae(&step_rewards, &step_values, &lengths, None, 0.99, 0.95).expect("valid request")
    });
    write(&format!("{dir}/rust_gae.f64"), &out.advantages);
    timings.push(format!(
        "\"gae\": {}, \"gae_min\": {}",
        seconds.0, seconds.1
    ));
    let mut returns = vec![0.0; step_rewards.len()];
    let mut advantages_buffer = vec![0.0; step_rewards.len()];
    let (seconds, _) = median_seconds(repeats, || {
        gae_into(
            &step_rewards,
            &step_values,
            &lengths,
            None,
            0.99,
            0.95,
            &mut advantages_buffer,
            &mut returns,
        )
        .expect("valid request")
    });
    assert_eq!(
        advantages_buffer, out.advantages,
        "gae_into differs from gae"
    );
    timings.push(format!(
        "\"gae_into\": {}, \"gae_into_min\": {}",
        seconds.0, seconds.1
    ));
    println!("{{{}}}", timings.join(", "));
}
