use std::{io::IsTerminal, process::ExitCode};

use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
use nta::cmd::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // Which flags the user gave: those win over the config file.
    if let (Command::Run(args), Some(m)) = (&mut cli.command, matches.subcommand_matches("run")) {
        args.given = m
            .ids()
            .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.to_string())
            .collect();
    }
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
        Command::CheckConfig { file } => {
            let (_, sha1) = nta::config::FileConfig::load_with_hash(&file)?;
            println!("{}: ok (sha1 {sha1})", file.display());
        }
    }
    Ok(())
}
