//! Reading capture files: pcap and pcapng (pcap-parser), plain or
//! gzip-compressed, several at once in timestamp order. Damage is reported
//! with the byte offset where reading stopped; what came before counts.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use pcap_parser::{
    Linktype, PcapBlockOwned, PcapError, create_reader, pcapng::Block, traits::PcapReaderIterator,
};

/// Initial reader buffer; grown for larger blocks up to [`MAX_BUFFER`].
const BUFFER: usize = 1 << 20;
const MAX_BUFFER: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file{}", if *.compressed { " (after gunzip)" } else { "" })]
    NotCapture { path: PathBuf, compressed: bool },
    #[error("{path}: empty file")]
    Empty { path: PathBuf },
}

/// Where and why a file could not be read to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    /// Offset in the (decompressed) capture where reading stopped.
    pub offset: u64,
    pub why: String,
}

/// One packet, owned so several files can be merged by time.
#[derive(Clone, Debug, Default)]
pub struct Packet {
    /// Unix time in ns.
    pub ts_ns: u64,
    pub linktype: i32,
    pub orig_len: u32,
    pub data: Vec<u8>,
    /// Index of the file it came from (in the order given).
    pub file: u32,
}

/// Counts the bytes read from the file, for progress.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Interface descriptions one pcapng section may hold (Wireshark's files
/// have a handful; the format allows 2^32).
pub const MAX_INTERFACES: usize = 4096;

/// Per-interface link type and time resolution (pcapng), or the one of
/// the whole file (pcap).
#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: i32,
    /// Units per second and offset (seconds) of timestamps.
    resolution: u64,
    offset: i64,
}

/// What earlier blocks declared: interfaces (pcapng) or the file header.
#[derive(Default)]
struct Declared {
    interfaces: Vec<Interface>,
    /// pcap: the file-wide interface.
    legacy: Option<Interface>,
}

pub struct CaptureFile {
    path: PathBuf,
    reader: Box<dyn PcapReaderIterator + Send>,
    declared: Declared,
    done: bool,
    /// Bytes of the capture stream consumed so far.
    base: u64,
    pub damage: Option<Damage>,
    pub packets: u64,
}

