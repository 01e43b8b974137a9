//! Application metadata end to end: real TLS handshakes (openssl
//! s_server and s_client, curl with ALPN, and a post-quantum-sized
//! ClientHello that spans two segments), QUIC (aioquic, v1 and v2) and
//! DNS (dnsmasq answering dig: many types, NXDOMAIN, a truncated answer
//! retried over TCP and spanning segments) between lab namespaces, through `nta run` on a router namespace between them;
//! every field nta writes is checked against tshark's dissection of the
//! same traffic, and `nta analyze` of that capture gives the same
//! documents.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::Stdio,
    thread,
    time::Duration,
};

use common::{Agent, NTA, TempDir};
use nta_lab::{NetNs, VethPair, netns::run_in_netns, privileged, programs::GroupChild};
use serde_json::Value;

const CLIENT: &str = "198.18.7.1";
const SERVER: &str = "198.18.8.1";
const PORT: u16 = 44330;

/// client ns — router ns (nta on both of its interfaces) — server ns.
struct Lab {
    client: NetNs,
    router: NetNs,
    server: NetNs,
    to_client: VethPair,
    to_server: VethPair,
}

fn lab() -> Lab {
    let ns = |p| NetNs::new(p).unwrap_or_else(|e| panic!("{e}"));
    let (client, router, server) = (ns("ntmc"), ns("ntmr"), ns("ntms"));
    let to_client = VethPair::between(&router, &client, "ntmc").unwrap_or_else(|e| panic!("{e}"));
    let to_server = VethPair::between(&router, &server, "ntms").unwrap_or_else(|e| panic!("{e}"));
    let ip = |ns: &NetNs, args: &[&str]| {
        ns.exec("ip", args).unwrap_or_else(|e| panic!("{e}"));
    };
    ip(
        &router,
        &["addr", "add", "198.18.7.254/24", "dev", &to_client.outer],
    );
    ip(
        &router,
        &["addr", "add", "198.18.8.254/24", "dev", &to_server.outer],
    );
    ip(
        &client,
        &[
            "addr",
            "add",
            &format!("{CLIENT}/24"),
            "dev",
            &to_client.inner,
        ],
    );
    ip(
        &server,
        &[
            "addr",
            "add",
            &format!("{SERVER}/24"),
            "dev",
            &to_server.inner,
        ],
    );
    // Routes only to each other through the router: nothing leaves the lab.
    ip(
        &client,
        &["route", "add", "198.18.8.0/24", "via", "198.18.7.254"],
    );
    ip(
        &server,
        &["route", "add", "198.18.7.0/24", "via", "198.18.8.254"],
    );
    router
        .exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])
        .unwrap_or_else(|e| panic!("{e}"));
    Lab {
        client,
        router,
        server,
        to_client,
        to_server,
    }
}

