use std::{io::IsTerminal, process::ExitCode};

use clap::{CommandFactory, FromArgMatches};
use nta::{
    cmd::cli::{Cli, Command},
    config::flags::RunArgs,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = parse_command_line();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        // Colour codes only on a terminal, not in journald or log files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole cause chain on one line.
            eprintln!("nta: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(nta::cmd::run::run(*args))?;
        }
        // Offline analysis needs no async runtime.
        Command::Analyze(args) => nta::cmd::analyze::run(args)?,
        Command::Capture(args) => {
            nta::cmd::capture::run(args)?;
        }
        Command::ReattachHelper(args) => nta::kernel::reattach::helper::run(args)?,
        Command::CheckConfig { file } => {
            let (_, sha1) = nta::config::FileConfig::load_with_hash(&file)?;
            println!("{}: ok (sha1 {sha1})", file.display());
        }
    }
    Ok(())
}

/// The command line. Parsed once with the options' defaults, which answers
/// `--help` (showing them) and reports bad input, then again without them,
/// so that a `run` option is set only when the user gave it: the config
/// file's keys fill the rest.
fn parse_command_line() -> Cli {
    let _checked = Cli::command().get_matches();
    let matches = RunArgs::without_defaults(Cli::command()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
