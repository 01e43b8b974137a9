//! What a test run left behind: processes that carry the run's marker in
//! their environment, and network namespaces that were not there before.

use std::{
    collections::BTreeSet,
    fs,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::bail;
use nta_lab::programs::TEST_MARKER_VAR;

use crate::util::{output, program};

/// A value unique to one test run.
pub struct Marker(String);

impl Marker {
    pub fn new() -> Marker {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Marker(format!("{}-{nanos}", std::process::id()))
    }

    pub fn value(&self) -> &str {
        &self.0
    }
}

/// The named network namespaces that exist now.
pub fn namespaces() -> anyhow::Result<BTreeSet<String>> {
    let listed = output(program("ip")?.args(["netns", "list"]))?;
    Ok(listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Processes (not zombies) whose environment holds `NTA_TEST_RUN=<marker>`,
/// as `pid command line`.
fn marked_processes(marker: &Marker) -> Vec<String> {
    let needle = format!("{TEST_MARKER_VAR}={}", marker.value());
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.map_while(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
                .unwrap_or(true);
            !zombie && environ.split(|b| *b == 0).any(|v| v == needle.as_bytes())
        })
        .map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let shown: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            format!("{pid} {}", shown.join(" "))
        })
        .collect()
}

/// Fails naming every process and namespace the tests left behind. A
/// process killed at a test's end may take a moment to go: wait up to 3 s.
pub fn check(marker: &Marker, namespaces_before: &BTreeSet<String>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let (processes, new_namespaces) = loop {
        let processes = marked_processes(marker);
        let now = namespaces()?;
        let new: Vec<String> = now.difference(namespaces_before).cloned().collect();
        if (processes.is_empty() && new.is_empty()) || Instant::now() > deadline {
            break (processes, new);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if processes.is_empty() && new_namespaces.is_empty() {
        eprintln!("==> the tests left no process and no network namespace behind");
        return Ok(());
    }
    let mut report = String::from("the tests left things behind:");
    for p in &processes {
        report.push_str(&format!("\n  process {p}"));
    }
    for n in &new_namespaces {
        report.push_str(&format!("\n  network namespace {n} (ip netns del {n})"));
    }
    bail!(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nta_lab::programs::GroupChild;

    #[test]
    fn a_marked_process_is_found_until_it_is_gone() {
        let marker = Marker::new();
        let mut sleep = program("sleep").unwrap_or_else(|e| panic!("{e}"));
        sleep.arg("30").env(TEST_MARKER_VAR, marker.value());
        let child = GroupChild::spawn(&mut sleep).unwrap_or_else(|e| panic!("{e}"));
        // Until the child has exec'd, /proc shows the parent's environment.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut found = marked_processes(&marker);
        while found.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            found = marked_processes(&marker);
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("sleep 30"), "{found:?}");
        assert!(check(&marker, &namespaces().unwrap_or_default()).is_err());
        drop(child);
        assert_eq!(marked_processes(&marker), Vec::<String>::new());
    }
}
