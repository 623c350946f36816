//! `cargo run -p sim -- --scenario NAME --seed N`: runs one scenario (or a
//! sweep of seeds, or every scenario) and prints a summary.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use sim::collector::{find_collector, run_collector, CollectorScenario, COLLECTORS};
use sim::{find, run_setup, Options, SCENARIOS};

#[derive(Parser, Debug)]
#[command(about = "Runs the real sdt core in a turmoil network with faults and an attacker")]
struct Args {
    /// Scenario to run (see --list).
    #[arg(long)]
    scenario: Option<String>,
    /// Run every scenario.
    #[arg(long)]
    all: bool,
    /// One seed.
    #[arg(long)]
    seed: Option<u64>,
    /// A range of seeds, `A..B` (B excluded).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Print every trace line of the run (one seed only).
    #[arg(long)]
    trace: bool,
    /// Print the first N trace lines.
    #[arg(long)]
    head: Option<usize>,
    /// List the scenarios.
    #[arg(long)]
    list: bool,
    /// In a sweep, stop at the first failure.
    #[arg(long)]
    fail_fast: bool,
    /// Run for this many simulated seconds (customers send until 2 s
    /// before), instead of the scenario's length.
    #[arg(long)]
    run_for: Option<u64>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or("expected A..B")?;
    let a: u64 = a.parse().map_err(|e| format!("{e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("{e}"))?;
    if b <= a {
        return Err("empty range".into());
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for s in SCENARIOS {
            println!("{:<20} {}", s.name, s.about);
        }
        for s in COLLECTORS {
            println!("{:<20} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    let mut collectors: Vec<&CollectorScenario> = Vec::new();
    let scenarios: Vec<_> = match (&args.scenario, args.all) {
        (Some(name), false) => match find(name) {
            Some(s) => vec![s],
            None if find_collector(name).is_some() => {
                collectors.extend(find_collector(name));
                Vec::new()
            }
            None => {
                eprintln!("no scenario {name}; --list shows them");
                return ExitCode::FAILURE;
            }
        },
        (None, true) => {
            collectors.extend(COLLECTORS);
            SCENARIOS.iter().collect()
        }
        _ => {
            eprintln!("give --scenario NAME or --all (and --seed N or --seeds A..B)");
            return ExitCode::FAILURE;
        }
    };
    let seeds: Vec<u64> = match (args.seed, args.seeds) {
        (Some(s), None) => vec![s],
        (None, Some((a, b))) => (a..b).collect(),
        (None, None) => vec![0],
        _ => {
            eprintln!("give --seed or --seeds, not both");
            return ExitCode::FAILURE;
        }
    };
    let single = scenarios.len() == 1 && seeds.len() == 1;
    let options = Options {
        full_trace: args.trace && single,
        ..Options::default()
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut runs = 0;
    for scenario in &scenarios {
        let t = Instant::now();
        let mut worst: Vec<(String, f64)> = Vec::new();
        for &seed in &seeds {
            let mut setup = scenario.setup(seed);
            if let Some(secs) = args.run_for {
                setup.duration = Duration::from_secs(secs);
                setup.traffic.stop = setup.duration.saturating_sub(Duration::from_secs(2));
            }
            let outcome = run_setup(setup, options);
            runs += 1;
            if single {
                if let Some(n) = args.head {
                    for l in outcome.head.iter().take(n) {
                        println!("{l}");
                    }
                }
                if let Some(full) = &outcome.full {
                    for l in full {
                        println!("{l}");
                    }
                }
                if outcome.passed() {
                    print!("{}", outcome.summary());
                } else {
                    print!("{}", outcome.failure_report());
                }
            } else if !outcome.passed() {
                print!("{}", outcome.summary());
                println!("  reproduce: {}", outcome.setup.reproduce());
            }
            for r in &outcome.recoveries {
                if let Some(took) = r.took(outcome.setup.answers()) {
                    let key = r.what.split(' ').take(2).collect::<Vec<_>>().join(" ");
                    match worst.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, w)) => *w = w.max(took.as_secs_f64()),
                        None => worst.push((key, took.as_secs_f64())),
                    }
                }
            }
            if !outcome.passed() {
                failures.push(outcome.setup.reproduce());
                if args.fail_fast {
                    break;
                }
            }
        }
        if !single {
            let rec: Vec<String> = worst
                .iter()
                .map(|(k, w)| format!("{k} max {w:.3}s"))
                .collect();
            println!(
                "{:<20} {} seeds in {:.1}s{}",
                scenario.name,
                seeds.len(),
                t.elapsed().as_secs_f64(),
                if rec.is_empty() {
                    String::new()
                } else {
                    format!("; recovery: {}", rec.join(", "))
                }
            );
        }
        if args.fail_fast && !failures.is_empty() {
            break;
        }
    }
    // The collector scenarios have their own harness (sim::collector).
    for scenario in collectors {
        let t = Instant::now();
        let mut worst = Duration::ZERO;
        for &seed in &seeds {
            let outcome = run_collector(scenario.setup(seed));
            runs += 1;
            worst = worst.max(outcome.worst_recovery.unwrap_or_default());
            if seeds.len() == 1 || !outcome.passed() {
                print!("{}", outcome.summary());
            }
            if !outcome.passed() {
                failures.push(outcome.setup.reproduce());
                if args.fail_fast {
                    break;
                }
            }
        }
        if seeds.len() > 1 {
            println!(
                "{:<20} {} seeds in {:.1}s; recovery max {:.3}s",
                scenario.name,
                seeds.len(),
                t.elapsed().as_secs_f64(),
                worst.as_secs_f64()
            );
        }
        if args.fail_fast && !failures.is_empty() {
            break;
        }
    }
    if !single {
        println!(
            "{runs} runs in {:.1}s, {} failed",
            started.elapsed().as_secs_f64(),
            failures.len()
        );
        for f in &failures {
            println!("  {f}");
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
