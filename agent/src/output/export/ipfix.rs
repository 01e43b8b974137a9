//! IPFIX (RFC 7011) over UDP, encoded with netgauze-flow-pkt.
//!
//! Templates 256 (IPv4 flows) and 257 (IPv6 flows) carry the standard
//! information elements; options template 258 reports, per interface, the
//! data sampling interval (samplingInterval, samplingAlgorithm 1 =
//! deterministic 1-in-N) so collectors can scale. Counts in the data
//! records are the sampled ones; each record also carries the rate its last
//! sample was taken at (samplingPacketInterval), since control packets may
//! be sampled at another rate than data packets.
//!
//! The message sequence number is the count of data records sent before
//! the message, modulo 2^32 (RFC 7011 section 3.1). Templates go out in the
//! first message and again every `template_refresh`.

use std::{
    net::{SocketAddr, ToSocketAddrs, UdpSocket},
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeZone, Utc};
use netgauze_flow_pkt::{
    DataSetId, FieldSpecifier,
    ie::{Field, IE},
    ipfix::{
        DataRecord, DecodingTemplate, IpfixPacket, OptionsTemplateRecord, Set, TemplateRecord,
        TemplatesMap,
    },
};
use netgauze_parse_utils::WritablePduWithOneInput;

use super::{ExportError, FlowContext, FlowExporter, FlowOutput, FlowRecord, fields};
use crate::config::merge::{defaulted, section};

section! {
    /// `[flows.ipfix]`: the IPFIX collector.
    #[derive(clap::Args, Clone, Debug, Default, serde::Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields, default)]
    pub struct IpfixSection {
        /// Export flows as IPFIX over UDP to this collector (nfcapd,
        /// pmacct, ntopng, Elastiflow...). Counts are sampled counts; the
        /// sampling interval goes out in an options record so collectors
        /// can scale.
        #[arg(id = "ipfix", long = "ipfix", value_name = "HOST:PORT")]
        pub collector: Option<String>,
        /// Resend IPFIX templates this often (UDP collectors that start
        /// late learn them within this time).
        #[arg(id = "ipfix_template_refresh", long = "ipfix-template-refresh", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        #[serde(with = "humantime_serde")]
        pub template_refresh: Option<Duration>,
        /// IPFIX observation domain id of this sensor.
        #[arg(id = "ipfix_domain", long = "ipfix-domain", default_value = "1", value_name = "ID")]
        pub domain: Option<u32>,
    }
}

/// What can go wrong talking IPFIX.
#[derive(Debug, thiserror::Error)]
pub enum IpfixError {
    #[error("IPFIX collector {collector}")]
    Collector {
        collector: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding IPFIX: {0}")]
    Encode(String),
}

impl FlowOutput for IpfixSection {
    fn key(&self) -> &'static str {
        "flows.ipfix"
    }

    fn validate(&self) -> Result<(), String> {
        if self.template_refresh == Some(Duration::ZERO) {
            return Err("template_refresh must be longer than 0s".into());
        }
        Ok(())
    }

    fn open(&self, cx: &FlowContext) -> Result<Option<Box<dyn FlowExporter>>, ExportError> {
        let Some(collector) = &self.collector else {
            return Ok(None);
        };
        Ok(Some(Box::new(IpfixExporter::connect(IpfixConfig {
            collector: resolve_collector(collector)?,
            observation_domain: defaulted(self.domain),
            template_refresh: defaulted(self.template_refresh),
            sampling: cx.data_sampling.clone(),
        })?)))
    }

    /// The options record tells the collector the data sampling interval.
    fn announces_sampling_rate(&self) -> bool {
        self.collector.is_some()
    }
}

const TEMPLATE_V4: u16 = 256;
const TEMPLATE_V6: u16 = 257;
const TEMPLATE_SAMPLING: u16 = 258;
/// Data records per message: ~60-80 bytes each keeps a message under a
/// 1500-byte MTU with room for templates.
const RECORDS_PER_MESSAGE: usize = 16;

#[derive(Clone, Debug)]
pub struct IpfixConfig {
    pub collector: SocketAddr,
    pub observation_domain: u32,
    pub template_refresh: Duration,
    /// (ifindex, data sampling interval) for the options records.
    pub sampling: Vec<(u32, u32)>,
}

/// Resolves `HOST:PORT`.
pub fn resolve_collector(spec: &str) -> Result<SocketAddr, IpfixError> {
    let err = |source| IpfixError::Collector {
        collector: spec.to_string(),
        source,
    };
    spec.to_socket_addrs()
        .map_err(err)?
        .next()
        .ok_or_else(|| err(std::io::Error::other("the name resolves to no address")))
}

