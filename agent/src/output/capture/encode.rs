//! Encodes captured frames as pcapng (one interface description block per
//! interface, nanosecond timestamps, original and captured lengths,
//! statistics blocks with drop counts at the end of each file) or classic
//! pcap (nanosecond variant) into a memory buffer, through `pcap-file`.
//! The caller decides when the buffer reaches the disk, so a failed write
//! can be rolled back to the last whole block.

use std::{borrow::Cow, time::Duration};

use byteorder::NativeEndian;

use crate::kernel::capture::consumer::Frame;
use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::{PcapHeader, PcapPacket},
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption},
            section_header::{SectionHeaderBlock, SectionHeaderOption},
        },
    },
};

/// The file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// pcapng: several interfaces, drop statistics (Wireshark's default).
    Pcapng,
    /// Classic pcap, nanosecond timestamps; one link type, no interface
    /// names or statistics.
    Pcap,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Pcapng => "pcapng",
            Format::Pcap => "pcap",
        }
    }
}

/// A watched interface, as files describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub ifindex: u32,
    pub name: String,
}

/// Per-interface counts for the statistics blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Frames written to this file.
    pub written: u64,
    /// Frames that passed the filter but were lost (ring full, queue,
    /// disk) while this file was open.
    pub dropped: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("encoding a capture block: {0}")]
pub struct EncodeError(String);

enum Writer {
    Ng(PcapNgWriter<Vec<u8>>),
    /// pcap-file's PcapWriter does not lend its buffer out, so the header
    /// and packets are written with its own encoders into ours.
    Pcap {
        buf: Vec<u8>,
        snaplen: u32,
    },
}

/// The blocks of one file, buffered.
pub struct Encoder {
    writer: Writer,
    interfaces: Vec<Interface>,
    started_ns: u64,
}

fn err(e: impl std::fmt::Display) -> EncodeError {
    EncodeError(e.to_string())
}

impl Encoder {
    /// Starts a file: the header (and interface descriptions).
    pub fn new(
        format: Format,
        interfaces: &[Interface],
        snaplen: u32,
        started_ns: u64,
    ) -> Result<Encoder, EncodeError> {
        let writer = match format {
            Format::Pcapng => {
                let shb = SectionHeaderBlock {
                    endianness: Endianness::native(),
                    options: vec![SectionHeaderOption::UserApplication(Cow::Owned(format!(
                        "nta {}",
                        env!("CARGO_PKG_VERSION")
                    )))],
                    ..Default::default()
                };
                let mut w = PcapNgWriter::with_section_header(Vec::with_capacity(1 << 16), shb)
                    .map_err(err)?;
                for i in interfaces {
                    w.write_pcapng_block(InterfaceDescriptionBlock {
                        linktype: DataLink::ETHERNET,
                        snaplen,
                        options: vec![
                            InterfaceDescriptionOption::IfName(Cow::Owned(i.name.clone())),
                            // Timestamps in nanoseconds.
                            InterfaceDescriptionOption::IfTsResol(9),
                        ],
                    })
                    .map_err(err)?;
                }
                Writer::Ng(w)
            }
            Format::Pcap => {
                let mut buf = Vec::with_capacity(1 << 16);
                PcapHeader {
                    snaplen,
                    datalink: DataLink::ETHERNET,
                    ts_resolution: TsResolution::NanoSecond,
                    endianness: Endianness::native(),
                    ..Default::default()
                }
                .write_to(&mut buf)
                .map_err(err)?;
                Writer::Pcap { buf, snaplen }
            }
        };
        Ok(Encoder {
            writer,
            interfaces: interfaces.to_vec(),
            started_ns,
        })
    }

    /// Appends one frame. Frames of unknown interfaces go to the first
    /// (pcap has only one anyway).
    pub fn frame(&mut self, f: &Frame<'_>) -> Result<(), EncodeError> {
        let timestamp = Duration::from_nanos(f.unix_ns);
        match &mut self.writer {
            Writer::Ng(w) => {
                let interface_id = self
                    .interfaces
                    .iter()
                    .position(|i| i.ifindex == f.ifindex)
                    .unwrap_or(0) as u32;
                w.write_pcapng_block(EnhancedPacketBlock {
                    interface_id,
                    timestamp,
                    original_len: f.orig_len,
                    data: Cow::Borrowed(f.data),
                    options: vec![],
                })
                .map_err(err)?;
            }
            Writer::Pcap { buf, snaplen } => {
                PcapPacket::new(timestamp, f.orig_len, f.data)
                    .write_to::<_, NativeEndian>(buf, TsResolution::NanoSecond, *snaplen)
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// Ends the file: statistics blocks (pcapng) with what this file saw.
    pub fn finish(&mut self, stats: &[InterfaceStats], now_ns: u64) -> Result<(), EncodeError> {
        if let Writer::Ng(w) = &mut self.writer {
            for (id, s) in stats.iter().enumerate().take(self.interfaces.len()) {
                w.write_pcapng_block(InterfaceStatisticsBlock {
                    interface_id: id as u32,
                    timestamp: now_ns,
                    options: vec![
                        InterfaceStatisticsOption::IsbStartTime(self.started_ns),
                        InterfaceStatisticsOption::IsbEndTime(now_ns),
                        InterfaceStatisticsOption::IsbFilterAccept(s.written + s.dropped),
                        InterfaceStatisticsOption::IsbIfDrop(s.dropped),
                    ],
                })
                .map_err(err)?;
            }
        }
        Ok(())
    }

    /// Bytes encoded and not yet taken.
    pub fn pending(&self) -> usize {
        self.buffer().len()
    }

    fn buffer(&self) -> &Vec<u8> {
        match &self.writer {
            Writer::Ng(w) => w.get_ref(),
            Writer::Pcap { buf, .. } => buf,
        }
    }

    /// The encoded bytes so far; the buffer is emptied.
    pub fn take(&mut self, into: &mut Vec<u8>) {
        let buf = match &mut self.writer {
            Writer::Ng(w) => w.get_mut(),
            Writer::Pcap { buf, .. } => buf,
        };
        into.append(buf);
    }
}
