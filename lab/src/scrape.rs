//! Fetches and parses a Prometheus text exposition, for tests and the demo.
//!
//! A bare HTTP/1.0 GET over `TcpStream`: the endpoint is ours, on loopback,
//! and this keeps the lab crate free of an HTTP client stack.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use crate::netns::LabError;

/// GETs `path` and returns the body of a 200 response.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, LabError> {
    http_get_within(addr, path, Duration::from_secs(5))
}

/// `http_get` that waits up to `timeout` for the answer (connecting and
/// reading).
pub fn http_get_within(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<String, LabError> {
    let (status, line, body) = http_answer(addr, path, timeout)?;
    if status != 200 {
        return Err(LabError::Other(format!("GET {path}: {line}")));
    }
    Ok(body)
}

/// Any answer to a GET: status code and body (a 503's reasons, say).
pub fn http_status(addr: SocketAddr, path: &str) -> Result<(u16, String), LabError> {
    http_answer(addr, path, Duration::from_secs(5)).map(|(status, _, body)| (status, body))
}

/// (status code, status line, body) of a GET.
fn http_answer(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String, String), LabError> {
    let mut s = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(10)))?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| LabError::Other(format!("malformed HTTP response from {addr}")))?;
    let line = head.lines().next().unwrap_or("").to_string();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| LabError::Other(format!("no status in {line:?} from {addr}")))?;
    Ok((status, line, body.to_string()))
}

/// One series: metric name and its labels, sorted by label name.
type SeriesKey = (String, Vec<(String, String)>);

/// The series of an exposition with their values. Labels are compared as
/// sets: the exposition's label order is the encoder's business.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub BTreeMap<SeriesKey, f64>);

fn parse_series(series: &str) -> SeriesKey {
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_string(), Vec::new());
    };
    let mut labels: Vec<(String, String)> = rest
        .trim_end_matches('}')
        .split("\",")
        .filter_map(|kv| kv.split_once("=\""))
        .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
        .collect();
    labels.sort();
    (name.to_string(), labels)
}

impl Samples {
    pub fn parse(text: &str) -> Samples {
        let mut map = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            if let Some((series, value)) = line.rsplit_once(' ')
                && let Ok(v) = value.parse::<f64>()
            {
                map.insert(parse_series(series), v);
            }
        }
        Samples(map)
    }

    /// Value of `name` with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        self.0.get(&(name.to_string(), l)).copied()
    }

    /// Sum of every series of `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

pub fn scrape(addr: SocketAddr) -> Result<Samples, LabError> {
    Ok(Samples::parse(&http_get(addr, "/metrics")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sums() {
        let s = Samples::parse(
            "# HELP x y\n# TYPE x counter\nx{interface=\"a\",protocol=\"tcp\"} 3\nx{protocol=\"udp\",interface=\"a\"} 4\nx{interface=\"b\",protocol=\"udp\"} 5\ny 1\n",
        );
        assert_eq!(
            s.get("x", &[("interface", "a"), ("protocol", "udp")]),
            Some(4.0)
        );
        assert_eq!(s.sum("x", &[("interface", "a")]), 7.0);
        assert_eq!(s.sum("x", &[]), 12.0);
        assert_eq!(s.get("y", &[]), Some(1.0));
    }
}
