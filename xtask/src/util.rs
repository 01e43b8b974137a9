//! Small process helpers shared by the tasks.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask's manifest lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn cd_workspace_root() -> anyhow::Result<()> {
    env::set_current_dir(workspace_root()).context("entering the workspace root")
}

/// Runs a command, inheriting stdio; fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Runs a command and returns its stdout; a non-zero exit is an error
/// with its stderr.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    Ok(nta_lab::netns::output_of(cmd)?)
}

/// A command for an external program of the one table
/// (`nta_lab::programs::PROGRAMS`): refused when the program is not listed,
/// and an error naming its package when it is not installed.
pub fn program(name: &str) -> anyhow::Result<Command> {
    Ok(nta_lab::programs::command(name)?)
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    run(&mut cargo_command(args))
}

/// The cargo that runs xtask, with `args`, announced on stderr.
pub fn cargo_command(args: &[&str]) -> Command {
    eprintln!("==> cargo {}", args.join(" "));
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args);
    cmd
}

/// Clippy on the XDP program itself, for the bpf target (the host build of
/// agent-ebpf compiles the program's modules out).
pub fn cargo_nightly_clippy_ebpf() -> anyhow::Result<()> {
    eprintln!("==> cargo +nightly clippy -p agent-ebpf (bpf target)");
    run(program("rustup")?.args([
        "run",
        "nightly",
        "cargo",
        "clippy",
        "-p",
        "agent-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
        "--target-dir",
        "target/ebpf-clippy",
        "--",
        "-D",
        "warnings",
    ]))
}

pub fn is_root() -> bool {
    nta_lab::netns::is_root()
}
