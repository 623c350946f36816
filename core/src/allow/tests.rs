use super::*;

use core::net::{SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;

fn rule(text: &str) -> AllowRule {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} refused: {e}"))
}

fn dest(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn accepted_forms() {
    let cases: &[(&str, &str, u8, RangeInclusive<u16>, &str)] = &[
        ("10.0.0.0/8:53", "10.0.0.0", 8, 53..=53, "10.0.0.0/8:53"),
        ("0.0.0.0/0:443", "0.0.0.0", 0, 443..=443, "0.0.0.0/0:443"),
        (
            "192.0.2.1:1000-2000",
            "192.0.2.1",
            32,
            1000..=2000,
            "192.0.2.1/32:1000-2000",
        ),
        (
            "[2001:db8::]/32:53",
            "2001:db8::",
            32,
            53..=53,
            "[2001:db8::]/32:53",
        ),
        ("[::1]:53", "::1", 128, 53..=53, "[::1]/128:53"),
        ("10.0.0.0/8", "10.0.0.0", 8, 1..=65535, "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7", 32, 1..=65535, "192.0.2.7/32"),
        ("[::]/0", "::", 0, 1..=65535, "[::]/0"),
        ("[fd00::]/8:1-65535", "fd00::", 8, 1..=65535, "[fd00::]/8"),
        ("1.2.3.4/32:5-5", "1.2.3.4", 32, 5..=5, "1.2.3.4/32:5"),
        (
            "1.2.3.4:65535",
            "1.2.3.4",
            32,
            65535..=65535,
            "1.2.3.4/32:65535",
        ),
        ("1.2.3.4:1", "1.2.3.4", 32, 1..=1, "1.2.3.4/32:1"),
        // Leading zeros in numbers are only digits.
        ("10.0.0.0/08:053", "10.0.0.0", 8, 53..=53, "10.0.0.0/8:53"),
        // Not mapped: ::ffff:0:0/96 is where mapped addresses live, this is
        // a wider network that contains it.
        ("[::]/95:53", "::", 95, 53..=53, "[::]/95:53"),
        (
            "[2001:DB8:0:0:0:0:0:0]/48",
            "2001:db8::",
            48,
            1..=65535,
            "[2001:db8::]/48",
        ),
    ];
    for (text, network, prefix, ports, canonical) in cases {
        let parsed = rule(text);
        assert_eq!(
            parsed.network(),
            network.parse::<IpAddr>().unwrap(),
            "{text}"
        );
        assert_eq!(parsed.prefix(), *prefix, "{text}");
        assert_eq!(parsed.ports(), ports.clone(), "{text}");
        assert_eq!(parsed.to_string(), *canonical, "{text}");
        assert_eq!(rule(canonical), parsed, "{text}");
    }
}

#[test]
fn refused_forms() {
    use AllowError::*;
    let cases: &[(&str, AllowError)] = &[
        ("", Syntax),
        ("2001:db8::1", Syntax),
        ("::1", Syntax),
        ("2001:db8::/32", Syntax),
        ("1.2.3.4:53:54", Syntax),
        ("[::1", Syntax),
        ("[::1]53", Syntax),
        ("[::1]x", Syntax),
        ("[::1]/128x", BadPrefix),
        ("[::1] :53", Syntax),
        ("nonsense", BadAddress),
        ("/8", BadAddress),
        (":53", BadAddress),
        ("10.0.0/8", BadAddress),
        ("10.0.0.256", BadAddress),
        ("010.0.0.1", BadAddress),
        (" 10.0.0.1", BadAddress),
        ("10.0.0.1 ", BadAddress),
        ("[10.0.0.1]:53", BadAddress),
        ("[fe80::1%eth0]:53", BadAddress),
        ("[]:53", BadAddress),
        ("[::g]", BadAddress),
        ("10.0.0.0/", BadPrefix),
        ("10.0.0.0/:53", BadPrefix),
        ("10.0.0.0/33", BadPrefix),
        ("10.0.0.0/256", BadPrefix),
        ("10.0.0.0/-1", BadPrefix),
        ("10.0.0.0/+8", BadPrefix),
        ("10.0.0.0/ 8", BadPrefix),
        ("[::]/129", BadPrefix),
        ("[::]/1000000000000", BadPrefix),
        ("10.0.0.0/8:", BadPort),
        ("10.0.0.0/8:0", BadPort),
        ("10.0.0.0/8:0-10", BadPort),
        ("10.0.0.0/8:65536", BadPort),
        ("10.0.0.0/8:+53", BadPort),
        ("10.0.0.0/8:53-", BadPort),
        ("10.0.0.0/8:-53", BadPort),
        ("10.0.0.0/8:1-2-3", BadPort),
        ("10.0.0.0/8:53 ", BadPort),
        ("10.0.0.0/8:dns", BadPort),
        ("10.0.0.0/8:2000-1000", EmptyPortRange),
        ("10.0.0.1/8:53", HostBitsSet),
        ("11.0.0.0/7", HostBitsSet),
        ("0.0.0.1/0", HostBitsSet),
        ("[2001:db8::1]/32:53", HostBitsSet),
        ("[::1]/127", HostBitsSet),
        ("[::ffff:10.0.0.1]:53", Ipv4Mapped),
        ("[::ffff:10.0.0.0]/104:53", Ipv4Mapped),
        ("[::ffff:0:0]/96", Ipv4Mapped),
    ];
    for (text, error) in cases {
        assert_eq!(text.parse::<AllowRule>(), Err(*error), "{text:?}");
    }
}

#[test]
fn new_checks_like_parse() {
    let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0));
    assert!(AllowRule::new(v4, 8, 53..=53).is_ok());
    assert_eq!(AllowRule::new(v4, 33, 53..=53), Err(AllowError::BadPrefix));
    assert_eq!(AllowRule::new(v4, 4, 53..=53), Err(AllowError::HostBitsSet));
    assert_eq!(AllowRule::new(v4, 8, 0..=53), Err(AllowError::BadPort));
    #[allow(clippy::reversed_empty_ranges)]
    let empty = 54..=53;
    assert_eq!(
        AllowRule::new(v4, 8, empty),
        Err(AllowError::EmptyPortRange)
    );
    let v6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    assert!(AllowRule::new(v6, 128, ALL_PORTS).is_ok());
    assert_eq!(
        AllowRule::new(v6, 129, ALL_PORTS),
        Err(AllowError::BadPrefix)
    );
}