/// A self-signed P-256 certificate for lab.test in `dir`: (key, cert).
fn certificate(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let status = nta_lab::programs::command("openssl")
        .unwrap_or_else(|e| panic!("{e}"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "1", "-nodes", "-subj", "/CN=lab.test"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("openssl req: {e}"));
    assert!(status.success());
    (key, cert)
}

/// tcpdump on the router's client side, writing `pcap`, for `filter`.
fn tcpdump(lab: &Lab, pcap: &std::path::Path, filter: &[&str]) -> GroupChild {
    GroupChild::spawn(
        lab.router
            .bounded(60, "tcpdump")
            .unwrap_or_else(|e| panic!("{e}"))
            .args(["-i", &lab.to_client.outer, "-U", "-w"])
            .arg(pcap)
            .args(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap_or_else(|e| panic!("tcpdump: {e}"))
}

/// `nta run` on the router's two interfaces, writing its log to `log`
/// (`option`: `--tls-log` or `--dns-log`) and its flow records to
/// `flows.jsonl` beside it.
fn start_nta(lab: &Lab, option: &str, log: &std::path::Path) -> Agent {
    start_nta_with(lab, option, log, &[])
}

/// [`start_nta`] with more options.
fn start_nta_with(lab: &Lab, option: &str, log: &std::path::Path, more: &[&str]) -> Agent {
    let flows = log.with_file_name("flows.jsonl");
    let mut args = vec![
        "--iface",
        &lab.to_client.outer,
        "--iface",
        &lab.to_server.outer,
        option,
        log.to_str().unwrap_or_default(),
        "--flows",
        flows.to_str().unwrap_or_default(),
        "--user",
        "root",
    ];
    args.extend_from_slice(more);
    Agent::start_in(&lab.router, &args)
}

/// Every flow record (both directions) of the client port `port` carries
/// `value` at `path` (a JSON pointer).
fn flows_carry(log: &std::path::Path, port: u64, path: &str, value: &str) {
    let flows = read_docs(&log.with_file_name("flows.jsonl"));
    let of_port: Vec<&Value> = flows
        .iter()
        .filter(|f| f["source"]["port"] == port || f["destination"]["port"] == port)
        .collect();
    assert!(of_port.len() >= 2, "both directions of {port}: {flows:#?}");
    for f in of_port {
        assert_eq!(f.pointer(path), Some(&Value::from(value)), "{f}");
    }
}

/// Lets the last exchanges pass, stops nta (which writes what still
/// waits) and then tcpdump.
fn stop(mut agent: Agent, tcpdump: GroupChild) {
    thread::sleep(Duration::from_millis(1500));
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    thread::sleep(Duration::from_millis(500));
    drop(tcpdump);
}

/// `nta analyze` of `pcap` with `args`; panics with its stderr if it fails.
fn analyze(pcap: &std::path::Path, args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new(NTA)
        .arg("analyze")
        .arg(pcap)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A document without what differs between a live run and an analysis
/// of its capture (the time stamps and where it came from), and with
/// `event.duration` rounded to the millisecond (the capture's clock and
/// XDP's are not the same clock).
fn comparable(mut d: Value) -> Value {
    if let Some(o) = d.as_object_mut() {
        for k in ["@timestamp", "observer", "log"] {
            o.remove(k);
        }
    }
    if let Some(ns) = d["event"]["duration"].as_u64() {
        d["event"]["duration"] = Value::from(ns / 1_000_000);
    }
    d
}

/// `nta analyze` of `pcap` writes (with `option`) the documents the
/// live run wrote, but for what [`comparable`] leaves out; in any order.
fn assert_same_offline(live: Vec<Value>, pcap: &std::path::Path, option: &str, dir: &TempDir) {
    let offline = dir.join("offline.jsonl");
    analyze(pcap, &[option.as_ref(), offline.as_os_str()]);
    let order = |v: Vec<Value>| {
        let mut v: Vec<Value> = v.into_iter().map(comparable).collect();
        v.sort_by_key(|d| (d["source"]["port"].as_u64(), d["dns"]["id"].to_string()));
        v
    };
    assert_eq!(order(live), order(read_docs(&offline)));
}

fn read_docs(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// tshark's hellos in the capture: (client port, type, server name,
/// cipher suite of a ServerHello, ALPN list, cipher suites offered).
fn tshark_hellos(pcap: &std::path::Path) -> Vec<Vec<String>> {
    let out = nta_lab::programs::command("tshark")
        .unwrap_or_else(|e| panic!("{e}"))
        .args(["-r"])
        .arg(pcap)
        .args([
            "-Y",
            "tls.handshake.type == 1 || tls.handshake.type == 2",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "tcp.srcport",
            "-e",
            "tls.handshake.type",
            "-e",
            "tls.handshake.extensions_server_name",
            "-e",
            "tls.handshake.ciphersuite",
            "-e",
            "tls.handshake.extensions_alpn_str",
        ])
        .output()
        .unwrap_or_else(|e| panic!("tshark: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// A ClientHello of 1.9 KB (an X25519MLKEM768-sized key share) written
/// straight into a TCP connection: the kernel cuts it at the MSS.
fn send_large_hello(ns: &NetNs) {
    let hello = nta_lab::tls::post_quantum("pq.lab.test").record();
    assert!(hello.len() > 1460);
    run_in_netns(ns.name(), || {
        let addr: SocketAddr = format!("{SERVER}:{PORT}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("connecting: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        s.write_all(&hello).unwrap_or_else(|e| panic!("{e}"));
        // The server's answer (a HelloRetryRequest: it knows none of the
        // offered key shares but x25519).
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn tls_handshakes_are_logged_with_the_fields_tshark_sees() {
    if !privileged("tls_handshakes_are_logged_with_the_fields_tshark_sees") {
        return;
    }
    let dir = TempDir::new("ntatls");
    let lab = lab();
    let (key, cert) = certificate(&dir);
    let pcap = dir.join("tls.pcap");
    let _tcpdump = tcpdump(&lab, &pcap, &["tcp", "port", &PORT.to_string()]);
    let log = dir.join("tls.jsonl");
    let agent = start_nta(&lab, "--tls-log", &log);
    let _server = GroupChild::spawn(
        lab.server
            .bounded(60, "openssl")
            .unwrap_or_else(|e| panic!("{e}"))
            .args(["s_server", "-accept", &format!("{SERVER}:{PORT}"), "-key"])
            .arg(&key)
            .arg("-cert")
            .arg(&cert)
            .args(["-alpn", "h2,http/1.1", "-www"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap_or_else(|e| panic!("s_server: {e}"));
    thread::sleep(Duration::from_millis(800));
    let connect = format!("{SERVER}:{PORT}");
    let clients: [&[&str]; 2] = [
        &[
            "-servername",
            "www.lab.test",
            "-alpn",
            "h2,http/1.1",
            "-tls1_3",
        ],
        &[
            "-servername",
            "old.lab.test",
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ],
    ];
    for extra in clients {
        let status = lab
            .client
            .bounded(10, "openssl")
            .unwrap_or_else(|e| panic!("{e}"))
            .args(["s_client", "-connect", &connect])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("s_client: {e}"));
        assert!(status.success(), "s_client {extra:?}");
    }
    // curl with ALPN (http/1.1 only: s_server -www speaks HTTP/1.0), its
    // server name from the URL.
    let status = lab
        .client
        .bounded(10, "curl")
        .unwrap_or_else(|e| panic!("{e}"))
        .args(["-sk", "--http1.1", "--max-time", "5", "-o", "/dev/null"])
        .args(["--resolve", &format!("curl.lab.test:{PORT}:{SERVER}")])
        .arg(format!("https://curl.lab.test:{PORT}/"))
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    assert!(status.success(), "curl");
    send_large_hello(&lab.client);
    stop(agent, _tcpdump);

    let docs = read_docs(&log);
    let by_name = |name: &str| {
        docs.iter()
            .find(|d| d["tls"]["client"]["server_name"] == name)
            .unwrap_or_else(|| panic!("no document for {name} in {docs:#?}"))
    };
    assert_eq!(docs.len(), 4, "{docs:#?}");
    let curl = by_name("curl.lab.test");
    assert_eq!(
        curl["tls"]["next_protocol"],
        Value::Null,
        "TLS 1.3 hides it"
    );
    assert_eq!(
        curl["nta"]["tls"]["client"]["alpn"],
        serde_json::json!(["http/1.1"])
    );
    assert_eq!(curl["tls"]["version"], "1.3");
    let modern = by_name("www.lab.test");
    assert_eq!(modern["tls"]["version"], "1.3");
    assert_eq!(modern["tls"]["version_protocol"], "tls");
    assert_eq!(modern["tls"]["cipher"], "TLS_AES_256_GCM_SHA384");
    assert_eq!(
        modern["nta"]["tls"]["client"]["alpn"],
        serde_json::json!(["h2", "http/1.1"])
    );
    assert_eq!(modern["source"]["ip"], CLIENT);
    assert_eq!(modern["destination"]["ip"], SERVER);
    assert_eq!(modern["destination"]["port"], PORT);
    assert_eq!(modern["network"]["transport"], "tcp");
    assert!(
        modern["tls"]["client"]["ja4"]
            .as_str()
            .is_some_and(|j| j.starts_with("t13d") && j.len() == 36),
        "{modern}"
    );
    let old = by_name("old.lab.test");
    assert_eq!(old["tls"]["version"], "1.2");
    assert_eq!(
        old["tls"]["cipher"],
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    );
    // The flow records of each connection carry its server name.
    for name in ["www.lab.test", "old.lab.test"] {
        let port = by_name(name)["source"]["port"].as_u64().unwrap_or_default();
        flows_carry(&log, port, "/tls/client/server_name", name);
    }
    // The hello split over two segments, answered by a HelloRetryRequest.
    let pq = by_name("pq.lab.test");
    assert_eq!(pq["nta"]["tls"]["server_hello"], true, "{pq}");
    assert_eq!(pq["tls"]["version"], "1.3");

    // tshark's view of the same traffic, field by field.
    let seen = tshark_hellos(&pcap);
    for d in &docs {
        let port = d["source"]["port"].to_string();
        let client = seen
            .iter()
            .find(|r| r[0] == port && r[1].split(',').any(|t| t == "1"))
            .unwrap_or_else(|| panic!("tshark has no ClientHello from {port}: {seen:?}"));
        assert_eq!(d["tls"]["client"]["server_name"], client[2].as_str());
        let alpn: Vec<&str> = client[4].split(',').filter(|s| !s.is_empty()).collect();
        assert_eq!(d["nta"]["tls"]["client"]["alpn"], serde_json::json!(alpn));
        let offered = d["tls"]["client"]["supported_ciphers"]
            .as_array()
            .map_or(0, Vec::len);
        // tshark lists every suite, GREASE (0x?a?a) included.
        let grease =
            |s: &&str| s.len() == 6 && &s[3..4] == "a" && &s[5..6] == "a" && s[2..3] == s[4..5];
        let listed = client[3].split(',').filter(|s| !grease(s)).count();
        assert_eq!(offered, listed, "{client:?}");
    }
    // Cipher suites chosen, as numbers: tshark's against the names nta wrote.
    let chosen: Vec<&str> = seen
        .iter()
        .filter(|r| r[1].split(',').any(|t| t == "2"))
        .map(|r| r[3].as_str())
        .collect();
    assert_eq!(chosen.len(), 4, "{seen:?}");
    for (number, name) in [
        ("0x1302", "TLS_AES_256_GCM_SHA384"),
        ("0xc02b", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ] {
        assert!(chosen.contains(&number), "tshark: {chosen:?}");
        assert!(docs.iter().any(|d| d["tls"]["cipher"] == name));
    }

    // The same capture offline gives the same documents but for the
    // time stamps and where they came from.
    assert_same_offline(docs, &pcap, "--tls-log", &dir);
    drop(lab.to_client);
    drop(lab.to_server);
}

/// The name server's records (dnsmasq options).
fn dnsmasq_records() -> Vec<String> {
    // Eight 255-byte strings: the answer (2 KB) is truncated over UDP
    // without EDNS and spans two segments over TCP.
    let big: Vec<String> = (b'a'..b'i')
        .map(|c| String::from_utf8(vec![c; 255]).unwrap_or_default())
        .collect();
    vec![
        "--host-record=www.lab.test,198.18.8.10,fd00::10".into(),
        "--cname=alias.lab.test,www.lab.test".into(),
        "--mx-host=lab.test,mail.lab.test,10".into(),
        "--txt-record=lab.test,v=spf1 -all".into(),
        format!("--txt-record=big.lab.test,{}", big.join(",")),
        "--srv-host=_sip._tcp.lab.test,sip.lab.test,5060,1,2".into(),
        // HTTPS: priority 1, target ".", alpn "h2".
        "--dns-rr=svc.lab.test,65,00010000010003026832".into(),
        // Names under lab.test that are not above: NXDOMAIN.
        "--local=/lab.test/".into(),
    ]
}

/// dnsmasq on the server's address with `records` (options), nothing
/// else: no upstream, no hosts file, no daemon.
fn dnsmasq(lab: &Lab, records: &[String]) -> GroupChild {
    GroupChild::spawn(
        lab.server
            .bounded(60, "dnsmasq")
            .unwrap_or_else(|e| panic!("{e}"))
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                "--pid-file=",
                &format!("--listen-address={SERVER}"),
            ])
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap_or_else(|e| panic!("dnsmasq: {e}"))
}

/// dig's queries: (name, type, extra options).
const QUERIES: [(&str, &str, &[&str]); 10] = [
    ("www.lab.test", "A", &[]),
    ("www.lab.test", "AAAA", &[]),
    ("alias.lab.test", "A", &[]),
    ("lab.test", "MX", &[]),
    ("lab.test", "TXT", &[]),
    ("_sip._tcp.lab.test", "SRV", &[]),
    ("10.8.18.198.in-addr.arpa", "PTR", &[]),
    ("svc.lab.test", "HTTPS", &[]),
    ("nope.lab.test", "A", &[]),
    ("big.lab.test", "TXT", &["+noedns"]),
];

/// tshark's DNS messages: one map per message of field to its values.
fn tshark_dns(pcap: &std::path::Path) -> Vec<std::collections::HashMap<String, Vec<String>>> {
    let fields = [
        "udp.srcport",
        "udp.dstport",
        "tcp.srcport",
        "tcp.dstport",
        "dns.id",
        "dns.flags.response",
        "dns.qry.name",
        "dns.qry.type",
        "dns.flags.rcode",
        "dns.flags.truncated",
        "dns.count.answers",
        "dns.a",
        "dns.aaaa",
        "dns.cname",
        "dns.mx.mail_exchange",
        "dns.txt",
        "dns.srv.target",
        "dns.ptr.domain_name",
    ];
    let mut cmd = nta_lab::programs::command("tshark").unwrap_or_else(|e| panic!("{e}"));
    cmd.arg("-r").arg(pcap).args([
        "-Y",
        "dns",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "aggregator=;",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("tshark: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            fields
                .iter()
                .zip(l.split('|'))
                .map(|(f, v)| {
                    let values = v.split(';').filter(|s| !s.is_empty()).map(str::to_string);
                    (f.to_string(), values.collect())
                })
                .collect()
        })
        .collect()
}

fn rcode_number(name: &str) -> &'static str {
    match name {
        "NOERROR" => "0",
        "NXDOMAIN" => "3",
        "REFUSED" => "5",
        "SERVFAIL" => "2",
        other => panic!("unexpected rcode {other}"),
    }
}

#[test]
fn dns_transactions_are_logged_with_the_fields_tshark_sees() {
    if !privileged("dns_transactions_are_logged_with_the_fields_tshark_sees") {
        return;
    }
    let dir = TempDir::new("ntadns");
    let lab = lab();
    let pcap = dir.join("dns.pcap");
    let _tcpdump = tcpdump(&lab, &pcap, &["port", "53"]);
    let log = dir.join("dns.jsonl");
    let agent = start_nta(&lab, "--dns-log", &log);
    let _server = dnsmasq(&lab, &dnsmasq_records());
    thread::sleep(Duration::from_millis(800));
    for (name, qtype, extra) in QUERIES {
        let out = lab
            .client
            .bounded(10, "dig")
            .unwrap_or_else(|e| panic!("{e}"))
            .args([&format!("@{SERVER}"), "+tries=1", "+time=3", name, qtype])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("dig: {e}"));
        assert!(out.status.success(), "dig {name} {qtype}");
    }
    stop(agent, _tcpdump);

    let docs = read_docs(&log);
    // Every query answered; the truncated one twice (UDP, then TCP).
    assert_eq!(docs.len(), QUERIES.len() + 1, "{docs:#?}");
    let find = |name: &str, qtype: &str, transport: &str| {
        docs.iter()
            .find(|d| {
                d["dns"]["question"]["name"] == name
                    && d["dns"]["question"]["type"] == qtype
                    && d["network"]["transport"] == transport
            })
            .unwrap_or_else(|| panic!("no {name} {qtype} over {transport} in {docs:#?}"))
    };
    let www = find("www.lab.test", "A", "udp");
    assert_eq!(www["dns"]["response_code"], "NOERROR");
    assert_eq!(www["dns"]["question"]["registered_domain"], "lab.test");
    assert_eq!(www["dns"]["question"]["subdomain"], "www");
    assert_eq!(www["dns"]["question"]["top_level_domain"], "test");
    assert_eq!(www["dns"]["type"], "answer");
    assert_eq!(
        www["dns"]["resolved_ip"],
        serde_json::json!(["198.18.8.10"])
    );
    assert_eq!(www["source"]["ip"], CLIENT);
    assert_eq!(www["destination"]["ip"], SERVER);
    assert_eq!(www["destination"]["port"], 53);
    assert!(www["event"]["duration"].as_u64().is_some_and(|d| d > 0));
    assert!(
        www["dns"]["header_flags"]
            .as_array()
            .is_some_and(|f| f.contains(&Value::from("RD")) && f.contains(&Value::from("AA"))),
        "{www}"
    );
    let alias = find("alias.lab.test", "A", "udp");
    assert_eq!(alias["dns"]["answers"][0]["type"], "CNAME");
    assert_eq!(alias["dns"]["answers"][0]["data"], "www.lab.test");
    assert_eq!(
        find("lab.test", "MX", "udp")["dns"]["answers"][0]["data"],
        "10 mail.lab.test"
    );
    assert_eq!(
        find("lab.test", "TXT", "udp")["dns"]["answers"][0]["data"],
        "\"v=spf1 -all\""
    );
    assert_eq!(
        find("_sip._tcp.lab.test", "SRV", "udp")["dns"]["answers"][0]["data"],
        "1 2 5060 sip.lab.test"
    );
    let https = find("svc.lab.test", "HTTPS", "udp");
    assert_eq!(https["dns"]["answers"][0]["type"], "HTTPS");
    assert_eq!(https["dns"]["answers"][0]["data"], "1 . alpn=\"h2\"");
    assert_eq!(
        find("nope.lab.test", "A", "udp")["dns"]["response_code"],
        "NXDOMAIN"
    );
    let truncated = find("big.lab.test", "TXT", "udp");
    assert!(
        truncated["dns"]["header_flags"]
            .as_array()
            .is_some_and(|f| f.contains(&Value::from("TC"))),
        "{truncated}"
    );
    // Over TCP the 2 KB answer spans segments: read whole (its data is
    // kept to 512 characters).
    let big = find("big.lab.test", "TXT", "tcp");
    assert_eq!(big["nta"]["dns"]["answers_count"], 1);
    assert!(big["nta"]["dns"].get("partial").is_none(), "{big}");
    assert!(
        big["destination"]["bytes"]
            .as_u64()
            .is_some_and(|b| b > 2040),
        "{big}"
    );
    let data = big["dns"]["answers"][0]["data"]
        .as_str()
        .unwrap_or_default();
    assert!(
        data.starts_with(&format!("\"{}\" \"b", "a".repeat(255))),
        "{data}"
    );
    assert_eq!(data.len(), 512);

    // The flow records of each query carry its question.
    for name in ["www.lab.test", "nope.lab.test"] {
        let port = find(name, "A", "udp")["source"]["port"]
            .as_u64()
            .unwrap_or_default();
        flows_carry(&log, port, "/dns/question/name", name);
    }

    // tshark's view of the same traffic, message by message.
    let seen = tshark_dns(&pcap);
    assert_eq!(seen.len(), 2 * docs.len(), "{seen:#?}");
    for d in &docs {
        let port = d["source"]["port"].to_string();
        let id = d["dns"]["id"].as_str().unwrap_or_default();
        let transport = d["network"]["transport"].as_str().unwrap_or_default();
        // The query from the client's port, the response to it, on the
        // document's transport.
        let message = |response: &str| {
            let (field, side) = match response {
                "0" => (format!("{transport}.srcport"), "from"),
                _ => (format!("{transport}.dstport"), "to"),
            };
            seen.iter()
                .find(|m| {
                    m["dns.flags.response"] == [response]
                        && m["dns.id"]
                            .first()
                            .and_then(|h| u16::from_str_radix(h.trim_start_matches("0x"), 16).ok())
                            == id.parse().ok()
                        && m[&field] == [port.clone()]
                })
                .unwrap_or_else(|| panic!("tshark has no message {id} {side} {port}: {seen:#?}"))
        };
        let (q, r) = (message("0"), message("1"));
        assert_eq!(
            q["dns.qry.name"],
            [d["dns"]["question"]["name"].as_str().unwrap_or_default()]
        );
        assert_eq!(
            r["dns.flags.rcode"],
            [rcode_number(
                d["dns"]["response_code"].as_str().unwrap_or_default()
            )]
        );
        assert_eq!(
            r["dns.count.answers"],
            [d["nta"]["dns"]["answers_count"].to_string()]
        );
        let ips: Vec<String> = r["dns.a"].iter().chain(&r["dns.aaaa"]).cloned().collect();
        let resolved: Vec<String> = d["dns"]["resolved_ip"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(resolved, ips, "{d}");
        // Each answer's data as tshark gives its parts.
        for a in d["dns"]["answers"].as_array().into_iter().flatten() {
            let data = a["data"].as_str().unwrap_or_default();
            let field = match a["type"].as_str().unwrap_or_default() {
                "CNAME" => "dns.cname",
                "MX" => "dns.mx.mail_exchange",
                "SRV" => "dns.srv.target",
                "PTR" => "dns.ptr.domain_name",
                "TXT" => {
                    // Each string quoted, as dig prints them, up to the
                    // characters kept.
                    let all: Vec<String> =
                        r["dns.txt"].iter().map(|p| format!("\"{p}\"")).collect();
                    assert!(all.join(" ").starts_with(data), "{data} vs {all:?}");
                    continue;
                }
                _ => continue,
            };
            for part in &r[field] {
                assert!(data.contains(part.as_str()), "{field} {part} not in {data}");
            }
        }
    }

    // The same capture offline gives the same documents.
    assert_same_offline(docs, &pcap, "--dns-log", &dir);
    drop(lab.to_client);
    drop(lab.to_server);
}

const QUIC_PORT: u16 = 44433;

#[test]
fn quic_handshakes_are_logged_with_the_fields_tshark_sees() {
    if !privileged("quic_handshakes_are_logged_with_the_fields_tshark_sees")
        || !nta_lab::programs::available_for(
            "quic_handshakes_are_logged_with_the_fields_tshark_sees",
            "aioquic",
        )
    {
        return;
    }
    let dir = TempDir::new("ntaquic");
    let lab = lab();
    let (key, cert) = certificate(&dir);
    let pcap = dir.join("quic.pcap");
    let _tcpdump = tcpdump(&lab, &pcap, &["udp", "port", &QUIC_PORT.to_string()]);
    let log = dir.join("tls.jsonl");
    let agent = start_nta(&lab, "--tls-log", &log);
    let script = nta_lab::programs::python_script("quic_peer.py");
    let port = QUIC_PORT.to_string();
    let _server = GroupChild::spawn(
        lab.server
            .bounded(60, "aioquic")
            .unwrap_or_else(|e| panic!("{e}"))
            .arg(&script)
            .args(["server", "--host", SERVER, "--port", &port, "--alpn", "h3"])
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap_or_else(|e| panic!("quic server: {e}"));
    thread::sleep(Duration::from_millis(1500));
    for (name, version) in [("quic.lab.test", "1"), ("quic2.lab.test", "2")] {
        let out = lab
            .client
            .bounded(10, "aioquic")
            .unwrap_or_else(|e| panic!("{e}"))
            .arg(&script)
            .args([
                "client",
                "--host",
                SERVER,
                "--port",
                &port,
                "--alpn",
                "h3,hq-interop",
            ])
            .args(["--server-name", name, "--version", version])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("quic client: {e}"));
        assert!(
            out.status.success(),
            "quic client {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stop(agent, _tcpdump);

    let docs = read_docs(&log);
    assert_eq!(docs.len(), 2, "{docs:#?}");
    for name in ["quic.lab.test", "quic2.lab.test"] {
        let d = docs
            .iter()
            .find(|d| d["tls"]["client"]["server_name"] == name)
            .unwrap_or_else(|| panic!("no document for {name} in {docs:#?}"));
        assert_eq!(d["network"]["transport"], "udp");
        assert_eq!(d["network"]["protocol"], "quic");
        assert_eq!(d["destination"]["port"], QUIC_PORT);
        assert_eq!(d["tls"]["version"], "1.3", "{d}");
        assert_eq!(d["nta"]["tls"]["server_hello"], true, "{d}");
        assert_eq!(
            d["nta"]["tls"]["client"]["alpn"],
            serde_json::json!(["h3", "hq-interop"])
        );
        let ja4 = d["tls"]["client"]["ja4"].as_str().unwrap_or_default();
        assert!(ja4.starts_with("q13d") && ja4.len() == 36, "{ja4}");
        assert!(ja4[..10].ends_with("h3"), "{ja4}");
    }

    // tshark opens the same Initials (the port is not QUIC's own, so it
    // is told to decode it as QUIC).
    let out = nta_lab::programs::command("tshark")
        .unwrap_or_else(|e| panic!("{e}"))
        .arg("-r")
        .arg(&pcap)
        .args(["-d", &format!("udp.port=={QUIC_PORT},quic")])
        .args(["-Y", "tls.handshake.type == 1 || tls.handshake.type == 2"])
        .args(["-T", "fields", "-E", "separator=|"])
        .args(["-e", "udp.srcport", "-e", "tls.handshake.type"])
        .args(["-e", "tls.handshake.extensions_server_name"])
        .args(["-e", "tls.handshake.ciphersuite"])
        .output()
        .unwrap_or_else(|e| panic!("tshark: {e}"));
    let seen: Vec<Vec<String>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect();
    // tshark 4.0 opens QUIC v1 Initials; v2 ones it may not know.
    let v1 = docs
        .iter()
        .find(|d| d["tls"]["client"]["server_name"] == "quic.lab.test")
        .unwrap_or_else(|| panic!("v1"));
    let port = v1["source"]["port"].to_string();
    let client = seen
        .iter()
        .find(|r| r[0] == port && r[1].split(',').any(|t| t == "1"))
        .unwrap_or_else(|| panic!("tshark has no ClientHello from {port}: {seen:?}"));
    assert_eq!(client[2], "quic.lab.test");
    let offered = v1["tls"]["client"]["supported_ciphers"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(offered, client[3].split(',').count(), "{client:?}");
    let chosen = seen
        .iter()
        .find(|r| r[1].split(',').any(|t| t == "2"))
        .unwrap_or_else(|| panic!("tshark has no ServerHello: {seen:?}"));
    let suite = u16::from_str_radix(chosen[3].trim_start_matches("0x"), 16).unwrap_or_default();
    let name = match suite {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        other => panic!("suite {other:x}"),
    };
    assert_eq!(v1["tls"]["cipher"], name);

    // The same capture offline gives the same documents.
    assert_same_offline(docs, &pcap, "--tls-log", &dir);
    drop(lab.to_client);
    drop(lab.to_server);
}

/// The DNS detectors live: a client asks 120 random names under one
/// domain (a tunnel's shape; the server answers NXDOMAIN, as a tunnel's
/// unconfigured name server would), through `nta run --alerts`: a
/// dns_tunnel and an nxdomain incident start, naming the client and the
/// domain.
#[test]
fn a_dns_tunnel_and_an_nxdomain_storm_are_alerts_live() {
    if !privileged("a_dns_tunnel_and_an_nxdomain_storm_are_alerts_live") {
        return;
    }
    let dir = TempDir::new("ntatun");
    let lab = lab();
    let alerts = dir.join("alerts.jsonl");
    let log = dir.join("dns.jsonl");
    let mut agent = start_nta_with(
        &lab,
        "--dns-log",
        &log,
        &["--alerts", alerts.to_str().unwrap_or_default()],
    );
    let _server = dnsmasq(&lab, &["--local=/lab.test/".to_string()]);
    thread::sleep(Duration::from_millis(800));
    // dig's batch mode: one query a line, from one client.
    let mut labels = nta_lab::dns::RandomLabels::new(0x2545_f491_4f6c_dd1d);
    let batch: String = (0..120)
        .map(|_| format!("{}.tunnel.lab.test TXT\n", labels.label(40)))
        .collect();
    let file = dir.join("queries.txt");
    std::fs::write(&file, batch).unwrap_or_else(|e| panic!("{e}"));
    let out = lab
        .client
        .bounded(30, "dig")
        .unwrap_or_else(|e| panic!("{e}"))
        .args([&format!("@{SERVER}"), "+tries=1", "+time=2", "-f"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("dig: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    thread::sleep(Duration::from_millis(1500));
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    let starts: Vec<Value> = read_docs(&alerts)
        .into_iter()
        .filter(|a| a["nta"]["alert"]["state"] == "start")
        .collect();
    let start = |d: &str| {
        starts
            .iter()
            .find(|a| a["rule"]["name"] == d)
            .unwrap_or_else(|| panic!("no {d} alert in {starts:#?}"))
            .clone()
    };
    let tunnel = start("dns_tunnel");
    assert_eq!(tunnel["source"]["ip"], CLIENT);
    let detail = tunnel["nta"]["alert"]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.starts_with("domain lab.test: 100 distinct subdomains"),
        "{detail}"
    );
    let nx = start("nxdomain");
    assert_eq!(nx["source"]["ip"], CLIENT);
    // Every query paired with its response, though each was read on
    // its own interface's ring.
    let docs = read_docs(&log);
    assert_eq!(docs.len(), 120);
    assert!(
        docs.iter()
            .all(|d| d["nta"]["dns"]["query"] == true && d["nta"]["dns"]["response"] == true)
    );
    drop(lab.to_client);
    drop(lab.to_server);
}
