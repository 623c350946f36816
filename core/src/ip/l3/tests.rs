use super::*;
use smoltcp::wire::Ipv4Packet;

/// An IPv4 packet of `protocol` from 10.8.0.2 to 10.9.0.1 with `options`
/// and `payload`, its header checksum right.
fn v4(protocol: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total = header_len + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x40 | (header_len / 4) as u8;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&[10, 8, 0, 2]);
    p[16..20].copy_from_slice(&[10, 9, 0, 1]);
    p[20..header_len].copy_from_slice(options);
    p[header_len..].copy_from_slice(payload);
    Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
    p
}

/// An IPv6 packet from fd00:8::2 to fd00:9::1 whose first next header is
/// `next`, with `rest` after the fixed header.
fn v6(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40 + rest.len()];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(rest.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&"fd00:8::2".parse::<Ipv6Addr>().unwrap().octets());
    p[24..40].copy_from_slice(&"fd00:9::1".parse::<Ipv6Addr>().unwrap().octets());
    p[40..].copy_from_slice(rest);
    p
}

/// A TCP-like header start: source port 40000, destination port 80.
const PORTS_80: [u8; 8] = [0x9c, 0x40, 0, 80, 0, 0, 0, 0];

#[test]
fn reads_v4_addresses_protocol_and_port() {
    let info = parse_packet(&v4(6, &[], &PORTS_80)).unwrap();
    assert_eq!(info.source, "10.8.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(info.destination, "10.9.0.1".parse::<IpAddr>().unwrap());
    assert_eq!((info.protocol, info.port), (6, Some(80)));
    // ICMP and GRE have no port.
    assert_eq!(parse_packet(&v4(1, &[], &[8, 0, 0, 0])).unwrap().port, None);
    assert_eq!(parse_packet(&v4(47, &[], &PORTS_80)).unwrap().port, None);
    // A header too short to hold the port: carried, the port unknown.
    assert_eq!(parse_packet(&v4(17, &[], &[1, 2])).unwrap().port, None);
}

#[test]
fn v4_fragments_after_the_first_have_no_port() {
    let mut p = v4(6, &[], &PORTS_80);
    p[6..8].copy_from_slice(&[0x00, 0x10]); // offset 16 * 8 bytes
    Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
    assert_eq!(parse_packet(&p).unwrap().port, None);
    let mut first = v4(6, &[], &PORTS_80);
    first[6] = 0x20; // MF, offset 0
    Ipv4Packet::new_unchecked(&mut first[..]).fill_checksum();
    assert_eq!(parse_packet(&first).unwrap().port, Some(80));
}

#[test]
fn v4_header_checks() {
    let good = v4(6, &[], &PORTS_80);
    let mut bad_sum = good.clone();
    bad_sum[10] ^= 1;
    assert_eq!(parse_packet(&bad_sum), Err(IpDrop::BadChecksum));
    // Total length is not the bytes given, either way.
    assert_eq!(
        parse_packet(&good[..good.len() - 1]),
        Err(IpDrop::Malformed)
    );
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(parse_packet(&longer), Err(IpDrop::Malformed));
    // Header length under 20.
    let mut short_ihl = good.clone();
    short_ihl[0] = 0x44;
    Ipv4Packet::new_unchecked(&mut short_ihl[..]).fill_checksum();
    assert_eq!(parse_packet(&short_ihl), Err(IpDrop::Malformed));
    assert_eq!(parse_packet(&[]), Err(IpDrop::Malformed));
    assert_eq!(parse_packet(&[0x45; 19]), Err(IpDrop::Malformed));
    assert_eq!(parse_packet(&[0x50; 40]), Err(IpDrop::Unsupported));
}

#[test]
fn v4_source_routes_are_refused_other_options_carried() {
    // Router Alert (148, length 4), then end of list.
    assert!(parse_packet(&v4(2, &[148, 4, 0, 0], &[0; 8])).is_ok());
    assert!(parse_packet(&v4(2, &[1, 1, 1, 0], &[0; 8])).is_ok());
    for route in [131, 137] {
        let options = [1, route, 7, 4, 10, 0, 0, 1];
        assert_eq!(
            parse_packet(&v4(6, &options, &PORTS_80)),
            Err(IpDrop::Malformed)
        );
    }
    // An option whose length runs past the header.
    assert_eq!(
        parse_packet(&v4(6, &[148, 8, 0, 0], &PORTS_80)),
        Err(IpDrop::Malformed)
    );
    assert_eq!(
        parse_packet(&v4(6, &[148, 0, 0, 0], &PORTS_80)),
        Err(IpDrop::Malformed)
    );
}

#[test]
fn reads_v6_through_extension_headers() {
    let info = parse_packet(&v6(6, &PORTS_80)).unwrap();
    assert_eq!(info.destination, "fd00:9::1".parse::<IpAddr>().unwrap());
    assert_eq!((info.protocol, info.port), (6, Some(80)));
    // Hop-by-hop options (8 bytes), then UDP.
    let mut hbh = vec![17, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&PORTS_80);
    assert_eq!(
        parse_packet(&v6(0, &hbh)).map(|i| (i.protocol, i.port)),
        Ok((17, Some(80)))
    );
    // A first fragment keeps the port, a later one does not.
    let mut frag = vec![6, 0, 0, 1, 0, 0, 0, 1];
    frag.extend_from_slice(&PORTS_80);
    assert_eq!(parse_packet(&v6(44, &frag)).unwrap().port, Some(80));
    frag[2] = 0x01; // offset 32
    assert_eq!(parse_packet(&v6(44, &frag)).unwrap().port, None);
    assert_eq!(parse_packet(&v6(58, &[128, 0, 0, 0])).unwrap().protocol, 58);
}

#[test]
fn v6_header_checks() {
    let good = v6(6, &PORTS_80);
    assert_eq!(
        parse_packet(&good[..good.len() - 1]),
        Err(IpDrop::Malformed)
    );
    assert_eq!(parse_packet(&good[..39]), Err(IpDrop::Malformed));
    // A Routing header, even one with no segments left.
    let mut routing = vec![6, 0, 4, 0, 0, 0, 0, 0];
    routing.extend_from_slice(&PORTS_80);
    assert_eq!(parse_packet(&v6(43, &routing)), Err(IpDrop::Malformed));
    // An extension header cut short, and too many of them.
    assert_eq!(parse_packet(&v6(60, &[6, 1, 0, 0])), Err(IpDrop::Malformed));
    let chain: Vec<u8> = (0..9).flat_map(|_| [60, 0, 1, 4, 0, 0, 0, 0]).collect();
    assert_eq!(parse_packet(&v6(60, &chain)), Err(IpDrop::Malformed));
}

#[test]
fn ip_nets() {
    let net: IpNet = "10.8.0.0/24".parse().unwrap();
    assert!(net.contains("10.8.0.200".parse().unwrap()));
    assert!(!net.contains("10.8.1.1".parse().unwrap()));
    assert!(!net.contains("::ffff:10.8.0.1".parse().unwrap()));
    assert_eq!(net.to_string().parse::<IpNet>(), Ok(net));
    let host: IpNet = "fd00:8::2".parse().unwrap();
    assert_eq!(host.to_string(), "fd00:8::2/128");
    assert!(host.contains("fd00:8::2".parse().unwrap()));
    assert_eq!("10.8.0.1/24".parse::<IpNet>(), Err(IpNetError::HostBitsSet));
    assert_eq!("10.8.0.0/33".parse::<IpNet>(), Err(IpNetError::BadPrefix));
    assert_eq!("10.8.0.0/".parse::<IpNet>(), Err(IpNetError::BadPrefix));
    assert_eq!("[fd00::]/8".parse::<IpNet>(), Err(IpNetError::BadAddress));
    assert_eq!("/8".parse::<IpNet>(), Err(IpNetError::Syntax));
    assert!("0.0.0.0/0"
        .parse::<IpNet>()
        .unwrap()
        .contains("1.2.3.4".parse().unwrap()));
    let wide: IpNet = "10.8.0.0/16".parse().unwrap();
    assert!(wide.overlaps(&net) && net.overlaps(&wide));
    assert!(!net.overlaps(&"10.8.1.0/24".parse().unwrap()));
    assert!(!net.overlaps(&host));
}
