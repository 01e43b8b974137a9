//! The capture filter language: the part of tcpdump's syntax sensors use,
//! compiled into the table the XDP program evaluates
//! ([`agent_common::filter`]).
//!
//! ```text
//! expr      := and ( ("or" | "||") and )*
//! and       := unary ( ("and" | "&&") unary )*
//! unary     := ("not" | "!") unary | "(" expr ")" | primitive
//! primitive := PROTO [qualified] | qualified | "vlan" [ID] | "proto" (NUM | NAME)
//! qualified := [DIR] ("host" ADDR | "net" CIDR | "port" NUM | "portrange" NUM-NUM)
//! PROTO     := ip | ip6 | arp | tcp | udp | sctp | icmp | icmp6 | gre
//! DIR       := src | dst | src or dst | src and dst
//! ```
//!
//! `tcp port 80` means `tcp and port 80`; `host`, `net` and `port` without a
//! direction match either end. As in tcpdump, a bare value after `and`/`or`
//! repeats the previous qualifier: `port 80 or 443`. Addresses are IPv4 or
//! IPv6 literals (no name lookups); ports are numbers. The compiled table
//! holds an OR of at most 8 alternatives of at most 8 conditions each
//! (after `not` is pushed inward and `and` is multiplied out); a bigger
//! filter is refused with the count.

use std::net::IpAddr;

use agent_common::{
    class::ipproto,
    filter::{FilterTable, MAX_PREDICATES, MAX_TERMS, Predicate, kind, words},
};
use ipnet::IpNet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("capture filter, column {column}: {why}")]
    Syntax { column: usize, why: String },
    #[error(
        "capture filter: {terms} alternatives of up to {longest} conditions after expansion; the kernel table holds {MAX_TERMS} alternatives of up to {MAX_PREDICATES} conditions (simplify it, e.g. with a net instead of several hosts)"
    )]
    TooComplex { terms: usize, longest: usize },
}

/// A compiled filter and the text it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureFilter {
    pub text: String,
    pub table: FilterTable,
}

impl CaptureFilter {
    /// An empty expression selects every frame.
    pub fn compile(text: &str) -> Result<CaptureFilter, FilterError> {
        let tokens = lex(text)?;
        let table = if tokens.is_empty() {
            FilterTable::default()
        } else {
            let mut p = Parser {
                tokens,
                at: 0,
                end: text.chars().count() + 1,
                last: None,
                depth: 0,
            };
            let expr = p.expr()?;
            if let Some(t) = p.tokens.get(p.at) {
                return Err(syntax(t.column, format!("unexpected `{}`", t.text)));
            }
            table_of(&dnf(nnf(expr, false))?)?
        };
        Ok(CaptureFilter {
            text: text.to_string(),
            table,
        })
    }
}

#[derive(Clone, Debug)]
struct Token {
    text: String,
    column: usize,
}

fn syntax(column: usize, why: String) -> FilterError {
    FilterError::Syntax { column, why }
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' || c == '!' {
            tokens.push(Token {
                text: c.to_string(),
                column,
            });
            i += 1;
        } else if (c == '&' || c == '|') && chars.get(i + 1) == Some(&c) {
            tokens.push(Token {
                text: format!("{c}{c}"),
                column,
            });
            i += 2;
        } else if c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '/' | '-' | '_') {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || matches!(chars[i], ':' | '.' | '/' | '-' | '_'))
            {
                i += 1;
            }
            tokens.push(Token {
                text: chars[start..i].iter().collect(),
                column,
            });
        } else {
            return Err(syntax(column, format!("unexpected character `{c}`")));
        }
    }
    Ok(tokens)
}

/// One condition before compilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaf {
    Ipv4,
    Ipv6,
    Arp,
    Proto(u8),
    SrcNet(IpNet),
    DstNet(IpNet),
    SrcPort(u16, u16),
    DstPort(u16, u16),
    Vlan(u16, u16),
}

#[derive(Clone, Debug)]
enum Expr {
    Leaf(Leaf),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Src,
    Dst,
    Either,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Host,
    Net,
    Port,
    PortRange,
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Column just past the text, for "expected ... at the end".
    end: usize,
    /// The last qualifier, for `port 80 or 443`.
    last: Option<(Dir, What)>,
    /// `not`s and parentheses open around the current token.
    depth: usize,
}

