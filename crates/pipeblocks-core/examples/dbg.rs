use pipeblocks_core::generators::{generate, Params};
use pipeblocks_core::{simulate, SimConfig};
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let p: u32 = a[1].parse().unwrap();
    let m: u32 = a[2].parse().unwrap();
    let s = generate(&a[0], &Params::new(p, m)).unwrap();
    let r = simulate(&s, &SimConfig::default()).unwrap();
    for d in 0..p as usize {
        let mut line = String::new();
        let mut t = 0.0;
        for (i, ps) in s.lists[d].iter().enumerate() {
            while t + 1e-9 < r.start[d][i] {
                line.push_str(" .  ");
                t += 1.0;
            }
            line.push_str(&format!("{:<4}", format!("{}{}", ps.kind, ps.mb)));
            t = r.end[d][i];
        }
        println!("{line}");
    }
    println!("bubble {}", r.bubble_rate);
}
