//! The flags of `nta run`: the config file's sections, each declared once
//! in [`super::sections`], plus the two flags that have no key.

use std::path::PathBuf;

use clap::{Args, FromArgMatches};

use super::sections::{
    AlertsSection, AppSection, CaptureSection, FlowsSection, MetricsSection, SamplingSection,
    SensorSection,
};

#[derive(Clone, Debug, Default, Args)]
pub struct RunArgs {
    #[command(flatten, next_help_heading = "Sensor ([sensor] in the config file)")]
    pub sensor: SensorSection,
    #[command(flatten, next_help_heading = "Metrics endpoint ([metrics])")]
    pub metrics: MetricsSection,
    #[command(flatten, next_help_heading = "Sampling ([sampling])")]
    pub sampling: SamplingSection,
    #[command(flatten, next_help_heading = "Flows ([flows], [flows.ipfix])")]
    pub flows: FlowsSection,
    #[command(flatten, next_help_heading = "Alerts ([alerts])")]
    pub alerts: AlertsSection,
    #[command(
        flatten,
        next_help_heading = "Capture ([capture], [capture.flight_recorder])"
    )]
    pub capture: CaptureSection,
    #[command(flatten, next_help_heading = "Application metadata ([app])")]
    pub app: AppSection,

    /// Config file (TOML): every flag has a key there ([sensor],
    /// [metrics], [sampling], [flows], [flows.ipfix], [alerts], [capture],
    /// [app])
    /// plus the [detect] thresholds; a flag given on the command line wins
    /// (see deploy/nta.example.toml). Unknown keys are errors. SIGHUP
    /// reloads it (sampling, flow timeouts and outputs, alert outputs,
    /// detection, capture filter, web config); a bad file is refused and
    /// the old config stays.
    #[arg(long, value_name = "FILE", help_heading = "Options")]
    pub config: Option<PathBuf>,

    /// Turn detection off (counting, flows and exports go on).
    #[arg(long, help_heading = "Options")]
    pub no_detect: bool,
}

impl RunArgs {
    /// Every option at its default (the `default_value`s of the sections):
    /// what neither a flag nor the file sets.
    pub fn defaults() -> RunArgs {
        let cmd = Self::augment_args(clap::Command::new("run"));
        cmd.try_get_matches_from(["run"])
            .and_then(|m| RunArgs::from_arg_matches(&m))
            // An empty command line always parses; a test proves it.
            .unwrap_or_default()
    }

    /// `cmd` with the defaults of the `run` subcommand's options taken
    /// away, so that parsing yields `Some` only for flags the user gave.
    /// `--help` shows the defaults: parse with the full command first.
    pub fn without_defaults(cmd: clap::Command) -> clap::Command {
        // `analyze` shares the [app] section, merged the same way.
        let app: Vec<String> = AppSection::augment_args(clap::Command::new("app"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        cmd.mut_subcommand("run", |run| {
            run.mut_args(|a| a.default_value(None::<&'static str>))
        })
        .mut_subcommand("analyze", |analyze| {
            analyze.mut_args(|a| {
                if app.iter().any(|id| id == a.get_id().as_str()) {
                    a.default_value(None::<&'static str>)
                } else {
                    a
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses() {
        let d = RunArgs::defaults();
        // The kernel's own defaults and the flags' agree.
        assert_eq!(
            d.sampling.data_rate,
            Some(agent_common::config::DEFAULT_DATA_RATE)
        );
        assert_eq!(
            d.sampling.control_rate,
            Some(agent_common::config::DEFAULT_CONTROL_RATE)
        );
        assert_eq!(d.capture.snaplen, Some(agent_common::capture::MAX_SNAPLEN));
        assert_eq!(d.sampling.budget, Some(250_000));
        assert_eq!(
            d.sampling.control_budget,
            Some(agent_common::config::DEFAULT_CONTROL_BUDGET)
        );
        assert_eq!(d.sampling.first_packet, Some(true));
        assert_eq!(
            d.metrics.listen.map(|l| l.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );
        assert_eq!(d.sensor.mirror, Some(false));
        assert_eq!(d.flows.ipfix.domain, Some(1));
        assert_eq!(d.capture.flight_recorder.memory_mib, Some(64));
        assert!(d.flows.files.is_none() && d.capture.dir.is_none());
    }
}