/// Nesting the parser follows at most: it recurses per level, and a
/// filter comes from a config file that a reload reads while running.
pub const MAX_NESTING: usize = 256;

const PROTOCOLS: [&str; 9] = [
    "ip", "ip6", "arp", "tcp", "udp", "sctp", "icmp", "icmp6", "gre",
];

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(|t| t.text.as_str())
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |t| t.column)
    }

    fn next_is(&mut self, words: &[&str]) -> bool {
        if self.peek().is_some_and(|t| words.contains(&t)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// The next token, or an error naming what was expected.
    fn take(&mut self, expected: &str) -> Result<Token, FilterError> {
        match self.tokens.get(self.at) {
            Some(t) => {
                self.at += 1;
                Ok(t.clone())
            }
            None => Err(syntax(self.end, format!("expected {expected} at the end"))),
        }
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.and()?];
        while self.next_is(&["or", "||"]) {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.unary()?];
        while self.next_is(&["and", "&&"]) {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let column = self.column();
        let nested = matches!(self.peek(), Some("not" | "!" | "("));
        if nested {
            self.depth += 1;
            if self.depth > MAX_NESTING {
                return Err(syntax(
                    column,
                    format!("nested deeper than {MAX_NESTING} levels"),
                ));
            }
        }
        let e = self.nested_or_primitive();
        if nested {
            self.depth -= 1;
        }
        e
    }

    fn nested_or_primitive(&mut self) -> Result<Expr, FilterError> {
        if self.next_is(&["not", "!"]) {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.next_is(&["("]) {
            let e = self.expr()?;
            let column = self.column();
            let t = self.take("`)`")?;
            if t.text != ")" {
                return Err(syntax(column, format!("expected `)`, found `{}`", t.text)));
            }
            return Ok(e);
        }
        self.primitive()
    }

    fn primitive(&mut self) -> Result<Expr, FilterError> {
        let column = self.column();
        let Some(word) = self.peek().map(str::to_string) else {
            return Err(syntax(column, "expected a condition at the end".into()));
        };
        if PROTOCOLS.contains(&word.as_str()) {
            self.at += 1;
            let proto = protocol_leaf(&word);
            // `ip proto 47`, `tcp port 80`, `ip6 host fd00::1`.
            if self.peek() == Some("proto") {
                let p = self.primitive()?;
                return Ok(Expr::And(vec![Expr::Leaf(proto), p]));
            }
            if self.peek().is_some_and(starts_qualified) {
                let q = self.qualified()?;
                return Ok(Expr::And(vec![Expr::Leaf(proto), q]));
            }
            return Ok(Expr::Leaf(proto));
        }
        match word.as_str() {
            "proto" => {
                self.at += 1;
                let column = self.column();
                let t = self.take("a protocol number or name")?;
                let n = match t.text.as_str() {
                    "tcp" => ipproto::TCP,
                    "udp" => ipproto::UDP,
                    "sctp" => ipproto::SCTP,
                    "icmp" => ipproto::ICMP,
                    "icmp6" => ipproto::ICMPV6,
                    "gre" => ipproto::GRE,
                    "esp" => ipproto::ESP,
                    "ah" => ipproto::AH,
                    n => n.parse::<u8>().map_err(|_| {
                        syntax(
                            column,
                            format!("`{n}` is not a protocol number (0-255) or name"),
                        )
                    })?,
                };
                Ok(Expr::Leaf(Leaf::Proto(n)))
            }
            "vlan" => {
                self.at += 1;
                match self.peek().map(|t| t.parse::<u16>()) {
                    Some(Ok(id)) => {
                        let column = self.column();
                        self.at += 1;
                        if id > 4095 {
                            return Err(syntax(column, format!("VLAN id {id} is above 4095")));
                        }
                        Ok(Expr::Leaf(Leaf::Vlan(id, id)))
                    }
                    _ => Ok(Expr::Leaf(Leaf::Vlan(0, 4095))),
                }
            }
            w if starts_qualified(w) => self.qualified(),
            // A bare value repeats the last qualifier (`port 80 or 443`).
            _ if self.last.is_some() && looks_like_value(&word) => {
                let Some((dir, what)) = self.last else {
                    unreachable!("checked above")
                };
                self.value(dir, what)
            }
            _ => Err(syntax(
                column,
                format!(
                    "`{word}` is not a filter keyword (ip, ip6, arp, tcp, udp, sctp, icmp, icmp6, gre, proto, vlan, src, dst, host, net, port, portrange, and, or, not)"
                ),
            )),
        }
    }

    fn qualified(&mut self) -> Result<Expr, FilterError> {
        let mut dir = Dir::Either;
        if self.next_is(&["src"]) {
            dir = Dir::Src;
            if self.peek() == Some("or") || self.peek() == Some("and") {
                let both = self.peek() == Some("and");
                // `src or dst host X`: only when `dst` follows.
                if self.tokens.get(self.at + 1).map(|t| t.text.as_str()) == Some("dst") {
                    self.at += 2;
                    dir = if both { Dir::Both } else { Dir::Either };
                }
            }
        } else if self.next_is(&["dst"]) {
            dir = Dir::Dst;
        }
        let column = self.column();
        let t = self.take("host, net, port or portrange")?;
        let what = match t.text.as_str() {
            "host" => What::Host,
            "net" => What::Net,
            "port" => What::Port,
            "portrange" => What::PortRange,
            other => {
                return Err(syntax(
                    column,
                    format!("expected host, net, port or portrange, found `{other}`"),
                ));
            }
        };
        self.last = Some((dir, what));
        self.value(dir, what)
    }

    fn value(&mut self, dir: Dir, what: What) -> Result<Expr, FilterError> {
        let column = self.column();
        let expected = match what {
            What::Host => "an IPv4 or IPv6 address",
            What::Net => "a network (address/prefix)",
            What::Port => "a port number",
            What::PortRange => "a port range (low-high)",
        };
        let t = self.take(expected)?;
        let bad = |why: String| syntax(column, why);
        let (src, dst) = match what {
            What::Host => {
                let a: IpAddr = t.text.parse().map_err(|_| {
                    bad(format!(
                        "`{}` is not an IPv4 or IPv6 address (names are not resolved)",
                        t.text
                    ))
                })?;
                let net = IpNet::from(a);
                (Leaf::SrcNet(net), Leaf::DstNet(net))
            }
            What::Net => {
                let net: IpNet = t.text.parse().map_err(|_| {
                    bad(format!(
                        "`{}` is not a network like 198.18.0.0/15 or fd00::/8",
                        t.text
                    ))
                })?;
                if net.trunc() != net {
                    return Err(bad(format!(
                        "`{}` has host bits set beyond the prefix (did you mean {}?)",
                        t.text,
                        net.trunc()
                    )));
                }
                (Leaf::SrcNet(net), Leaf::DstNet(net))
            }
            What::Port => {
                let p = port(&t.text).map_err(bad)?;
                (Leaf::SrcPort(p, p), Leaf::DstPort(p, p))
            }
            What::PortRange => {
                let (lo, hi) = if let Some((a, b)) = t.text.split_once('-') {
                    (port(a).map_err(bad)?, port(b).map_err(bad)?)
                } else {
                    return Err(bad(format!("`{}` is not a range like 1024-65535", t.text)));
                };
                if lo > hi {
                    return Err(bad(format!("port range {lo}-{hi} is empty")));
                }
                (Leaf::SrcPort(lo, hi), Leaf::DstPort(lo, hi))
            }
        };
        Ok(match dir {
            Dir::Src => Expr::Leaf(src),
            Dir::Dst => Expr::Leaf(dst),
            Dir::Either => Expr::Or(vec![Expr::Leaf(src), Expr::Leaf(dst)]),
            Dir::Both => Expr::And(vec![Expr::Leaf(src), Expr::Leaf(dst)]),
        })
    }
}

fn starts_qualified(w: &str) -> bool {
    matches!(w, "src" | "dst" | "host" | "net" | "port" | "portrange")
}

fn looks_like_value(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_digit()) || w.contains(':')
}

fn port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("`{text}` is not a port number (0-65535)"))
}