fn is_gzip(path: &Path) -> Result<bool, std::io::Error> {
    let mut magic = [0u8; 2];
    let mut f = File::open(path)?;
    let n = f.read(&mut magic)?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

impl CaptureFile {
    /// Opens `path`, pcap or pcapng, gzip or not (by content, not name);
    /// bytes read from disk are added to `read`.
    pub fn open(path: &Path, read: Arc<AtomicU64>) -> Result<CaptureFile, CaptureError> {
        let open_err = |source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        };
        let compressed = is_gzip(path).map_err(open_err)?;
        let file = File::open(path).map_err(open_err)?;
        let counting = Counting { inner: file, read };
        let stream: Box<dyn Read + Send> = if compressed {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(counting)))
        } else {
            Box::new(counting)
        };
        let reader = create_reader(BUFFER, stream).map_err(|e| match e {
            PcapError::Eof => CaptureError::Empty {
                path: path.to_path_buf(),
            },
            _ => CaptureError::NotCapture {
                path: path.to_path_buf(),
                compressed,
            },
        })?;
        Ok(CaptureFile {
            path: path.to_path_buf(),
            reader,
            declared: Declared::default(),
            done: false,
            base: 0,
            damage: None,
            packets: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stop(&mut self, why: impl Into<String>) {
        self.done = true;
        self.damage = Some(Damage {
            path: self.path.clone(),
            offset: self.base,
            why: why.into(),
        });
    }

    /// Reads the next packet into `out`; false at the end of the file or
    /// where it is damaged (then [`CaptureFile::damage`] says why).
    pub fn next_packet(&mut self, out: &mut Packet) -> bool {
        let mut stalled = false;
        while !self.done {
            match self.reader.next() {
                Ok((len, block)) => {
                    stalled = false;
                    let got = self.declared.take(block, out);
                    self.reader.consume(len);
                    self.base += len as u64;
                    match got {
                        Ok(true) => {
                            self.packets += 1;
                            return true;
                        }
                        Ok(false) => {}
                        Err(why) => self.stop(why),
                    }
                }
                Err(PcapError::Eof) => self.done = true,
                Err(PcapError::UnexpectedEof) => {
                    self.stop("the file ends in the middle of a packet (truncated)");
                }
                Err(PcapError::Incomplete(_)) => {
                    if stalled {
                        self.stop("the file ends in the middle of a packet (truncated)");
                        break;
                    }
                    if self.reader.refill().is_err() {
                        self.stop("read error (or corrupt gzip data)");
                        break;
                    }
                    stalled = true;
                }
                Err(PcapError::BufferTooSmall) => {
                    let size = self.reader.data().len().max(BUFFER) * 2;
                    if size > MAX_BUFFER || !self.reader.grow(size) {
                        self.stop("a block larger than 64 MiB");
                    }
                }
                Err(e) => {
                    let why = format!("unreadable block: {e}");
                    self.stop(why);
                }
            }
        }
        false
    }
}

impl Declared {
    /// The packet in `block`, if it is one; errors for blocks that make
    /// the rest unreadable.
    fn take(&mut self, block: PcapBlockOwned<'_>, out: &mut Packet) -> Result<bool, String> {
        match block {
            PcapBlockOwned::LegacyHeader(h) => {
                let resolution = if h.is_nanosecond_precision() {
                    1_000_000_000
                } else {
                    1_000_000
                };
                self.legacy = Some(Interface {
                    linktype: h.network.0,
                    resolution,
                    offset: 0,
                });
                Ok(false)
            }
            PcapBlockOwned::Legacy(b) => {
                let Some(i) = self.legacy else {
                    return Err("packet before the file header".into());
                };
                let frac = u64::from(b.ts_usec) * (1_000_000_000 / i.resolution);
                out.ts_ns = u64::from(b.ts_sec) * 1_000_000_000 + frac;
                fill(out, i.linktype, b.origlen, b.caplen, b.data);
                Ok(true)
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                // A new section starts its own interface numbering.
                self.interfaces.clear();
                Ok(false)
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                // Each costs memory for the rest of the section; a crafted
                // (or decompressed) file could declare millions.
                if self.interfaces.len() >= MAX_INTERFACES {
                    return Err(format!(
                        "more than {MAX_INTERFACES} interfaces in one section"
                    ));
                }
                self.interfaces.push(Interface {
                    linktype: idb.linktype.0,
                    resolution: idb.ts_resolution().unwrap_or(1_000_000),
                    offset: idb.ts_offset(),
                });
                Ok(false)
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let Some(i) = self.interfaces.get(epb.if_id as usize).copied() else {
                    return Err(format!("packet on undeclared interface {}", epb.if_id));
                };
                let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                out.ts_ns = to_ns(units, i.resolution, i.offset);
                fill(out, i.linktype, epb.origlen, epb.caplen, epb.data);
                Ok(true)
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                let Some(i) = self.interfaces.first().copied() else {
                    return Err("packet before any interface description".into());
                };
                // Simple packets carry no time: keep the previous one.
                let caplen = spb.data.len() as u32;
                fill(out, i.linktype, spb.origlen, caplen, spb.data);
                Ok(true)
            }
            PcapBlockOwned::NG(_) => Ok(false),
        }
    }
}

fn to_ns(units: u64, resolution: u64, offset_s: i64) -> u64 {
    let resolution = resolution.max(1);
    let secs = units / resolution;
    let frac = units % resolution;
    let frac_ns = (u128::from(frac) * 1_000_000_000 / u128::from(resolution)) as u64;
    let secs = (secs as i64).saturating_add(offset_s).max(0) as u64;
    secs.saturating_mul(1_000_000_000).saturating_add(frac_ns)
}

fn fill(out: &mut Packet, linktype: i32, orig_len: u32, caplen: u32, data: &[u8]) {
    let n = (caplen as usize).min(data.len());
    out.linktype = linktype;
    out.orig_len = orig_len.max(n as u32);
    out.data.clear();
    out.data.extend_from_slice(&data[..n]);
}

/// Several capture files read as one stream in timestamp order.
pub struct Merged {
    files: Vec<(CaptureFile, Packet, bool)>,
    current: Packet,
}

impl Merged {
    pub fn new(files: Vec<CaptureFile>) -> Merged {
        let files = files
            .into_iter()
            .enumerate()
            .map(|(i, mut f)| {
                let mut p = Packet {
                    file: i as u32,
                    ..Packet::default()
                };
                let has = f.next_packet(&mut p);
                (f, p, has)
            })
            .collect();
        Merged {
            files,
            current: Packet::default(),
        }
    }

    /// The earliest pending packet, or None when every file is done.
    pub fn next_packet(&mut self) -> Option<&Packet> {
        let i = self
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.2)
            .min_by_key(|(_, f)| f.1.ts_ns)
            .map(|(i, _)| i)?;
        // Swap the pending packet out, read that file's next one.
        let (file, pending, has) = &mut self.files[i];
        std::mem::swap(pending, &mut self.current);
        pending.file = i as u32;
        *has = file.next_packet(pending);
        Some(&self.current)
    }

    pub fn files(&self) -> impl Iterator<Item = &CaptureFile> {
        self.files.iter().map(|f| &f.0)
    }
}

/// The well-known link types nta reads.
pub mod link {
    pub const ETHERNET: i32 = 1;
    pub const RAW: i32 = 101;
    pub const LINUX_SLL: i32 = 113;
    pub const IPV4: i32 = 228;
    pub const IPV6: i32 = 229;
    pub const LINUX_SLL2: i32 = 276;
}

/// A name for a link type, for reports.
pub fn linktype_name(l: i32) -> String {
    format!("{:?}", Linktype(l))
}