#[test]
fn error_messages() {
    assert_eq!(
        AllowError::HostBitsSet.to_string(),
        "address has bits set past the prefix length"
    );
    for error in [
        AllowError::Syntax,
        AllowError::BadAddress,
        AllowError::BadPrefix,
        AllowError::BadPort,
        AllowError::EmptyPortRange,
        AllowError::HostBitsSet,
        AllowError::Ipv4Mapped,
        AllowError::TooManyRules,
    ] {
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn prefix_edges() {
    let all = rule("0.0.0.0/0:53");
    for d in ["0.0.0.0:53", "255.255.255.255:53", "10.1.2.3:53"] {
        assert!(all.matches(&dest(d)), "{d}");
    }
    assert!(!all.matches(&dest("[::1]:53")));
    assert!(!all.matches(&dest("10.1.2.3:54")));

    let host = rule("192.0.2.1:53");
    assert!(host.matches(&dest("192.0.2.1:53")));
    assert!(!host.matches(&dest("192.0.2.0:53")));
    assert!(!host.matches(&dest("192.0.2.2:53")));
    assert!(!host.matches(&dest("192.0.3.1:53")));

    let net = rule("10.0.0.0/8");
    assert!(net.matches(&dest("10.0.0.0:1")));
    assert!(net.matches(&dest("10.255.255.255:65535")));
    assert!(!net.matches(&dest("11.0.0.0:1")));
    assert!(!net.matches(&dest("9.255.255.255:1")));

    let odd = rule("192.168.4.0/22");
    assert!(odd.matches(&dest("192.168.7.255:9")));
    assert!(!odd.matches(&dest("192.168.8.0:9")));
    assert!(!odd.matches(&dest("192.168.3.255:9")));

    let all6 = rule("[::]/0:53");
    assert!(all6.matches(&dest("[::]:53")));
    assert!(all6.matches(&dest("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:53")));
    assert!(!all6.matches(&dest("10.0.0.1:53")));

    let host6 = rule("[2001:db8::1]:53");
    assert!(host6.matches(&dest("[2001:db8::1]:53")));
    assert!(!host6.matches(&dest("[2001:db8::]:53")));
    assert!(!host6.matches(&dest("[2001:db8::2]:53")));
    assert!(!host6.matches(&dest("[2001:db8::1:1]:53")));

    let net6 = rule("[2001:db8::]/33");
    assert!(net6.matches(&dest("[2001:db8:7fff:ffff::1]:7")));
    assert!(!net6.matches(&dest("[2001:db8:8000::]:7")));
}

#[test]
fn port_range_bounds() {
    let r = rule("10.0.0.0/8:1000-2000");
    assert!(!r.matches(&dest("10.0.0.1:999")));
    assert!(r.matches(&dest("10.0.0.1:1000")));
    assert!(r.matches(&dest("10.0.0.1:1500")));
    assert!(r.matches(&dest("10.0.0.1:2000")));
    assert!(!r.matches(&dest("10.0.0.1:2001")));

    let all = rule("10.0.0.0/8");
    assert!(all.matches(&dest("10.0.0.1:1")));
    assert!(all.matches(&dest("10.0.0.1:65535")));
    // Port 0 is never a destination.
    assert!(!all.matches(&dest("10.0.0.1:0")));
}

#[test]
fn mapped_destinations_match_ipv4_rules_only() {
    let v4 = rule("10.0.0.0/8:53");
    assert!(v4.matches(&dest("[::ffff:10.1.2.3]:53")));
    assert!(!v4.matches(&dest("[::ffff:11.1.2.3]:53")));
    assert!(!v4.matches(&dest("[::ffff:10.1.2.3]:54")));
    // IPv4-compatible (deprecated) addresses are plain IPv6.
    assert!(!v4.matches(&dest("[::10.1.2.3]:53")));

    let all6 = rule("[::]/0");
    assert!(!all6.matches(&dest("[::ffff:10.1.2.3]:53")));
    assert!(all6.matches(&dest("[::10.1.2.3]:53")));
    let wide = rule("[::]/80");
    assert!(!wide.matches(&dest("[::ffff:10.1.2.3]:53")));
}

#[test]
fn ipv6_flowinfo_and_scope_are_ignored() {
    let r = rule("[fe80::]/10:53");
    let d = SocketAddr::V6(SocketAddrV6::new(
        "fe80::1".parse().unwrap(),
        53,
        0x12345,
        4,
    ));
    assert!(r.matches(&d));
}

#[test]
fn empty_list_denies_everything() {
    let list = AllowList::<4>::new();
    assert!(list.rules().is_empty());
    for d in ["0.0.0.0:1", "10.0.0.1:53", "[::]:1", "[::ffff:1.2.3.4]:53"] {
        assert!(!list.allows(&dest(d)), "{d}");
    }
    assert_eq!(AllowList::<4>::default(), list);
    // Even with no room at all.
    assert!(!AllowList::<0>::new().allows(&dest("1.1.1.1:53")));
}

#[test]
fn list_allows_any_matching_rule() {
    let mut list = AllowList::<3>::new();
    list.push(rule("10.0.0.0/8:53")).unwrap();
    list.push(rule("[2001:db8::]/32:443")).unwrap();
    list.push(rule("192.0.2.1")).unwrap();
    assert_eq!(list.push(rule("0.0.0.0/0")), Err(AllowError::TooManyRules));
    assert_eq!(list.rules().len(), 3);
    assert_eq!(list.rules()[2], rule("192.0.2.1/32"));

    assert!(list.allows(&dest("10.9.9.9:53")));
    assert!(!list.allows(&dest("10.9.9.9:443")));
    assert!(list.allows(&dest("[2001:db8::5]:443")));
    assert!(!list.allows(&dest("[2001:db8::5]:53")));
    assert!(list.allows(&dest("192.0.2.1:9")));
    assert!(list.allows(&dest("[::ffff:192.0.2.1]:9")));
    assert!(!list.allows(&dest("192.0.2.2:9")));
}

/// The reference: bit by bit, with the mapped address unwrapped.
fn reference_matches(rule: &AllowRule, d: &SocketAddr) -> bool {
    let ip = match d.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let (net, addr): (Vec<u8>, Vec<u8>) = match (rule.network(), ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => (n.octets().to_vec(), a.octets().to_vec()),
        (IpAddr::V6(n), IpAddr::V6(a)) => (n.octets().to_vec(), a.octets().to_vec()),
        _ => return false,
    };
    let bit = |bytes: &[u8], i: usize| (bytes[i / 8] >> (7 - i % 8)) & 1;
    (0..usize::from(rule.prefix())).all(|i| bit(&net, i) == bit(&addr, i))
        && rule.ports().contains(&d.port())
}

fn any_rule() -> impl Strategy<Value = AllowRule> {
    let address = prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ];
    (address, any::<u8>(), 1..=u16::MAX, 1..=u16::MAX).prop_filter_map(
        "mapped networks are refused",
        |(address, prefix, a, b)| {
            let prefix = prefix % (max_prefix(&address) + 1);
            AllowRule::new(mask(address, prefix), prefix, a.min(b)..=a.max(b)).ok()
        },
    )
}

fn any_dest_near(rule: AllowRule) -> impl Strategy<Value = (AllowRule, SocketAddr)> {
    // Mostly addresses that share a prefix with the rule, so both outcomes
    // come up; some mapped ones.
    let base = rule.network();
    (
        any::<u128>(),
        0u8..=128,
        any::<u16>(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(move |(noise, keep, port, mapped, pick)| {
            let ip = match base {
                IpAddr::V4(n) => {
                    let keep = u32::MAX.checked_shl(32 - u32::from(keep % 33)).unwrap_or(0);
                    let a = Ipv4Addr::from((u32::from(n) & keep) | (noise as u32 & !keep));
                    if mapped {
                        IpAddr::V6(a.to_ipv6_mapped())
                    } else {
                        IpAddr::V4(a)
                    }
                }
                IpAddr::V6(n) => {
                    let keep = u128::MAX.checked_shl(128 - u32::from(keep)).unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from((u128::from(n) & keep) | (noise & !keep)))
                }
            };
            let ports = rule.ports();
            let port = match pick % 4 {
                0 => *ports.start(),
                1 => *ports.end(),
                2 => ports.start().wrapping_sub(1),
                _ => port,
            };
            (rule, SocketAddr::new(ip, port))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn display_round_trip(r in any_rule()) {
        let text = r.to_string();
        prop_assert_eq!(text.parse::<AllowRule>(), Ok(r), "{}", text);
    }

    #[test]
    fn matches_like_reference((r, d) in any_rule().prop_flat_map(any_dest_near)) {
        prop_assert_eq!(r.matches(&d), reference_matches(&r, &d));
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[0-9a-fA-F:.\\[\\]/\\- ]{0,40}") {
        if let Ok(r) = text.parse::<AllowRule>() {
            prop_assert_eq!(r.to_string().parse::<AllowRule>(), Ok(r));
        }
    }

    #[test]
    fn v4_rules_never_match_plain_v6(r in any_rule(), a in any::<u128>(), port in any::<u16>()) {
        let d = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, 0, 0));
        if r.network().is_ipv4() && Ipv6Addr::from(a).to_ipv4_mapped().is_none() {
            prop_assert!(!r.matches(&d));
        }
        if r.network().is_ipv6() {
            let d4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a as u32), port));
            prop_assert!(!r.matches(&d4));
        }
    }
}