fn protocol_leaf(word: &str) -> Leaf {
    match word {
        "ip" => Leaf::Ipv4,
        "ip6" => Leaf::Ipv6,
        "arp" => Leaf::Arp,
        "tcp" => Leaf::Proto(ipproto::TCP),
        "udp" => Leaf::Proto(ipproto::UDP),
        "sctp" => Leaf::Proto(ipproto::SCTP),
        "icmp" => Leaf::Proto(ipproto::ICMP),
        "icmp6" => Leaf::Proto(ipproto::ICMPV6),
        _ => Leaf::Proto(ipproto::GRE),
    }
}

/// A leaf with its negation flag, after `not` is pushed inward.
type Literal = (Leaf, bool);

/// Negation normal form: `not` only on leaves.
fn nnf(e: Expr, negated: bool) -> NExpr {
    match e {
        Expr::Leaf(l) => NExpr::Lit((l, negated)),
        Expr::Not(inner) => nnf(*inner, !negated),
        Expr::And(v) if !negated => NExpr::And(v.into_iter().map(|e| nnf(e, false)).collect()),
        Expr::And(v) => NExpr::Or(v.into_iter().map(|e| nnf(e, true)).collect()),
        Expr::Or(v) if !negated => NExpr::Or(v.into_iter().map(|e| nnf(e, false)).collect()),
        Expr::Or(v) => NExpr::And(v.into_iter().map(|e| nnf(e, true)).collect()),
    }
}

