//! Installs the toolchain pieces and system packages nta needs, checking
//! first so a second run takes a fraction of a second.
//!
//! - `rust-src` for the `nightly` toolchain (aya-build compiles `core` for
//!   the bpf target).
//! - `bpf-linker`, built from crates.io against nightly's own libLLVM: the
//!   linker must use the same LLVM as the rustc that emits the bitcode. A
//!   prefix directory under `$CARGO_HOME` holds two symlinks to the real
//!   shared object (`libLLVM.so` and its SONAME); the binary's rpath points
//!   there, so it runs outside `rustup run` too. A stamp file records the
//!   nightly it was built for, so a new nightly triggers a rebuild.
//! - `cargo-fuzz`, built from crates.io, for the fuzz targets.
//! - the Debian packages of every program in the one table of external
//!   programs (`nta_lab::programs::PROGRAMS`).
//!
//! It says what it installed and how long that took; with everything in
//! place it takes well under a second and prints nothing (a line of its
//! own only when run as `cargo xtask setup`).

use std::{
    env, fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, anyhow, bail};
use nta_lab::programs::{apt_packages, pip_installed, pip_packages, python_env, python_env_marker};

use crate::util::{is_root, output, program, run};

/// Installs what is missing; says what it installed and how long it took
/// (always, when `verbose`; otherwise only when it installed something).
pub fn ensure(verbose: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut installed = Vec::new();
    if ensure_rust_src()? {
        installed.push("rust-src (nightly)".to_string());
    }
    if ensure_bpf_linker()? {
        installed.push("bpf-linker".to_string());
    }
    if ensure_cargo_fuzz()? {
        installed.push("cargo-fuzz".to_string());
    }
    let packages = ensure_apt_packages()?;
    if !packages.is_empty() {
        installed.push(format!("apt: {}", packages.join(" ")));
    }
    let pip = ensure_pip_packages()?;
    if !pip.is_empty() {
        installed.push(format!("PyPI: {}", pip.join(" ")));
    }
    let secs = started.elapsed().as_secs_f64();
    if !installed.is_empty() {
        eprintln!(
            "==> setup installed {} in {secs:.0} s",
            installed.join("; ")
        );
    } else if verbose {
        eprintln!(
            "==> setup: everything in place ({} apt packages, {} PyPI packages, rust-src, bpf-linker, cargo-fuzz), checked in {secs:.2} s",
            apt_packages().len(),
            pip_packages().len()
        );
    }
    Ok(())
}

fn nightly_verbose_version() -> anyhow::Result<String> {
    output(program("rustc")?.arg("+nightly").arg("-vV")).map_err(|e| {
        anyhow!("the `nightly` Rust toolchain is needed to build the XDP program but is not usable: {e:#}\nInstall it with `rustup toolchain install nightly --profile minimal`")
    })
}