pub struct IpfixExporter {
    socket: UdpSocket,
    config: IpfixConfig,
    /// Data records sent so far (RFC 7011 sequence number).
    sequence: u32,
    last_templates: Option<Instant>,
    buf: Vec<u8>,
    /// The templates records are written against: variable-length fields
    /// (nta's names) get their length prefix, counted in the message
    /// length (netgauze writes the prefix without a template too, but
    /// leaves it out of the length).
    templates: TemplatesMap,
}

fn spec(ie: IE, len: u16) -> FieldSpecifier {
    // The lengths below are the IEs' natural sizes; new() rejects only
    // impossible ones, which would be a bug here.
    FieldSpecifier::new(ie, len).unwrap_or_else(|e| unreachable!("field {ie:?}/{len}: {e:?}"))
}

fn flow_fields(v6: bool) -> Box<[FieldSpecifier]> {
    fields::ipfix_elements(v6)
        .into_iter()
        .map(|(ie, len)| spec(ie, len))
        .collect()
}

fn decoding(scope: Box<[FieldSpecifier]>, fields: Box<[FieldSpecifier]>) -> DecodingTemplate {
    DecodingTemplate {
        scope_fields_specs: scope,
        fields_specs: fields,
        processed_count: 0,
    }
}

fn templates_map() -> TemplatesMap {
    TemplatesMap::from([
        (TEMPLATE_V4, decoding(Box::new([]), flow_fields(false))),
        (TEMPLATE_V6, decoding(Box::new([]), flow_fields(true))),
        (
            TEMPLATE_SAMPLING,
            decoding(
                Box::new([spec(IE::ingressInterface, 4)]),
                Box::new([
                    spec(IE::samplingInterval, 4),
                    spec(IE::samplingAlgorithm, 1),
                ]),
            ),
        ),
    ])
}

fn templates() -> Vec<Set> {
    vec![
        Set::Template(Box::new([
            TemplateRecord::new(TEMPLATE_V4, flow_fields(false)),
            TemplateRecord::new(TEMPLATE_V6, flow_fields(true)),
        ])),
        Set::OptionsTemplate(Box::new([OptionsTemplateRecord::new(
            TEMPLATE_SAMPLING,
            Box::new([spec(IE::ingressInterface, 4)]),
            Box::new([
                spec(IE::samplingInterval, 4),
                spec(IE::samplingAlgorithm, 1),
            ]),
        )])),
    ]
}

fn data_record(f: &FlowRecord) -> DataRecord {
    DataRecord::new(Box::new([]), fields::ipfix_values(f))
}

impl IpfixExporter {
    pub fn connect(config: IpfixConfig) -> Result<IpfixExporter, IpfixError> {
        let io = |source| IpfixError::Collector {
            collector: config.collector.to_string(),
            source,
        };
        let bind: SocketAddr = if config.collector.is_ipv4() {
            "0.0.0.0:0"
                .parse()
                .map_err(|_| io(std::io::Error::other("bad bind address")))?
        } else {
            "[::]:0"
                .parse()
                .map_err(|_| io(std::io::Error::other("bad bind address")))?
        };
        let socket = UdpSocket::bind(bind).map_err(io)?;
        socket.connect(config.collector).map_err(io)?;
        Ok(IpfixExporter {
            socket,
            config,
            sequence: 0,
            last_templates: None,
            buf: Vec::with_capacity(1500),
            templates: templates_map(),
        })
    }

    fn templates_due(&self, now: Instant) -> bool {
        self.last_templates
            .is_none_or(|t| now.duration_since(t) >= self.config.template_refresh)
    }

    /// Encodes one message of `sets` into the send buffer; `data_records`
    /// advance the sequence number after it is built.
    pub fn encode(
        &mut self,
        sets: Vec<Set>,
        data_records: usize,
        export_time: DateTime<Utc>,
    ) -> Result<&[u8], IpfixError> {
        let packet = IpfixPacket::new(
            export_time,
            self.sequence,
            self.config.observation_domain,
            sets.into_boxed_slice(),
        );
        self.buf.clear();
        packet
            .write(&mut self.buf, Some(&self.templates))
            .map_err(|e| IpfixError::Encode(format!("{e:?}")))?;
        self.sequence = self.sequence.wrapping_add(data_records as u32);
        Ok(&self.buf)
    }