#[test]
fn icmp_rules_allow_echo_and_nothing_else() {
    let r: AllowRule = "icmp://10.0.0.0/8".parse().unwrap();
    assert!(r.is_icmp());
    assert_eq!(r.to_string(), "icmp://10.0.0.0/8");
    let echo: SocketAddr = "10.1.2.3:0".parse().unwrap();
    assert!(r.matches(&echo));
    assert!(!r.matches(&"10.1.2.3:53".parse().unwrap()), "no UDP");
    assert!(!r.matches(&"11.1.2.3:0".parse().unwrap()));
    let udp: AllowRule = "10.0.0.0/8".parse().unwrap();
    assert!(
        !udp.matches(&echo),
        "a UDP rule of all ports allows no ICMP"
    );
    let r6: AllowRule = "icmp://[2001:db8::]/32".parse().unwrap();
    assert!(r6.matches(&"[2001:db8::53]:0".parse().unwrap()));
    assert_eq!(r6.to_string().parse::<AllowRule>(), Ok(r6));
    let host: AllowRule = "icmp://192.0.2.1".parse().unwrap();
    assert_eq!(host.to_string(), "icmp://192.0.2.1/32");
    assert_eq!(
        "icmp://10.0.0.0/8:53".parse::<AllowRule>(),
        Err(AllowError::IcmpPort)
    );
    assert_eq!(
        "icmp://10.0.0.1/8".parse::<AllowRule>(),
        Err(AllowError::HostBitsSet)
    );
    assert_eq!("icmp://".parse::<AllowRule>(), Err(AllowError::Syntax));
    assert!("icmp://icmp://10.0.0.0/8".parse::<AllowRule>().is_err());
}