enum NExpr {
    Lit(Literal),
    And(Vec<NExpr>),
    Or(Vec<NExpr>),
}

/// Disjunctive normal form, refusing more than the kernel table holds.
/// Intermediate results are bounded too, so a hostile expression cannot
/// make the expansion blow up.
fn dnf(e: NExpr) -> Result<Vec<Vec<Literal>>, FilterError> {
    let too_big = |terms: &Vec<Vec<Literal>>| {
        let longest = terms.iter().map(Vec::len).max().unwrap_or(0);
        (terms.len() > MAX_TERMS || longest > MAX_PREDICATES).then_some(FilterError::TooComplex {
            terms: terms.len(),
            longest,
        })
    };
    let out = match e {
        NExpr::Lit(l) => vec![vec![l]],
        NExpr::Or(v) => {
            let mut all = Vec::new();
            for e in v {
                all.extend(dnf(e)?);
                if let Some(err) = too_big(&all) {
                    return Err(err);
                }
            }
            all
        }
        NExpr::And(v) => {
            let mut acc: Vec<Vec<Literal>> = vec![Vec::new()];
            for e in v {
                let right = dnf(e)?;
                let mut next = Vec::with_capacity(acc.len() * right.len());
                for a in &acc {
                    for b in &right {
                        let mut t = a.clone();
                        for l in b {
                            if !t.contains(l) {
                                t.push(*l);
                            }
                        }
                        next.push(t);
                    }
                    if next.len() > MAX_TERMS {
                        break;
                    }
                }
                acc = next;
                if let Some(err) = too_big(&acc) {
                    return Err(err);
                }
            }
            acc
        }
    };
    // A term holding a literal and its negation never matches: drop it.
    let mut out: Vec<Vec<Literal>> = out
        .into_iter()
        .filter(|t| !t.iter().any(|(l, n)| t.contains(&(*l, !n))))
        .collect();
    out.dedup();
    if let Some(err) = too_big(&out) {
        return Err(err);
    }
    Ok(out)
}

fn table_of(terms: &[Vec<Literal>]) -> Result<FilterTable, FilterError> {
    let mut t = FilterTable::default();
    if terms.is_empty() {
        // Contradictory (`tcp and not tcp`): one term no frame passes.
        t.terms = 1;
        t.lens[0] = 2;
        t.predicates[0][0] = predicate((Leaf::Ipv4, false));
        t.predicates[0][1] = predicate((Leaf::Ipv4, true));
        return Ok(t);
    }
    t.terms = terms.len() as u32;
    for (i, term) in terms.iter().enumerate() {
        t.lens[i] = term.len() as u8;
        for (j, l) in term.iter().enumerate() {
            t.predicates[i][j] = predicate(*l);
        }
    }
    Ok(t)
}

