//! However many hosts the traffic holds, nta's exposition stays the same
//! size: 65536 distinct flows from the lab generator add no series beyond
//! the bounded top-destination gauges.

use std::{thread, time::Duration};

use nta_bench::{
    generator::Limits,
    live::{Lab, NtaProcess, debug_nta_binary},
    mixes::MixName,
};
use nta_lab::privileged;

#[test]
fn many_flows_do_not_grow_the_series_count() {
    if !privileged("many_flows_do_not_grow_the_series_count") {
        return;
    }
    let lab = Lab::new().unwrap_or_else(|e| panic!("{e:#}"));
    let nta = NtaProcess::start(
        &lab,
        &debug_nta_binary(),
        &["--sample-rate", "1", "--control-budget", "0"],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let series = |lab: &Lab| {
        lab.scrape(nta.addr)
            .unwrap_or_else(|e| panic!("{e:#}"))
            .0
            .len()
    };
    // A first small burst so every per-destination family exists.
    let small = Limits {
        count: 1000,
        duration: Duration::from_secs(5),
        rate: None,
    };
    lab.generate(MixName::ManyFlows, small)
        .unwrap_or_else(|e| panic!("{e:#}"));
    thread::sleep(Duration::from_millis(1500));
    let before = series(&lab);
    let big = Limits {
        count: 2_000_000,
        duration: Duration::from_secs(3),
        rate: None,
    };
    let sent = lab
        .generate(MixName::ManyFlows, big)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .sent;
    assert!(sent > 65_536, "only {sent} frames");
    thread::sleep(Duration::from_millis(1500));
    let s = lab.scrape(nta.addr).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        s.sum("nta_flows_created_total", &[]) > 60_000.0,
        "the flows were seen"
    );
    let after = s.0.len();
    // The top-destination families hold at most 10 series each (4 of them).
    assert!(
        after <= before + 40,
        "series grew from {before} to {after} with 65536 flows"
    );
}