#[test]
fn tcp_and_ip_rules_parse_and_print() {
    for (text, canonical) in [
        ("tcp://10.0.0.0/8:80", "tcp://10.0.0.0/8:80"),
        ("tcp://192.0.2.1", "tcp://192.0.2.1/32"),
        (
            "tcp://[2001:db8::]/32:1000-2000",
            "tcp://[2001:db8::]/32:1000-2000",
        ),
        ("ip://10.0.0.0/8", "ip://10.0.0.0/8"),
        ("ip://[2001:db8::1]", "ip://[2001:db8::1]/128"),
    ] {
        let rule: AllowRule = text.parse().unwrap();
        assert_eq!(rule.to_string(), canonical);
        assert_eq!(canonical.parse::<AllowRule>(), Ok(rule));
    }
    assert_eq!(
        "ip://10.0.0.0/8:53".parse::<AllowRule>(),
        Err(AllowError::AnyPort)
    );
    assert_eq!(
        "ip://[::1]/128:1-65535".parse::<AllowRule>(),
        Err(AllowError::AnyPort)
    );
    assert_eq!(
        "tcp://10.0.0.1/8".parse::<AllowRule>(),
        Err(AllowError::HostBitsSet)
    );
    assert!("tcp://ip://10.0.0.0/8".parse::<AllowRule>().is_err());
    assert_eq!(
        "tcp://10.0.0.0/8:0".parse::<AllowRule>(),
        Err(AllowError::BadPort)
    );
}