    fn send(&mut self, sets: Vec<Set>, data_records: usize) -> Result<(), IpfixError> {
        let collector = self.config.collector;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        self.encode(sets, data_records, Utc.timestamp_nanos(now))?;
        self.socket
            .send(&self.buf)
            .map_err(|source| IpfixError::Collector {
                collector: collector.to_string(),
                source,
            })?;
        Ok(())
    }

    /// The sets to lead a message with when templates are due.
    fn preamble(&mut self) -> Vec<Set> {
        let now = Instant::now();
        if !self.templates_due(now) {
            return Vec::new();
        }
        self.last_templates = Some(now);
        let mut sets = templates();
        if !self.config.sampling.is_empty() {
            let records: Vec<DataRecord> = self
                .config
                .sampling
                .iter()
                .map(|&(ifindex, interval)| {
                    DataRecord::new(
                        Box::new([Field::ingressInterface(ifindex)]),
                        Box::new([
                            Field::samplingInterval(interval),
                            Field::samplingAlgorithm(1),
                        ]),
                    )
                })
                .collect();
            sets.push(data_set(TEMPLATE_SAMPLING, records));
        }
        sets
    }
}

fn data_set(template: u16, records: Vec<DataRecord>) -> Set {
    Set::Data {
        // Template ids >= 256 are always valid data set ids.
        id: DataSetId::new(template).unwrap_or_else(|_| unreachable!("data set id {template}")),
        records: records.into_boxed_slice(),
    }
}

impl FlowExporter for IpfixExporter {
    fn kind(&self) -> &'static str {
        "ipfix"
    }

    fn export(&mut self, flows: &[FlowRecord]) -> Result<(), ExportError> {
        for chunk in flows.chunks(RECORDS_PER_MESSAGE) {
            let mut sets = self.preamble();
            // The options records of the preamble are data records too.
            let mut count = sets
                .iter()
                .map(|s| match s {
                    Set::Data { records, .. } => records.len(),
                    _ => 0,
                })
                .sum::<usize>();
            let (v4, v6): (Vec<&FlowRecord>, Vec<&FlowRecord>) =
                chunk.iter().partition(|f| f.key.ip_version == 4);
            for (template, group) in [(TEMPLATE_V4, v4), (TEMPLATE_V6, v6)] {
                if !group.is_empty() {
                    count += group.len();
                    sets.push(data_set(
                        template,
                        group.into_iter().map(data_record).collect(),
                    ));
                }
            }
            self.send(sets, count)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use agent_common::sample::map_ipv4;

    use super::*;
    use crate::pipeline::flow::{ExpireReason, ExpiredFlow, FlowKey, FlowStats};

    fn flow(port: u16) -> FlowRecord {
        let key = FlowKey {
            src: map_ipv4([198, 18, 0, 1]),
            dst: map_ipv4([198, 18, 0, 2]),
            src_port: port,
            dst_port: 53,
            vlan_id: 0,
            ip_version: 4,
            protocol: 17,
        };
        let f = ExpiredFlow {
            key,
            stats: FlowStats {
                sampled_packets: 3,
                sampled_bytes: 300,
                sampling_rate: 1,
                ..FlowStats::default()
            },
            reason: ExpireReason::Idle,
            reverse_seen: false,
        };
        FlowRecord::new(&f, super::super::WallClock::unix(), "eth0")
    }

    #[test]
    fn messages_have_valid_headers_and_sequence_numbers_count_data_records() {
        let collector = UdpSocket::bind("127.0.0.1:0").expect("bind");
        collector
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut e = IpfixExporter::connect(IpfixConfig {
            collector: collector.local_addr().expect("addr"),
            observation_domain: 7,
            template_refresh: Duration::from_secs(3600),
            sampling: vec![(2, 64)],
        })
        .expect("connect");
        let flows: Vec<FlowRecord> = (0..20).map(|i| flow(1000 + i)).collect();
        e.export(&flows).expect("export");
        e.export(&flows[..1]).expect("export");
        let mut buf = [0u8; 2048];
        let mut headers = Vec::new();
        for _ in 0..3 {
            let n = collector.recv(&mut buf).expect("a message");
            let version = u16::from_be_bytes([buf[0], buf[1]]);
            let length = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            let seq = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            let domain = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
            let first_set = u16::from_be_bytes([buf[16], buf[17]]);
            assert_eq!((version, length, domain), (10, n, 7));
            assert!(n <= 1500, "message of {n} bytes exceeds the MTU");
            headers.push((seq, first_set));
        }
        // First message: templates (set 2), options template, 1 options
        // record and 16 flows. Then 4 flows, then 1, without templates.
        assert_eq!(headers, vec![(0, 2), (17, 256), (21, 256)]);
    }
}
