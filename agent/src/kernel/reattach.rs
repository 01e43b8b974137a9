//! Interfaces come and go (a VM's tap, a container's veth, a renamed
//! NIC): every second nta checks that each watched interface still exists
//! under its name with the ifindex it attached to. Gone: the attachment is
//! forgotten and `nta_xdp_attached` shows 0. Back (a new ifindex under the
//! same name): the same loaded program, with the same maps and counters,
//! is attached again.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

use crate::kernel::{
    iface,
    sensor::{ModeChoice, Sensor},
};

pub const INTERVAL: Duration = Duration::from_secs(1);

pub struct Watched {
    pub name: String,
    pub sensor: Arc<Mutex<Sensor>>,
    pub attached: Arc<AtomicBool>,
    pub mode: ModeChoice,
    /// Attach again when the interface comes back (`--reattach`); without
    /// it a gone interface is only reported.
    pub reattach: bool,
}

/// One check of one interface.
fn check(w: &Watched) {
    let Ok(mut sensor) = w.sensor.lock() else {
        return;
    };
    let now = iface::ifindex(&w.name).ok();
    let had = sensor.attached_ifindex();
    match (had, now) {
        (Some(a), Some(b)) if a == b => {}
        (Some(_), None) => {
            sensor.forget_attachment();
            w.attached.store(false, Ordering::Relaxed);
            tracing::warn!(interface = %w.name, "interface is gone; XDP detached until it comes back");
        }
        (had, Some(_)) if !w.reattach => {
            if had.is_some() {
                sensor.forget_attachment();
                w.attached.store(false, Ordering::Relaxed);
                tracing::warn!(interface = %w.name, "interface was replaced; not attaching again (--reattach=false)");
            }
        }
        (_, Some(_)) => {
            sensor.forget_attachment();
            match sensor.attach(&w.name, w.mode) {
                Ok(mode) => {
                    w.attached.store(true, Ordering::Relaxed);
                    tracing::info!(interface = %w.name, mode = %mode, "interface is back; XDP attached again");
                }
                Err(e) => {
                    w.attached.store(false, Ordering::Relaxed);
                    tracing::warn!(interface = %w.name, error = %format!("{e:#}"), "re-attaching XDP failed; retrying");
                }
            }
        }
        (None, None) => {}
    }
}

pub async fn run(watched: Vec<Watched>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        for w in &watched {
            check(w);
        }
    }
}