/// The socket exit: a TCP rule allows nothing, an `ip://` rule UDP to any
/// port and echo.
#[test]
fn socket_exit_matching_of_tcp_and_ip_rules() {
    let tcp: AllowRule = "tcp://10.0.0.0/8".parse().unwrap();
    let any: AllowRule = "ip://10.0.0.0/8".parse().unwrap();
    for dest in ["10.1.2.3:53", "10.1.2.3:0", "10.1.2.3:65535"] {
        let dest: SocketAddr = dest.parse().unwrap();
        assert!(!tcp.matches(&dest));
        assert!(any.matches(&dest));
    }
    assert!(!any.matches(&"11.1.2.3:53".parse().unwrap()));
}

/// The L3 exit: protocol, port and family are all checked.
#[test]
fn l3_exit_matching() {
    use super::proto::{ICMP, ICMPV6, TCP, UDP};
    let server: IpAddr = "10.1.2.3".parse().unwrap();
    let outside: IpAddr = "11.1.2.3".parse().unwrap();
    let server6: IpAddr = "2001:db8::3".parse().unwrap();
    let rule = |text: &str| text.parse::<AllowRule>().unwrap();

    let web = rule("tcp://10.0.0.0/8:80");
    assert!(web.matches_packet(server, TCP, Some(80)));
    assert!(!web.matches_packet(server, TCP, Some(81)));
    assert!(!web.matches_packet(server, UDP, Some(80)), "TCP only");
    assert!(!web.matches_packet(outside, TCP, Some(80)));
    assert!(
        !web.matches_packet(server, TCP, None),
        "a port range is not assumed"
    );
    let all_tcp = rule("tcp://10.0.0.0/8");
    assert!(
        all_tcp.matches_packet(server, TCP, None),
        "every port: a fragment"
    );

    let dns = rule("10.0.0.0/8:53");
    assert!(dns.matches_packet(server, UDP, Some(53)));
    assert!(!dns.matches_packet(server, TCP, Some(53)));

    let ping = rule("icmp://10.0.0.0/8");
    assert!(ping.matches_packet(server, ICMP, None));
    assert!(
        !ping.matches_packet(server, ICMPV6, None),
        "ICMPv6 is not IPv4's ICMP"
    );
    let ping6 = rule("icmp://[2001:db8::]/32");
    assert!(ping6.matches_packet(server6, ICMPV6, None));
    assert!(!ping6.matches_packet(server6, ICMP, None));

    let any = rule("ip://10.0.0.0/8");
    for protocol in [0, ICMP, TCP, UDP, 47, 132, 255] {
        assert!(any.matches_packet(server, protocol, None));
        assert!(!any.matches_packet(outside, protocol, Some(1)));
        assert!(!any.matches_packet(server6, protocol, None));
    }

    let mut list = AllowList::<4>::new();
    assert!(
        !list.allows_packet(server, TCP, Some(80)),
        "empty allows nothing"
    );
    list.push(web).unwrap();
    list.push(ping).unwrap();
    assert!(list.allows_packet(server, TCP, Some(80)));
    assert!(list.allows_packet(server, ICMP, None));
    assert!(!list.allows_packet(server, UDP, Some(80)));
}