/// Adds nightly's rust-src unless present; true when it installed it.
fn ensure_rust_src() -> anyhow::Result<bool> {
    let installed = output(program("rustup")?.args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(false);
    }
    eprintln!("==> installing rust-src for the nightly toolchain");
    run(program("rustup")?.args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        .context(
            "`rustup component add rust-src --toolchain nightly` failed; run it by hand and retry",
        )?;
    Ok(true)
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// The real libLLVM shared object of a sysroot: the `libLLVM-NN-*.so` next
/// to it is only a linker script, so pick the large `libLLVM.so.*` file.
fn real_libllvm(sysroot: &Path) -> anyhow::Result<PathBuf> {
    let lib = sysroot.join("lib");
    let mut candidates: Vec<PathBuf> = fs::read_dir(&lib)
        .with_context(|| format!("listing {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
                && fs::metadata(p).map(|m| m.len() > 1 << 20).unwrap_or(false)
        })
        .collect();
    candidates.sort();
    candidates.pop().ok_or_else(|| {
        anyhow!(
            "no libLLVM.so.* shared object in {}: is the nightly toolchain complete?",
            lib.display()
        )
    })
}

fn llvm_major(verbose_version: &str) -> anyhow::Result<String> {
    verbose_version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("`rustc +nightly -vV` does not report an LLVM version"))
}

fn bpf_linker_runs() -> bool {
    program("bpf-linker")
        .ok()
        .and_then(|mut c| c.arg("--version").output().ok())
        .is_some_and(|o| o.status.success())
}

/// Builds bpf-linker unless the one in place was built for this nightly;
/// true when it built it.
fn ensure_bpf_linker() -> anyhow::Result<bool> {
    let vv = nightly_verbose_version()?;
    let prefix = cargo_home().join("nta-llvm-prefix");
    let stamp = prefix.join("built-for-rustc.txt");
    let built_for = fs::read_to_string(&stamp).unwrap_or_default();
    if built_for == vv && bpf_linker_runs() {
        return Ok(false);
    }
    let major = llvm_major(&vv)?;
    let sysroot = output(program("rustc")?.args(["+nightly", "--print", "sysroot"]))?;
    let real = real_libllvm(Path::new(sysroot.trim()))?;
    let soname = real
        .file_name()
        .ok_or_else(|| anyhow!("libLLVM path has no file name"))?
        .to_owned();
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for name in [std::ffi::OsString::from("libLLVM.so"), soname] {
        let link = lib.join(&name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "==> building bpf-linker against nightly's LLVM {major} ({}); about a minute",
        real.display()
    );
    let status = program("cargo")?
        .args([
            "+nightly",
            "install",
            "bpf-linker",
            "--force",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!(
            "building bpf-linker failed. By hand: LLVM_PREFIX={} cargo +nightly install bpf-linker --no-default-features --features llvm-{major}",
            prefix.display()
        );
    }
    if !bpf_linker_runs() {
        bail!(
            "bpf-linker was installed but does not run; is {} on PATH?",
            cargo_home().join("bin").display()
        );
    }
    fs::write(&stamp, vv).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(true)
}

/// Installs cargo-fuzz (with nightly, which it runs on) unless it runs;
/// true when it installed it.
fn ensure_cargo_fuzz() -> anyhow::Result<bool> {
    let runs = program("cargo-fuzz")
        .ok()
        .and_then(|mut c| c.arg("--version").output().ok())
        .is_some_and(|o| o.status.success());
    if runs {
        return Ok(false);
    }
    eprintln!("==> building cargo-fuzz from crates.io; about a minute");
    run(program("cargo")?.args(["+nightly", "install", "cargo-fuzz", "--locked"]))
        .context("`cargo +nightly install cargo-fuzz --locked` failed")?;
    Ok(true)
}

/// Installs the table's PyPI packages into the lab's own Python
/// environment (made with the python3 on PATH when it is not there yet),
/// then lists them in its marker file; returns what it installed.
fn ensure_pip_packages() -> anyhow::Result<Vec<&'static str>> {
    let missing: Vec<&'static str> = pip_packages()
        .into_iter()
        .filter(|p| !pip_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let env = python_env();
    let python = env.join("bin").join("python3");
    if !python.exists() {
        run(program("python3")?.arg("-m").arg("venv").arg(&env))
            .with_context(|| format!("python3 -m venv {} failed", env.display()))?;
    }
    eprintln!(
        "==> installing from PyPI into {}: {}",
        env.display(),
        missing.join(" ")
    );
    run(std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(pip_packages()))
    .context("pip install failed")?;
    std::fs::write(python_env_marker(), pip_packages().join("\n") + "\n")
        .with_context(|| format!("writing {}", python_env_marker().display()))?;
    Ok(missing)
}

/// The packages among `packages` that dpkg does not have installed, asked
/// in one dpkg-query call (one call per package made setup slow).
fn apt_missing(packages: &[&'static str]) -> anyhow::Result<Vec<&'static str>> {
    // dpkg-query exits non-zero when it knows nothing of a package; its
    // stdout still lists the others, so read that instead of the status.
    let out = program("dpkg-query")?
        .arg("-W")
        .arg("-f=${Package} ${Status}\n")
        .args(packages)
        .output()
        .context("running dpkg-query")?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listed
        .lines()
        .filter(|l| l.ends_with("install ok installed"))
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| p.split(':').next().unwrap_or(p))
        .collect();
    Ok(packages
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

/// Installs the missing packages of the program table; returns them.
fn ensure_apt_packages() -> anyhow::Result<Vec<&'static str>> {
    let missing = apt_missing(&apt_packages())?;
    if missing.is_empty() {
        return Ok(missing);
    }
    let cmd = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    if !is_root() {
        bail!(
            "missing packages: {}. Install them as root: {cmd}",
            missing.join(", ")
        );
    }
    eprintln!("==> installing {}", missing.join(" "));
    // tshark's package asks whether non-root users may capture, iperf3's
    // whether to start a daemon; answer no beforehand so the install never
    // stops at a prompt.
    let mut preseed = program("debconf-set-selections")?
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("running debconf-set-selections")?;
    if let Some(stdin) = preseed.stdin.as_mut() {
        use std::io::Write as _;
        stdin
            .write_all(
                b"wireshark-common wireshark-common/install-setuid boolean false\n\
                  iperf3 iperf3/start_daemon boolean false\n",
            )
            .context("preseeding debconf")?;
    }
    preseed.wait().context("preseeding debconf")?;
    run(program("apt-get")?.args(["update", "-q"]))?;
    // Packages with daemons (prometheus, fastnetmon) would start them;
    // the tests start their own, in namespaces, and nothing may run on.
    let _no_daemons = NoServiceStarts::install()?;
    run(program("apt-get")?
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| format!("installing packages failed; by hand: {cmd}"))?;
    Ok(missing)
}

/// Debian's policy-rc.d hook saying "do not start services" (exit 101)
/// while packages install; removed on drop. An existing hook is left as
/// it is (the machine's owner decided).
struct NoServiceStarts(Option<&'static Path>);

const POLICY_RC: &str = "/usr/sbin/policy-rc.d";

impl NoServiceStarts {
    fn install() -> anyhow::Result<NoServiceStarts> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = Path::new(POLICY_RC);
        if path.exists() {
            return Ok(NoServiceStarts(None));
        }
        std::fs::write(
            path,
            "#!/bin/sh\n# nta setup: no daemons while packages install\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC}"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {POLICY_RC} executable"))?;
        Ok(NoServiceStarts(Some(path)))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = self.0
            && let Err(e) = std::fs::remove_file(path)
        {
            eprintln!("warning: could not remove {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llvm_major() {
        let vv = "rustc 1.97.0-nightly\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv).ok().as_deref(), Some("22"));
        assert!(llvm_major("rustc 1.0\n").is_err());
    }
}
