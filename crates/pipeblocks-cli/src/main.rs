//! The `pipeblocks` command line: generate, validate, simulate and compare pipeline schedules.
//!
//! Exit codes: 0 success, 2 bad input (flags, files, impossible configurations), 1 a failure
//! while running (for example a training run that failed).

mod block_cmd;
mod common;
mod fsdp_cmd;
mod schedule_cmds;
mod train_cmd;
mod viz_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", common::one_line(&e));
            ExitCode::from(common::exit_code(&e))
        }
    }
}
