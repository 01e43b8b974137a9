//! `nta capture --af-xdp` under the lab generator: every frame sent over
//! many rounds of its 16384-chunk ring ends up in the file, and the socket
//! reports no drop (a chunk not given back to the fill ring once would
//! starve the kernel of buffers after a few rounds).

use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
    time::Duration,
};

use nta_bench::{
    generator::Limits,
    live::{Lab, debug_nta_binary},
    mixes::MixName,
};
use nta_lab::{privileged, programs::GroupChild};

#[test]
fn af_xdp_capture_takes_every_frame_over_many_ring_rounds() {
    if !privileged("af_xdp_capture_takes_every_frame_over_many_ring_rounds") {
        return;
    }
    let lab = Lab::new().unwrap_or_else(|e| panic!("{e:#}"));
    let file = format!("/dev/shm/nta-afxdp-load-{}.pcapng", std::process::id());
    let mut cmd = lab
        .recv_ns
        .command_built(&debug_nta_binary())
        .unwrap_or_else(|e| panic!("{e}"));
    cmd.args(["capture", "-i", &lab.veth.inner, "--af-xdp", "--mirror"])
        .args(["--xdp-mode", "native", "-s", "64", "-w", &file])
        .stderr(Stdio::piped());
    // A group of its own, killed when dropped: a failed assertion must
    // not leave nta capturing.
    let mut child = GroupChild::spawn(&mut cmd).unwrap_or_else(|e| panic!("{e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("stderr"));
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("capturing on") => break,
            Some(Ok(_)) => {}
            other => panic!("nta capture did not start: {other:?}"),
        }
    }
    let report = lab
        .generate(
            MixName::Udp64,
            Limits {
                count: 600_000,
                duration: Duration::from_secs(4),
                rate: Some(300_000.0),
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child (`ip netns exec` execs nta).
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = std::fs::remove_file(&file);
    assert!(status.success(), "{rest:?}");
    assert!(report.sent > 16384 * 20, "sent {}", report.sent);
    let written = format!("{} frames written", report.sent);
    assert!(
        rest.iter().any(|l| l.contains(&written)),
        "sent {}: {rest:?}",
        report.sent
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("rx_dropped 0, rx_ring_full 0, fill_ring_empty 0")),
        "{rest:?}"
    );
}
