//! The `pipeblocks` command line: generate, validate, simulate and compare pipeline schedules.
//!
//! Exit codes: 0 success, 2 bad input (flags, files, impossible configurations), 1 a failure
//! while running (for example a training run that failed).

mod block_cmd;
mod common;
mod fsdp_cmd;
mod plan_cmd;
mod schedule_cmds;
mod train_cmd;
mod viz_cmd;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

/// Pipeline-parallel schedules: generate, validate, simulate, visualise and execute.
#[derive(Parser, Debug)]
#[command(name = "pipeblocks", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every schedule, one line on what it is and its constraints.
    List,
    /// Generate a schedule and print or write it.
    Generate(schedule_cmds::GenerateArgs),
    /// Simulate a schedule (generated or read from a file).
    Simulate(schedule_cmds::SimulateArgs),
    /// Validate a schedule file (pipeblocks JSON or PyTorch CSV).
    Validate(schedule_cmds::ValidateArgs),
    /// Compare every applicable schedule for p devices and m microbatches.
    Compare(schedule_cmds::CompareArgs),
    /// Show a building block: passes by offset, lifespans and the memory bound.
    Block(block_cmd::BlockArgs),
    /// Memory/bubble frontier: best bubble rate for budgets up to twice 1F1B's memory.
    Frontier(block_cmd::FrontierArgs),
    /// Draw one schedule's timeline and memory as SVG.
    Plot(viz_cmd::PlotArgs),
    /// Write one self-contained HTML page comparing every applicable schedule.
    Report(viz_cmd::ReportArgs),
    /// Train a small GPT-style model with a schedule, one thread per device.
    Train(train_cmd::TrainArgs),
    /// From a model and a cluster to the fastest configuration that fits (parallel degrees,
    /// sharding, microbatches, schedule, layer split, recompute).
    Plan(plan_cmd::PlanArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `pipeblocks` alone: the help, as a usage error.
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            report(&clap_line(&e));
            return ExitCode::from(2);
        }
    };
    let result = match cli.cmd {
        Command::List => schedule_cmds::list(),
        Command::Generate(a) => schedule_cmds::generate(a),
        Command::Simulate(a) => schedule_cmds::simulate(a),
        Command::Validate(a) => schedule_cmds::validate(a),
        Command::Compare(a) => schedule_cmds::compare(a),
        Command::Block(a) => block_cmd::block(a),
        Command::Frontier(a) => block_cmd::frontier(a),
        Command::Plot(a) => viz_cmd::plot(a),
        Command::Report(a) => viz_cmd::report(a),
        Command::Train(a) => train_cmd::train(a),
        Command::Plan(a) => plan_cmd::plan(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&format!("error: {}", common::one_line(&e)));
            ExitCode::from(common::exit_code(&e))
        }
    }
}

/// Prints an error line on standard error; a standard error that cannot be written (closed,
/// full) is no reason to panic, and the exit code still tells.
fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A command-line usage error on one line: our own value parsers' message as it is, clap's
/// message with its tip, without the usage block, pointing at the subcommand's `--help`.
fn clap_line(e: &clap::Error) -> String {
    if e.kind() == ErrorKind::ValueValidation {
        let ours = std::error::Error::source(e).and_then(|s| s.downcast_ref::<common::ArgError>());
        if let Some(msg) = ours {
            return format!("error: {msg}");
        }
    }
    let text = e.render().to_string();
    let mut line = String::new();
    let mut command = None;
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(usage) = l.strip_prefix("Usage:") {
            let words: Vec<&str> = usage
                .split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect();
            command = Some(words.join(" "));
            break;
        }
        if l.starts_with("For more information") {
            continue;
        }
        if !line.is_empty() {
            line.push_str(if l.starts_with("tip:") { "; " } else { " " });
        }
        line.push_str(l);
    }
    if !line.starts_with("error:") {
        line.insert_str(0, "error: ");
    }
    // Without a usage block, the subcommand as typed, when it is one.
    let command = command.filter(|c| !c.is_empty()).or_else(|| {
        let typed = std::env::args().nth(1)?;
        Cli::command()
            .get_subcommands()
            .any(|s| s.get_name() == typed)
            .then(|| format!("pipeblocks {typed}"))
    });
    format!(
        "{line} (see `{} --help`)",
        command.as_deref().unwrap_or("pipeblocks")
    )
}
