//! Every example pair under `examples/` loads with the library's loader, and
//! the two halves of each pair fit together: keys, services and halves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sdt::config::{Config, Half, Mode, PeerRef};

/// The pairs the examples must cover: every mode and each mirror image.
const EXPECTED: &[(&str, Mode)] = &[
    ("direct", Mode::Direct),
    ("forward", Mode::Forward),
    ("forward-reverse", Mode::Forward),
    ("push", Mode::Push),
    ("push-reverse", Mode::Push),
    ("router", Mode::Router),
    ("router-reverse", Mode::Router),
    ("router-l3", Mode::Router),
];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn load(path: &Path) -> Config {
    Config::load(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_mode_and_mirror_has_an_example_pair() {
    let found: BTreeSet<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(found, expected);
    for name in &found {
        let mut files: Vec<String> = std::fs::read_dir(examples_dir().join(name))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        // The router examples need namespaces to show traffic going
        // through; a script beside them sets those up.
        if name.starts_with("router") {
            assert_eq!(files, ["netns.sh", "x.toml", "y.toml"], "{name}");
        } else {
            assert_eq!(files, ["x.toml", "y.toml"], "{name}");
        }
    }
}

#[test]
fn every_example_pair_validates_and_fits_together() {
    for &(name, mode) in EXPECTED {
        let dir = examples_dir().join(name);
        let x = load(&dir.join("x.toml"));
        let y = load(&dir.join("y.toml"));

        // Each names the other as its one peer, by the other's real key.
        assert_eq!(x.peers.len(), 1, "{name}/x");
        assert_eq!(y.peers.len(), 1, "{name}/y");
        assert_eq!(
            x.peers[0].public_key,
            y.private_key.public_key(),
            "{name}: x's peer key is not y's public key"
        );
        assert_eq!(
            y.peers[0].public_key,
            x.private_key.public_key(),
            "{name}: y's peer key is not x's public key"
        );
        assert_eq!(
            x.peers[0].preshared_key, y.peers[0].preshared_key,
            "{name}: pre-shared keys differ"
        );
        // Where an endpoint is given, it is the other node's link socket.
        if let Some(ep) = x.peers[0].endpoint {
            assert_eq!(Some(ep), y.listen, "{name}: x's endpoint for y");
        }
        if let Some(ep) = y.peers[0].endpoint {
            assert_eq!(Some(ep), x.listen, "{name}: y's endpoint for x");
        }
        assert!(
            x.peers[0].endpoint.is_some() || y.peers[0].endpoint.is_some(),
            "{name}: neither node knows where the other is"
        );

        // The same services, in the expected mode, with complementary halves.
        let ids = |c: &Config| c.services.iter().map(|s| s.id).collect::<BTreeSet<_>>();
        assert_eq!(ids(&x), ids(&y), "{name}: service ids differ");
        assert!(!x.services.is_empty(), "{name}: no service");
        for sx in &x.services {
            let sy = y.services.iter().find(|s| s.id == sx.id).unwrap();
            assert_eq!(sx.mode, mode, "{name}: service {}", sx.id);
            assert_eq!(sy.mode, mode, "{name}: service {}", sy.id);
            assert_eq!(sx.exit, sy.exit, "{name}: service {}: exits differ", sx.id);
            assert!(
                sx.half.complements(sy.half),
                "{name}: service {}: halves {:?} and {:?}",
                sx.id,
                sx.half,
                sy.half
            );
            for (s, who) in [(sx, "x"), (sy, "y")] {
                match s.peer {
                    PeerRef::Named(0) => {}
                    PeerRef::Any => assert_eq!(s.half, Half::Exit, "{name}/{who}"),
                    other => panic!("{name}/{who}: service peer {other:?}"),
                }
            }
            // Plain pairs put the entry on x, mirror images on y.
            let entry_on_y = name.ends_with("-reverse");
            if mode != Mode::Direct {
                let (entry, exit) = if entry_on_y { (sy, sx) } else { (sx, sy) };
                assert_eq!(entry.half, Half::Entry, "{name}: entry");
                assert_eq!(exit.half, Half::Exit, "{name}: exit");
            }
            if matches!(mode, Mode::Forward | Mode::Push) {
                // The pair must not send its customers to its own entry.
                let entry = if entry_on_y { sy } else { sx };
                let exit = if entry_on_y { sx } else { sy };
                assert_ne!(entry.listen, exit.target, "{name}: loop");
            }
        }

        // Control sockets and link sockets differ between the two nodes.
        assert_ne!(x.control_socket, y.control_socket, "{name}");
        assert_ne!(x.listen, y.listen, "{name}");
    }
}

#[test]
fn example_ports_do_not_collide_across_pairs() {
    let mut seen = BTreeSet::new();
    for &(name, _) in EXPECTED {
        for node in ["x", "y"] {
            let cfg = load(&examples_dir().join(name).join(format!("{node}.toml")));
            let mut addrs: Vec<_> = cfg.listen.into_iter().collect();
            addrs.extend(cfg.services.iter().filter_map(|s| s.listen));
            for addr in addrs {
                // The router pairs run in the namespaces their netns.sh
                // makes, on its veth (10.99.254.0/24); the others on loopback.
                let veth = matches!(addr.ip(), std::net::IpAddr::V4(v4) if v4.octets()[..3] == [10, 99, 254]);
                assert!(
                    addr.ip().is_loopback() || (name.starts_with("router") && veth),
                    "{name}/{node}: {addr}"
                );
                assert!(seen.insert(addr), "{name}/{node}: {addr} used twice");
            }
        }
    }
}
