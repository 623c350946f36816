//! The real programs the tests use as customers: dnsmasq and dig (DNS),
//! logger and socat (syslog), socat and nc (fixed peers).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::net::Netns;
use super::{require_tool, Proc, Ran};

/// A DNS record the test's dnsmasq answers: `name` has address `addr`.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub addr: Ipv4Addr,
}

/// `n` distinct names, `q0.test` .. with 192.0.2.1 .., so that an answer
/// meant for one query cannot pass for another's.
pub fn records(n: u8) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            name: format!("q{i}.test"),
            addr: Ipv4Addr::new(192, 0, 2, i + 1),
        })
        .collect()
}

/// Starts dnsmasq in `ns`, answering `records` on `listen` addresses at
/// `port` from nothing but its command line, and waits until it listens.
pub fn dnsmasq(
    ns: &Netns,
    dir: &Path,
    name: &str,
    listen: &[IpAddr],
    port: u16,
    records: &[Record],
) -> Proc {
    require_tool("dnsmasq");
    let mut cmd = ns.cmd("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        // Stay root: a change of user would clear the parent-death signal.
        "--user=root",
        "--group=root",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--log-queries",
        "--log-facility=-",
    ])
    .arg(format!("--port={port}"))
    .arg(format!(
        "--pid-file={}",
        dir.join(format!("{name}.pid")).display()
    ));
    for l in listen {
        cmd.arg(format!("--listen-address={l}"));
    }
    for r in records {
        cmd.arg(format!("--address=/{}/{}", r.name, r.addr));
    }
    let mut p = Proc::spawn(name, dir, &mut cmd, false);
    for l in listen {
        let bound = ns.wait_udp_bound(SocketAddr::new(*l, port), Duration::from_secs(10));
        assert!(
            bound,
            "{name} does not listen on {l}:{port}: {}",
            p.describe()
        );
    }
    p
}

/// One `dig` query for `name`'s A record at `server`:`port` from `ns`:
/// `+short`, `tries` attempts of `time` seconds each, from `bind` if given
/// (address and port, so that the client's source port is known).
pub fn dig(
    ns: &Netns,
    server: SocketAddr,
    name: &str,
    bind: Option<SocketAddr>,
    tries: u32,
    time: u32,
) -> Ran {
    require_tool("dig");
    let mut args = vec![
        "+short".to_owned(),
        format!("+tries={tries}"),
        format!("+time={time}"),
        "-p".to_owned(),
        server.port().to_string(),
        format!("@{}", server.ip()),
    ];
    if let Some(b) = bind {
        args.push("-b".to_owned());
        args.push(format!("{}#{}", b.ip(), b.port()));
    }
    args.push(name.to_owned());
    args.push("A".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ns.run(
        "dig",
        &args,
        Duration::from_secs(u64::from(tries * time) + 10),
    )
}

/// The answer lines of a `dig +short` (its `;;` notes left out).
pub fn answers(ran: &Ran) -> Vec<String> {
    ran.stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_owned)
        .collect()
}

/// Splits what a receiver wrote to its file from syslog datagrams sent with
/// `logger --octet-count` (RFC 6587 framing: `LEN SP MSG`) into messages.
/// `Err` names where the framing breaks.
pub fn octet_counted_frames(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut frames = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| format!("no length at {:?}", String::from_utf8_lossy(rest)))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad length at {:?}", String::from_utf8_lossy(rest)))?;
        let body = rest
            .get(space + 1..space + 1 + len)
            .ok_or_else(|| format!("short frame at {:?}", String::from_utf8_lossy(rest)))?;
        frames.push(String::from_utf8_lossy(body).into_owned());
        rest = &rest[space + 1 + len..];
    }
    Ok(frames)
}
