//! Application metadata end to end: real TLS handshakes between lab
//! namespaces (openssl s_server and s_client, and a post-quantum-sized
//! ClientHello that spans two segments), through `nta run` on a router
//! namespace between them; every field nta writes is checked against
//! tshark's dissection of the same traffic, and `nta analyze` of that
//! capture gives the same documents.

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
    let pcap = dir.join("tls.pcap");
    let _tcpdump = GroupChild::spawn(
        lab.router
            .bounded(60, "tcpdump")
            .unwrap_or_else(|e| panic!("{e}"))
            .args(["-i", &lab.to_client.outer, "-U", "-w"])
            .arg(&pcap)
            .args(["tcp", "port", &PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap_or_else(|e| panic!("tcpdump: {e}"));
    let log = dir.join("tls.jsonl");
    let mut agent = Agent::start_in(
        &lab.router,
        &[
            "--iface",
            &lab.to_client.outer,
            "--iface",
            &lab.to_server.outer,
            "--tls-log",
            log.to_str().unwrap_or_default(),
            "--user",
            "root",
        ],
    );
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
    send_large_hello(&lab.client);
    thread::sleep(Duration::from_millis(1500));
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit().success());
    thread::sleep(Duration::from_millis(500));
    drop(_tcpdump);

    let docs = read_docs(&log);
    let by_name = |name: &str| {
        docs.iter()
            .find(|d| d["tls"]["client"]["server_name"] == name)
            .unwrap_or_else(|| panic!("no document for {name} in {docs:#?}"))
    };
    assert_eq!(docs.len(), 3, "{docs:#?}");
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
    assert_eq!(chosen.len(), 3, "{seen:?}");
    for (number, name) in [
        ("0x1302", "TLS_AES_256_GCM_SHA384"),
        ("0xc02b", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ] {
        assert!(chosen.contains(&number), "tshark: {chosen:?}");
        assert!(docs.iter().any(|d| d["tls"]["cipher"] == name));
    }

    // The same capture offline gives the same documents but for the
    // time stamps and where they came from.
    let offline = dir.join("offline.jsonl");
    let out = std::process::Command::new(NTA)
        .arg("analyze")
        .arg(&pcap)
        .arg("--tls-log")
        .arg(&offline)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let strip = |mut d: Value| {
        if let Some(o) = d.as_object_mut() {
            for k in ["@timestamp", "observer", "log"] {
                o.remove(k);
            }
        }
        d
    };
    let mut live: Vec<Value> = docs.into_iter().map(strip).collect();
    let mut off: Vec<Value> = read_docs(&offline).into_iter().map(strip).collect();
    let order = |v: &mut Vec<Value>| v.sort_by_key(|d| d["source"]["port"].as_u64());
    order(&mut live);
    order(&mut off);
    assert_eq!(live, off);
    drop(lab.to_client);
    drop(lab.to_server);
}