fn predicate((leaf, negated): Literal) -> Predicate {
    let mut p = Predicate {
        negate: u8::from(negated),
        ..Predicate::default()
    };
    let net = |p: &mut Predicate, net: IpNet| {
        let (addr, mask) = mapped(net);
        p.mask = words(mask);
        let a = words(addr);
        p.addr = [a[0] & p.mask[0], a[1] & p.mask[1]];
    };
    match leaf {
        Leaf::Ipv4 => p.kind = kind::IPV4,
        Leaf::Ipv6 => p.kind = kind::IPV6,
        Leaf::Arp => p.kind = kind::ARP,
        Leaf::Proto(n) => {
            p.kind = kind::IP_PROTO;
            p.proto = n;
        }
        Leaf::SrcNet(n) => {
            p.kind = kind::SRC_NET;
            net(&mut p, n);
        }
        Leaf::DstNet(n) => {
            p.kind = kind::DST_NET;
            net(&mut p, n);
        }
        Leaf::SrcPort(lo, hi) => (p.kind, p.lo, p.hi) = (kind::SRC_PORT, lo, hi),
        Leaf::DstPort(lo, hi) => (p.kind, p.lo, p.hi) = (kind::DST_PORT, lo, hi),
        Leaf::Vlan(lo, hi) => (p.kind, p.lo, p.hi) = (kind::VLAN, lo, hi),
    }
    p
}

