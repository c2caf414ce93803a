//! Prints the comparison table for p and m given as arguments (default 8 32).
use pipeblocks_core::compare::{compare, Row};
use pipeblocks_core::generators::Params;
use pipeblocks_core::SimConfig;

fn main() {
    let a: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let (p, m) = (
        a.first().copied().unwrap_or(8),
        a.get(1).copied().unwrap_or(32),
    );
    for row in compare(&Params::new(p, m), &SimConfig::default()).expect("compare") {
        match row {
            Row::Ok(s) => println!(
                "{:18} bubble {:.4} peak {:?} vs1f1b {:.3}",
                s.schedule, s.bubble_rate, s.peak_activation, s.peak_vs_1f1b
            ),
            Row::NotApplicable { schedule, reason } => println!("{schedule:18} n/a {reason}"),
        }
    }
}
