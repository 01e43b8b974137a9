//! FastNetMon Community Edition (Debian's `fastnetmon`) beside nta in the
//! detect bench: on the same victim interface (AF_PACKET, every packet,
//! 1 s averaging, its fastest setting), banning one host above a packets
//! per second threshold, with a notify script that stamps each ban with
//! the wall clock. Its config is written for the run; nothing under /etc
//! is read or changed.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use nta_lab::{netns::NetNs, programs::GroupChild};

pub struct FastNetMon {
    child: GroupChild,
    dir: PathBuf,
}

/// The notify script: FastNetMon runs it with (ip, direction, pps,
/// action) and the attack details on stdin.
const NOTIFY: &str = "#!/bin/sh\n\
    echo \"$(date +%s%N) $4 $1\" >> \"$(dirname \"$0\")/bans.log\"\n\
    cat > /dev/null\n";

impl FastNetMon {
    /// Starts FastNetMon in `ns` on `iface`, watching `victim`, banning
    /// it above `threshold_pps`; returns once it listens. `dir` is its own
    /// (config, log, bans), removed on drop.
    pub fn start(
        ns: &NetNs,
        iface: &str,
        victim: &str,
        threshold_pps: u64,
        dir: &Path,
    ) -> anyhow::Result<FastNetMon> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        std::fs::write(dir.join("networks"), format!("{victim}/32\n"))?;
        std::fs::write(dir.join("whitelist"), "")?;
        let notify = dir.join("notify.sh");
        std::fs::write(&notify, NOTIFY)?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&notify, std::fs::Permissions::from_mode(0o755))?;
        }
        // Everything not needed is off: no API, no usage report (the
        // namespace has no route out anyway), no BGP, no databases.
        let config = format!(
            "logging_level = info\n\
             logging_local_syslog_logging = off\n\
             logging_remote_syslog_logging = off\n\
             disable_usage_report = on\n\
             enable_api = off\n\
             enable_ban = on\n\
             enable_ban_ipv6 = off\n\
             process_incoming_traffic = on\n\
             process_outgoing_traffic = off\n\
             ban_time = 1\n\
             unban_only_if_attack_finished = off\n\
             networks_list_path = {networks}\n\
             white_list_path = {whitelist}\n\
             check_period = 1\n\
             enable_connection_tracking = off\n\
             ban_for_pps = on\n\
             ban_for_bandwidth = off\n\
             ban_for_flows = off\n\
             threshold_pps = {threshold_pps}\n\
             mirror_afpacket = on\n\
             mirror_af_packet_custom_sampling_rate = 1\n\
             interfaces = {iface}\n\
             average_calculation_time = 1\n\
             speed_calculation_delay = 1\n\
             notify_script_path = {notify}\n\
             collect_attack_pcap_dumps = off\n\
             monitor_local_ip_addresses = off\n\
             pid_path = {pid}\n\
             cli_stats_file_path = {stats}\n\
             cli_stats_ipv6_file_path = {stats6}\n",
            networks = path("networks"),
            whitelist = path("whitelist"),
            notify = notify.to_string_lossy(),
            pid = path("fastnetmon.pid"),
            stats = path("stats.dat"),
            stats6 = path("stats6.dat"),
        );
        let conf = dir.join("fastnetmon.conf");
        std::fs::write(&conf, config)?;
        let log = std::fs::File::create(dir.join("console.log"))?;
        let mut cmd = ns.command("fastnetmon")?;
        cmd.arg("--configuration_file")
            .arg(&conf)
            .args(["--log_to_console", "--disable_pid_logic"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null());
        let child = GroupChild::spawn(&mut cmd).context("starting fastnetmon")?;
        let f = FastNetMon { child, dir };
        f.wait_listening(iface)?;
        Ok(f)
    }

    fn wait_listening(&self, iface: &str) -> anyhow::Result<()> {
        let ready = format!("AF_PACKET worker process for {iface}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
            if log.contains(&ready) {
                // Its workers bind right after saying so.
                thread::sleep(Duration::from_millis(300));
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("fastnetmon did not start listening on {iface} within 15 s:\n{log}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wall-clock times of the bans it notified so far.
    pub fn bans(&self) -> Vec<SystemTime> {
        std::fs::read_to_string(self.dir.join("bans.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let ns: u64 = f.next()?.parse().ok()?;
                (f.next()? == "ban").then(|| UNIX_EPOCH + Duration::from_nanos(ns))
            })
            .collect()
    }
}

impl Drop for FastNetMon {
    fn drop(&mut self) {
        self.child.kill_group();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