/// A network as 16-byte address and mask, IPv4 as IPv4-mapped IPv6 (as
/// the parser reports IPv4 addresses), so an IPv4 net never matches IPv6.
fn mapped(net: IpNet) -> ([u8; 16], [u8; 16]) {
    let (addr, prefix) = match net {
        IpNet::V4(n) => (n.addr().to_ipv6_mapped().octets(), 96 + n.prefix_len()),
        IpNet::V6(n) => (n.addr().octets(), n.prefix_len()),
    };
    let bits = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    (addr, bits.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use agent_common::{
        filter::{FilterInput, matches},
        parse,
    };
    use nta_lab::frames::{FrameSpec, L4};

    use super::*;

    fn selects(filter: &str, frame: &[u8]) -> bool {
        let f = CaptureFilter::compile(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let p = parse::parse(frame);
        matches(&f.table, &FilterInput::new(&p, p.addresses(frame)))
    }

    fn err(filter: &str) -> String {
        CaptureFilter::compile(filter)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    fn tcp(sport: u16, dport: u16) -> Vec<u8> {
        FrameSpec::ipv4(L4::Tcp {
            sport,
            dport,
            flags: 0x02,
        })
        .build()
    }

    #[test]
    fn protocols_ports_and_hosts() {
        let t = tcp(40000, 443);
        let u = FrameSpec::ipv4(L4::Udp {
            sport: 5353,
            dport: 53,
        })
        .build();
        let icmp = FrameSpec::ipv4(L4::Icmp { kind: 8, code: 0 }).build();
        let arp = FrameSpec::arp().build();
        assert!(selects("", &t) && selects("", &arp));
        assert!(selects("tcp", &t) && !selects("tcp", &u));
        assert!(selects("tcp port 443", &t) && !selects("udp port 443", &t));
        assert!(selects("dst port 443", &t) && !selects("src port 443", &t));
        assert!(selects("portrange 400-500", &t) && !selects("portrange 1-100", &t));
        assert!(selects("port 53 or 443", &t), "abbreviated");
        assert!(selects("udp and dst port 53", &u));
        assert!(
            selects("icmp", &icmp) && !selects("port 8", &icmp),
            "ICMP has no ports"
        );
        assert!(selects("arp", &arp) && !selects("ip", &arp));
        assert!(
            selects("not port 80", &arp),
            "as tcpdump: no port is not port 80"
        );
        assert!(selects("ip and not (udp or icmp)", &t));
        assert!(!selects("tcp and not tcp", &t));
        assert!(selects("proto 6", &t) && selects("ip proto tcp", &t));
    }

    #[test]
    fn addresses_and_networks_v4_and_v6() {
        // Lab frames go 198.18.0.1 -> 198.18.0.2 and fd00:6e74:61::1 -> ::2.
        let t = tcp(1, 2);
        assert!(selects("src host 198.18.0.1", &t));
        assert!(!selects("dst host 198.18.0.1", &t));
        assert!(selects("host 198.18.0.2", &t) && !selects("host 198.18.0.3", &t));
        assert!(selects("src and dst net 198.18.0.0/15", &t));
        assert!(!selects("src and dst net 198.18.0.2/32", &t));
        assert!(selects("src or dst net 198.18.0.2/32", &t));
        assert!(selects("net 0.0.0.0/0", &t), "any IPv4");
        assert!(!selects("ip6", &t));
        let v6 = FrameSpec::ipv6(L4::Udp { sport: 1, dport: 2 }).build();
        assert!(selects("ip6 src host fd00:6e74:61::1", &v6));
        assert!(selects("dst net fd00::/8", &v6) && !selects("dst net fd01::/16", &v6));
        assert!(
            !selects("net 0.0.0.0/0", &v6),
            "an IPv4 net never matches IPv6"
        );
        assert!(!selects("net ::ffff:0:0/96", &v6));
        assert!(selects("ip6 and udp", &v6));
    }

    #[test]
    fn nesting_is_bounded_instead_of_overflowing_the_stack() {
        let deep = |n: usize| format!("{}tcp{}", "(".repeat(n), ")".repeat(n));
        assert!(CaptureFilter::compile(&deep(200)).is_ok());
        let e = err(&deep(100_000));
        assert!(e.contains("nested deeper than 256 levels"), "{e}");
        let e = err(&format!("{}tcp", "not ".repeat(100_000)));
        assert!(e.contains("nested deeper than 256 levels"), "{e}");
        assert!(selects(&format!("{}tcp", "not ".repeat(200)), &tcp(1, 2)));
    }

    #[test]
    fn errors_point_at_the_column() {
        assert_eq!(
            err("tcp port eighty"),
            "capture filter, column 10: `eighty` is not a port number (0-65535)"
        );
        assert_eq!(
            err("host example.com"),
            "capture filter, column 6: `example.com` is not an IPv4 or IPv6 address (names are not resolved)"
        );
        assert!(
            err("tcp and").starts_with("capture filter, column 8: expected a condition at the end")
        );
        assert!(
            err("(tcp").contains("expected `)` at the end"),
            "{}",
            err("(tcp")
        );
        assert!(err("tcp )").starts_with("capture filter, column 5: unexpected `)`"));
        assert!(err("net 10.1.2.3/8").contains("host bits set"));
        assert!(err("vlan 5000").contains("above 4095"));
        assert!(err("portrange 90-80").contains("empty"));
        assert!(
            err("less 100").starts_with("capture filter, column 1: `less` is not a filter keyword")
        );
        assert!(err("tcp @").starts_with("capture filter, column 5: unexpected character `@`"));
        assert!(err("proto 300").contains("not a protocol number"));
    }

    #[test]
    fn expansion_is_bounded() {
        // (a or b) and (c or d) and (e or f) and (g or h): 16 terms.
        let e = err(
            "(port 1 or port 2) and (port 3 or port 4) and (port 5 or port 6) and (port 7 or port 8)",
        );
        assert!(e.contains("alternatives"), "{e}");
        // `not` of an OR of hosts is one AND term: fits.
        assert!(
            CaptureFilter::compile("not (host 198.18.0.1 or host 198.18.0.2 or host 198.18.0.3)")
                .is_ok()
        );
        // A long chain that would explode is refused quickly.
        let chain = (0..40)
            .map(|i| format!("(port {i} or port {})", i + 100))
            .collect::<Vec<_>>()
            .join(" and ");
        assert!(err(&chain).contains("alternatives"));
        let nested = format!("{}tcp{}", "(".repeat(200), ")".repeat(200));
        assert!(CaptureFilter::compile(&nested).is_ok());
    }
}
