//! `cargo run -p rewardkit-math --example verify -- GOLD PRED`: prints the verdict and why.
use rewardkit_core::Budget;
use rewardkit_math::{verify, MathOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: verify GOLD PRED");
        std::process::exit(2);
    }
    let verdict = verify(
        &args[1],
        &args[2],
        &MathOptions::default(),
        &mut Budget::default().meter(),
    );
    println!("{verdict}");
}
