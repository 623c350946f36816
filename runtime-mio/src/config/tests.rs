use super::*;

fn key(n: u8) -> PrivateKey {
    PrivateKey::from_bytes([n; 32])
}

fn public(n: u8) -> String {
    key(n).public_key().to_string()
}

/// A node with private key 1 and one peer `y` with key 2, then `rest`.
fn with_peer(rest: &str) -> String {
    format!(
        "private_key = \"{}\"\n\n[[peer]]\nname = \"y\"\npublic_key = \"{}\"\n{rest}",
        key(1),
        public(2)
    )
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("conf/t.toml"))
}

/// 1-based line of the only occurrence of `marker` in `text`.
fn line_of(text: &str, marker: &str) -> usize {
    assert_eq!(
        text.matches(marker).count(),
        1,
        "marker {marker:?} not unique"
    );
    let at = text.find(marker).unwrap();
    text[..at].matches('\n').count() + 1
}

/// Asserts `text` is refused on the line holding `marker`, naming `key`,
/// with `message` in the one-line form.
#[track_caller]
fn refused(text: &str, marker: &str, key: &str, message: &str) -> ConfigError {
    let err = match parse(text) {
        Ok(_) => panic!("accepted, expected an error about {key}:\n{text}"),
        Err(e) => e,
    };
    let line = line_of(text, marker);
    let shown = err.to_string();
    assert_eq!(err.line(), Some(line), "{shown}");
    assert_eq!(err.key(), Some(key), "{shown}");
    let prefix = format!("conf/t.toml:{line}: key `{key}`: ");
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} should start {prefix:?}"
    );
    assert!(
        shown.contains(message),
        "{shown:?} should contain {message:?}"
    );
    assert!(!shown.contains('\n'), "{shown:?} is not one line");
    err
}

const FORWARD_ENTRY: &str =
    "\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:5353\"\n";

#[test]
fn full_config_parses_into_typed_values() {
    let text = format!(
        r#"
private_key = "{k1}"
listen = "127.0.0.1:51820"
control_socket = "/tmp/x.sock"

[[peer]]
name = "y"
public_key = "{p2}"
endpoint = "127.0.0.1:51821"
preshared_key = "{psk}"
persistent_keepalive = "25s"
keep_up = true

[[peer]]
name = "z"
public_key = "{p3}"

[[service]]
id = 1
peer = "y"
mode = "forward"
listen = "127.0.0.1:5353"
idle_timeout = "2m"
max_channels = 16384
min_idle_for_eviction = "500ms"

[[service]]
id = 2
peer = "*"
mode = "push"
target = "127.0.0.1:514"

[[service]]
id = 3
peer = "z"
mode = "direct"
listen = "127.0.0.1:6000"
target = "127.0.0.1:6001"

[[service]]
id = 4
peer = "y"
mode = "router"
tun = "sdt0"
address = "10.99.0.1/24"
routes = ["10.202.0.0/24", "2001:db8::/32", "10.202.0.0/24"]
tun_mtu = 1400
tun_offload = false

[[service]]
id = 255
peer = "*"
mode = "router"
allow = ["10.0.0.0/8:53", "[2001:db8::]/32:53"]
"#,
        k1 = key(1),
        p2 = public(2),
        p3 = public(3),
        psk = PresharedKey::from_bytes([9; 32]),
    );
    let cfg = parse(&text).unwrap();
    assert_eq!(cfg.private_key, key(1));
    assert_eq!(cfg.listen, Some("127.0.0.1:51820".parse().unwrap()));
    assert_eq!(cfg.control_socket, Some(PathBuf::from("/tmp/x.sock")));
    assert_eq!(cfg.peers.len(), 2);
    let y = &cfg.peers[0];
    assert_eq!(y.name, "y");
    assert_eq!(y.public_key, key(2).public_key());
    assert_eq!(y.endpoint, Some("127.0.0.1:51821".parse().unwrap()));
    assert_eq!(y.preshared_key, Some(PresharedKey::from_bytes([9; 32])));
    assert_eq!(y.persistent_keepalive, Some(Duration::from_secs(25)));
    assert!(y.keep_up);
    let z = &cfg.peers[1];
    assert_eq!(
        (z.endpoint, z.keep_up, z.persistent_keepalive),
        (None, false, None)
    );
    assert!(z.preshared_key.is_none());

    let s = &cfg.services;
    assert_eq!(s.len(), 5);
    assert_eq!(
        (s[0].id, s[0].peer, s[0].mode, s[0].half),
        (
            ServiceId::new(1),
            PeerRef::Named(0),
            Mode::Forward,
            Half::Entry
        )
    );
    assert_eq!(s[0].listen, Some("127.0.0.1:5353".parse().unwrap()));
    assert_eq!(s[0].idle_timeout, Duration::from_secs(120));
    assert_eq!(s[0].max_channels, 16384);
    assert_eq!(s[0].min_idle_for_eviction, Duration::from_millis(500));
    assert_eq!(
        (s[1].peer, s[1].mode, s[1].half),
        (PeerRef::Any, Mode::Push, Half::Exit)
    );
    assert_eq!(s[1].target, Some("127.0.0.1:514".parse().unwrap()));
    assert_eq!(s[1].idle_timeout, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(s[1].max_channels, DEFAULT_MAX_CHANNELS);
    assert_eq!(s[1].min_idle_for_eviction, DEFAULT_MIN_IDLE_FOR_EVICTION);
    assert_eq!(
        (s[2].peer, s[2].mode, s[2].half),
        (PeerRef::Named(1), Mode::Direct, Half::Both)
    );
    assert!(s[2].listen.is_some() && s[2].target.is_some());
    assert_eq!((s[3].mode, s[3].half), (Mode::Router, Half::Entry));
    let tun = s[3].tun.as_ref().unwrap();
    assert_eq!(tun.name, "sdt0");
    assert_eq!(tun.address, Some("10.99.0.1/24".parse().unwrap()));
    let routes: Vec<String> = tun.routes.iter().map(ToString::to_string).collect();
    assert_eq!(routes, ["10.202.0.0/24", "2001:db8::/32"], "duplicates go");
    assert_eq!(tun.mtu, Some(1400));
    assert_eq!(tun.offload, Some(false));
    assert_eq!((s[4].id, s[4].half), (ServiceId::new(255), Half::Exit));
    assert_eq!(
        s[4].allow,
        vec![
            "10.0.0.0/8:53".parse().unwrap(),
            "[2001:db8::]/32:53".parse().unwrap()
        ]
    );
    assert_eq!(cfg.peer(s[0].peer).unwrap().name, "y");
    assert!(cfg.peer(PeerRef::Any).is_none());
    assert_eq!(cfg.peer_by_name("z").unwrap().0, 1);
}

#[test]
fn minimal_config_takes_defaults() {
    let cfg = parse(&format!("private_key = \"{}\"\n", key(1))).unwrap();
    assert!(cfg.listen.is_none() && cfg.peers.is_empty() && cfg.services.is_empty());
    assert_eq!(cfg.control_socket, Some(PathBuf::from("/run/sdt/t.sock")));
    assert_eq!(cfg.metrics_listen, None);
    let router_exit =
        with_peer("[[service]]\nid = 0\npeer = \"y\"\nmode = \"router\"\nallow = []\n");
    let cfg = parse(&router_exit).unwrap();
    assert_eq!(cfg.services[0].half, Half::Exit);
    assert!(cfg.services[0].allow.is_empty());
}

#[test]
fn control_socket_defaults_from_the_file_name() {
    assert_eq!(
        default_control_socket(Path::new("/etc/sdt/office.toml")),
        PathBuf::from("/run/sdt/office.sock")
    );
    assert_eq!(
        default_control_socket(Path::new("y.toml")),
        PathBuf::from("/run/sdt/y.sock")
    );
    assert_eq!(
        default_control_socket(Path::new("/")),
        PathBuf::from("/run/sdt/sdt.sock")
    );
    // A relative control_socket is relative to the configuration's directory.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("run")).unwrap();
    let cfg = Config::parse(
        &format!(
            "private_key = \"{}\"\ncontrol_socket = \"run/x.sock\"\n",
            key(1)
        ),
        &dir.path().join("t.toml"),
    )
    .unwrap();
    assert_eq!(cfg.control_socket, Some(dir.path().join("run/x.sock")));
}

/// `check` refuses a control socket whose directory is missing or is not a
/// directory, as `run` would fail to bind it; only the default directory
/// is left for `run` to create.
#[test]
fn the_control_socket_directory_must_exist_unless_it_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, "").unwrap();
    for (socket, why) in [
        ("nonexistent/dir/x.sock", "does not exist"),
        ("plain/x.sock", "is not a directory"),
        ("plain/sub/x.sock", "directory"),
    ] {
        let text = format!(
            "private_key = \"{}\"\n\ncontrol_socket = \"{socket}\"\n",
            key(1)
        );
        let err = Config::parse(&text, &dir.path().join("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":3:") && err.contains("control_socket") && err.contains(why),
            "{socket}: {err}"
        );
    }
    let text = format!(
        "private_key = \"{}\"\ncontrol_socket = \"{DEFAULT_CONTROL_DIR}/x.sock\"\n",
        key(1)
    );
    assert!(Config::parse(&text, &dir.path().join("t.toml")).is_ok());
}

#[test]
fn metrics_listen_is_an_address_with_a_fixed_port() {
    let text = |v: &str| format!("private_key = \"{}\"\nmetrics_listen = \"{v}\"\n", key(1));
    let cfg = parse(&text("127.0.0.1:9920")).unwrap();
    assert_eq!(cfg.metrics_listen, Some("127.0.0.1:9920".parse().unwrap()));
    let cfg = parse(&text("[::1]:9920")).unwrap();
    assert_eq!(cfg.metrics_listen, Some("[::1]:9920".parse().unwrap()));
    refused(
        &text("localhost:9920"),
        "metrics_listen",
        "metrics_listen",
        "is not an IP address and port",
    );
    refused(
        &text("127.0.0.1:0"),
        "metrics_listen",
        "metrics_listen",
        "port 0 is not allowed",
    );
}

#[test]
fn endpoint_host_names_are_resolved() {
    let text = with_peer("endpoint = \"localhost:51820\"\n");
    let cfg = parse(&text).unwrap();
    let ep = cfg.peers[0].endpoint.unwrap();
    assert!(ep.ip().is_loopback(), "{ep}");
    assert_eq!(ep.port(), 51820);
}

#[test]
fn refuses_unknown_keys() {
    let text = format!("bogus = 1\n{}", with_peer(""));
    refused(&text, "bogus", "bogus", "unknown field `bogus`");
    let text = with_peer("endpiont = \"127.0.0.1:1\"\n");
    refused(&text, "endpiont", "endpiont", "unknown field `endpiont`");
    let text = with_peer(
        "\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"forward\"\nlisen = \"127.0.0.1:1\"\n",
    );
    refused(&text, "lisen", "lisen", "unknown field `lisen`");
    let text = with_peer("\n[[service]]\nid = 1\n[service.extra]\n");
    refused(&text, "extra", "extra", "unknown field `extra`");
}

#[test]
fn refuses_bad_toml_and_types() {
    let text = with_peer("endpoint = \"127.0.0.1:1\n");
    let err = parse(&text).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
    assert_eq!(err.line(), Some(line_of(&text, "endpoint")));

    let text = with_peer(
        "\n[[service]]\nid = \"one\"\npeer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n",
    );
    refused(&text, "\"one\"", "id", "invalid type: string \"one\"");

    let text = with_peer("keep_up = \"yes\"\n");
    refused(&text, "keep_up", "keep_up", "invalid type");

    let text = with_peer("name = \"z\"\n");
    refused(&text, "\"z\"", "name", "duplicate key");
}

#[test]
fn refuses_private_key_problems() {
    let text = "listen = \"0.0.0.0:51820\"\n";
    let err = parse(text).unwrap_err();
    assert_eq!(err.line(), None);
    assert_eq!(err.key(), Some("private_key_file"));
    assert_eq!(
        err.to_string(),
        "conf/t.toml: key `private_key_file`: missing: give private_key_file (or private_key)"
    );

    let text = format!(
        "private_key_file = \"x.key\"\nprivate_key = \"{}\"\n",
        key(1)
    );
    refused(&text, "private_key =", "private_key", "not both");

    let text = "private_key = \"AAAA\"\n";
    refused(text, "private_key", "private_key", "32 bytes");
    let text = "private_key = \"!!!!\"\n";
    refused(text, "private_key", "private_key", "not valid base64");
}

#[test]
fn refuses_peer_problems() {
    let dup = format!(
        "\n[[peer]]\nname = \"y\" # again\npublic_key = \"{}\"\n",
        public(3)
    );
    refused(
        &with_peer(&dup),
        "\"y\" # again",
        "name",
        "already used by the [[peer]] on line 3",
    );

    let dup = format!(
        "\n[[peer]]\nname = \"z\"\npublic_key = \"{}\" # again\n",
        public(2)
    );
    refused(
        &with_peer(&dup),
        "# again",
        "public_key",
        "peer `y` already has this public key",
    );

    let own = format!(
        "private_key = \"{}\"\n[[peer]]\nname = \"me\"\npublic_key = \"{}\"\n",
        key(1),
        public(1)
    );
    refused(&own, "public_key", "public_key", "own public key");

    let text = format!(
        "private_key = \"{}\"\n[[peer]] # here\nname = \"q\"\n",
        key(1)
    );
    refused(&text, "# here", "public_key", "missing in this [[peer]]");

    let text = format!(
        "private_key = \"{}\"\n[[peer]]\nname = \"*\"\npublic_key = \"{}\"\n",
        key(1),
        public(2)
    );
    refused(&text, "\"*\"", "name", "not `*`");

    refused(
        &with_peer("endpoint = \"nowhere\"\n"),
        "nowhere",
        "endpoint",
        "not an address and port",
    );
    refused(
        &with_peer("endpoint = \"127.0.0.1:0\"\n"),
        "127.0.0.1:0",
        "endpoint",
        "port 0",
    );

    refused(
        &with_peer("persistent_keepalive = \"0s\"\n"),
        "\"0s\"",
        "persistent_keepalive",
        "must not be zero",
    );
    refused(
        &with_peer("persistent_keepalive = \"25 parsecs\"\n"),
        "parsecs",
        "persistent_keepalive",
        "not a duration",
    );

    let both = format!(
        "preshared_key_file = \"psk\"\npreshared_key = \"{}\"\n",
        PresharedKey::from_bytes([1; 32])
    );
    refused(
        &with_peer(&both),
        "preshared_key =",
        "preshared_key",
        "not both",
    );
    refused(
        &with_peer("preshared_key = \"AAAA\"\n"),
        "\"AAAA\"",
        "preshared_key",
        "32 bytes",
    );
}

#[test]
fn refuses_service_references_and_duplicates() {
    let text = with_peer(
        "\n[[service]]\nid = 1\npeer = \"nobody\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n",
    );
    refused(
        &text,
        "nobody",
        "peer",
        "there is no [[peer]] named `nobody`",
    );

    let text = with_peer(&format!(
        "{FORWARD_ENTRY}\n[[service]]\nid = 1 # again\npeer = \"y\"\nmode = \"push\"\ntarget = \"127.0.0.1:514\"\n"
    ));
    let first = line_of(&text, "id = 1\n");
    refused(
        &text,
        "id = 1 # again",
        "id",
        &format!("already used by the [[service]] on line {}", first - 1),
    );

    let text = with_peer(&format!(
        "{FORWARD_ENTRY}\n[[service]]\nid = 2\npeer = \"y\"\nmode = \"push\"\nlisten = \"127.0.0.1:5353\" # again\n"
    ));
    refused(&text, "# again", "listen", "127.0.0.1:5353 is already used");

    let text = format!(
        "listen = \"127.0.0.1:5353\" # link\n{}",
        with_peer(FORWARD_ENTRY)
    );
    refused(
        &text,
        "listen = \"127.0.0.1:5353\"\n",
        "listen",
        "link's own listen address",
    );

    let text = format!("private_key = \"{}\"\n[[service]]\nid = 1\npeer = \"*\"\nmode = \"push\"\ntarget = \"127.0.0.1:9\"\n", key(1));
    refused(&text, "\"*\"", "peer", "there is no [[peer]]");
}

#[test]
fn refuses_bad_service_values() {
    let service = |body: &str| with_peer(&format!("\n[[service]] # S\n{body}"));

    let text = service("id = 256\npeer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n");
    refused(&text, "= 256", "id", "from 0 to 255");
    let text = service("id = -1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n");
    refused(&text, "= -1", "id", "from 0 to 255");
    let text = service("peer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n");
    refused(&text, "# S", "id", "missing in this [[service]]");
    let text = service("id = 1\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n");
    refused(&text, "# S", "peer", "missing");
    let text = service("id = 1\npeer = \"y\"\nlisten = \"127.0.0.1:1\"\n");
    refused(&text, "# S", "mode", "missing");

    let text = service("id = 1\npeer = \"y\"\nmode = \"tunnel\"\nlisten = \"127.0.0.1:1\"\n");
    refused(&text, "\"tunnel\"", "mode", "unknown mode `tunnel`");

    for bad in ["0", "16385", "65536", "-3"] {
        let text = service(&format!(
            "id = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\nmax_channels = {bad}\n"
        ));
        refused(&text, "max_channels", "max_channels", "from 1 to 16384");
    }
    for key in ["idle_timeout", "min_idle_for_eviction"] {
        let text = service(&format!(
            "id = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n{key} = \"0ms\"\n"
        ));
        refused(&text, key, key, "must not be zero");
        let text = service(&format!(
            "id = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n{key} = \"soon\"\n"
        ));
        refused(&text, key, key, "not a duration");
    }

    let text = service("id = 1\npeer = \"y\"\nmode = \"forward\"\ntarget = \"127.0.0.1:0\"\n");
    refused(&text, "127.0.0.1:0", "target", "port 0");
    let text = service("id = 1\npeer = \"y\"\nmode = \"forward\"\ntarget = \"0.0.0.0:53\"\n");
    refused(&text, "0.0.0.0:53", "target", "specific address");
    let text = service("id = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:0\"\n");
    refused(&text, "127.0.0.1:0", "listen", "port 0");
    let text = service("id = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"localhost:53\"\n");
    refused(&text, "localhost", "listen", "not an IP address and port");
}

#[test]
fn port_holds_belong_to_channel_exits() {
    let service =
        |body: &str| with_peer(&format!("\n[[service]] # S\nid = 1\npeer = \"y\"\n{body}"));
    let exit = "mode = \"forward\"\ntarget = \"127.0.0.1:53\"\n";
    let defaults = parse(&service(exit)).unwrap().services[0].clone();
    assert_eq!(defaults.port_hold, ChannelLimits::DEFAULT_PORT_HOLD);
    assert_eq!(
        defaults.answered_port_hold,
        ChannelLimits::DEFAULT_ANSWERED_PORT_HOLD
    );
    type Get = fn(&crate::config::ServiceSpec) -> Duration;
    let keys: [(&str, Get); 2] = [
        ("port_hold", |s| s.port_hold),
        ("answered_port_hold", |s| s.answered_port_hold),
    ];
    for (key, get) in keys {
        let held = |text: &str| get(&parse(text).unwrap().services[0]);
        assert_eq!(
            held(&service(&format!("{exit}{key} = \"2m\"\n"))),
            Duration::from_secs(120)
        );
        // Zero is allowed: sockets close with their channels.
        assert_eq!(
            held(&service(&format!("{exit}{key} = \"0s\"\n"))),
            Duration::ZERO
        );
        let router_exit = "mode = \"router\"\nallow = [\"10.0.0.0/8\"]\n";
        assert_eq!(
            held(&service(&format!("{router_exit}{key} = \"5s\"\n"))),
            Duration::from_secs(5)
        );
        let text = service(&format!("{exit}{key} = \"later\"\n"));
        refused(&text, key, key, "not a duration");
        for elsewhere in [
            "mode = \"forward\"\nlisten = \"127.0.0.1:53\"\n",
            "mode = \"push\"\ntarget = \"127.0.0.1:514\"\n",
            "mode = \"direct\"\nlisten = \"127.0.0.1:7\"\ntarget = \"127.0.0.1:8\"\n",
        ] {
            let text = service(&format!("{elsewhere}{key} = \"5s\"\n"));
            refused(&text, key, key, "exit half of a forward or router");
        }
    }
}

#[test]
fn buffer_belongs_to_push_entries() {
    let service =
        |body: &str| with_peer(&format!("\n[[service]] # S\nid = 1\npeer = \"y\"\n{body}"));
    let entry = "mode = \"push\"\nlisten = \"127.0.0.1:514\"\n";
    let buffer = |text: &str| parse(text).unwrap().services[0].buffer;
    assert_eq!(buffer(&service(entry)), None);
    for (written, bytes) in [
        ("\"4MiB\"", 4 << 20),
        ("\"64KiB\"", 64 << 10),
        ("\"1 GiB\"", 1 << 30),
        ("\"100000B\"", 100_000),
        ("\"100000\"", 100_000),
        ("100000", 100_000),
    ] {
        assert_eq!(
            buffer(&service(&format!("{entry}buffer = {written}\n"))),
            Some(bytes),
            "{written}"
        );
    }
    for (written, message) in [
        ("\"4MB\"", "unknown unit `MB`"),
        ("\"lots\"", "not a size"),
        ("\"MiB\"", "not a size"),
        ("-1", "negative"),
        ("\"1KiB\"", "from 64KiB to 1GiB"),
        ("\"2GiB\"", "from 64KiB to 1GiB"),
        ("0", "from 64KiB to 1GiB"),
        ("\"99999999999999GiB\"", "too large"),
    ] {
        let text = service(&format!("{entry}buffer = {written}\n"));
        refused(&text, "buffer", "buffer", message);
    }
    let text = service(&format!("{entry}buffer = true\n"));
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("a size such as"), "{err}");
    for elsewhere in [
        "mode = \"push\"\ntarget = \"127.0.0.1:514\"\n",
        "mode = \"forward\"\nlisten = \"127.0.0.1:53\"\n",
        "mode = \"direct\"\nlisten = \"127.0.0.1:7\"\ntarget = \"127.0.0.1:8\"\n",
        "mode = \"router\"\nallow = [\"10.0.0.0/8\"]\n",
    ] {
        let text = service(&format!("{elsewhere}buffer = \"4MiB\"\n"));
        refused(
            &text,
            "buffer",
            "buffer",
            "only the entry half of a push service",
        );
    }
}

#[test]
fn refuses_wrong_halves() {
    let service = |body: &str| with_peer(&format!("\n[[service]] # S\nid = 7\n{body}"));

    let text = service(
        "peer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\ntarget = \"127.0.0.1:2\"\n",
    );
    refused(
        &text,
        "127.0.0.1:2",
        "target",
        "not both (mode = \"direct\" has both)",
    );
    let text = service("peer = \"y\"\nmode = \"push\"\n");
    refused(
        &text,
        "# S",
        "listen",
        "give listen (this node is the entry) or target",
    );
    let text = service("peer = \"y\"\nmode = \"direct\"\nlisten = \"127.0.0.1:1\"\n");
    refused(&text, "# S", "target", "needs both listen and target");
    let text = service("peer = \"y\"\nmode = \"direct\"\ntarget = \"127.0.0.1:1\"\n");
    refused(&text, "# S", "listen", "needs both listen and target");
    let text =
        service("peer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\ntun = \"sdt0\"\n");
    refused(
        &text,
        "\"sdt0\"",
        "tun",
        "a forward service does not use tun",
    );
    let text = service("peer = \"y\"\nmode = \"direct\"\nlisten = \"127.0.0.1:1\"\ntarget = \"127.0.0.1:2\"\nallow = [\"10.0.0.0/8\"]\n");
    refused(
        &text,
        "allow",
        "allow",
        "a direct service does not use allow",
    );

    let text =
        service("peer = \"y\"\nmode = \"router\"\ntun = \"sdt0\"\nallow = [\"10.0.0.0/8\"]\n");
    refused(&text, "allow", "allow", "not both");
    let text = service("peer = \"y\"\nmode = \"router\"\n");
    refused(
        &text,
        "# S",
        "tun",
        "give tun (this node is the entry) or allow",
    );
    let text =
        service("peer = \"y\"\nmode = \"router\"\nlisten = \"127.0.0.1:1\"\ntun = \"sdt0\"\n");
    refused(
        &text,
        "127.0.0.1:1",
        "listen",
        "a router service does not use listen",
    );
    let text = service("peer = \"*\"\nmode = \"router\"\nallow = []\naddress = \"10.0.0.1/24\"\n");
    refused(&text, "10.0.0.1/24", "address", "entry half");

    let text = service("peer = \"*\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n");
    refused(
        &text,
        "\"*\"",
        "peer",
        "only for an exit half, not an entry half",
    );
    let text = service("peer = \"*\"\nmode = \"router\"\ntun = \"sdt0\"\n");
    refused(&text, "\"*\"", "peer", "not an entry half");
    let text = service(
        "peer = \"*\"\nmode = \"direct\"\nlisten = \"127.0.0.1:1\"\ntarget = \"127.0.0.1:2\"\n",
    );
    refused(&text, "\"*\"", "peer", "not a direct service");
}

#[test]
fn refuses_bad_router_values() {
    let service = |body: &str| {
        with_peer(&format!(
            "\n[[service]]\nid = 7\npeer = \"y\"\nmode = \"router\"\n{body}"
        ))
    };

    let text = service("allow = [\n  \"10.0.0.0/8:53\",\n  \"10.0.0.1/8:53\",\n]\n");
    refused(
        &text,
        "10.0.0.1/8",
        "allow",
        "`10.0.0.1/8:53`: address has bits set past the prefix length",
    );
    let text = service("allow = [\"icmp://10.0.0.0/8\", \"icmp://10.0.0.0/8:53\"]\n");
    refused(
        &text,
        "icmp://10.0.0.0/8:53",
        "allow",
        "`icmp://10.0.0.0/8:53`: an icmp:// rule names a network, not a port",
    );
    let text = service("allow = [\"2001:db8::/32:53\"]\n");
    refused(&text, "\"2001", "allow", "with an IPv6 address in brackets");
    let text = service("tun = \"this-name-is-too-long\"\n");
    refused(&text, "too-long", "tun", "1 to 15 letters");
    let text = service("tun = \"sdt0\"\naddress = \"10.99.0.1/40\"\n");
    refused(
        &text,
        "/40",
        "address",
        "`40` is not a prefix length from 0 to 32",
    );
    let text = with_peer(
        "\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"router\"\ntun = \"sdt0\"\n\
         \n[[service]]\nid = 2\npeer = \"y\"\nmode = \"router\"\ntun = \"sdt0\" # again\n",
    );
    refused(&text, "# again", "tun", "TUN device sdt0 is already used");
    let text = service("tun = \"sdt0\"\nroutes = [\"10.202.0.1/24\"]\n");
    refused(
        &text,
        "10.202.0.1/24",
        "routes",
        "`10.202.0.1/24` has bits set past its prefix length",
    );
    let text = service("tun = \"sdt0\"\nroutes = [\"sdt0\"]\n");
    refused(&text, "\"sdt0\"]", "routes", "`sdt0` is not an IP address");
    let text = service("tun = \"sdt0\"\ntun_mtu = 575\n");
    refused(
        &text,
        "575",
        "tun_mtu",
        "a TUN MTU is a number from 576 to 65535",
    );
    let text = service("allow = [\"10.0.0.0/8\"]\nroutes = [\"10.9.0.0/16\"]\n");
    refused(
        &text,
        "10.9.0.0/16",
        "routes",
        "routes belongs to the entry half, with tun",
    );
    let text = with_peer(
        "\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n\
         tun_mtu = 1400\n",
    );
    refused(
        &text,
        "1400",
        "tun_mtu",
        "a forward service does not use tun_mtu",
    );
    let text = service("allow = [\"10.0.0.0/8\"]\ntun_offload = false\n");
    refused(
        &text,
        "false",
        "tun_offload",
        "tun_offload belongs to the entry half, with tun",
    );
    let text = service("tun = \"sdt0\"\ntun_offload = \"no\"\n");
    refused(&text, "\"no\"", "tun_offload", "");
}

#[cfg(unix)]
#[test]
fn key_files_are_relative_to_the_config_and_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("x.key", &format!("{}\n", key(1)), 0o600);
    write(
        "y.psk",
        &format!("{}\n", PresharedKey::from_bytes([5; 32])),
        0o600,
    );
    let config = format!(
        "private_key_file = \"x.key\"\n\n[[peer]]\nname = \"y\"\npublic_key = \"{}\"\npreshared_key_file = \"y.psk\"\n",
        public(2)
    );
    write("x.toml", &config, 0o644);
    let cfg = Config::load(&dir.path().join("x.toml")).unwrap();
    assert_eq!(cfg.private_key, key(1));
    assert_eq!(
        cfg.peers[0].preshared_key,
        Some(PresharedKey::from_bytes([5; 32]))
    );
    assert_eq!(cfg.control_socket, Some(PathBuf::from("/run/sdt/x.sock")));

    // Group-readable key file: refused, naming the file, its mode and the
    // line of the key that names it.
    write("x.key", &format!("{}\n", key(1)), 0o644);
    let err = Config::load(&dir.path().join("x.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::KeyFile { .. }), "{err:?}");
    let key_path = dir.path().join("x.key");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1: key `private_key_file`: {} is readable by group or others (mode 0644); chmod 600 it",
            dir.path().join("x.toml").display(),
            key_path.display()
        )
    );
    write("x.key", &format!("{}\n", key(1)), 0o600);

    write("y.psk", "nonsense\n", 0o600);
    let err = Config::load(&dir.path().join("x.toml")).unwrap_err();
    assert_eq!(err.line(), Some(6));
    assert_eq!(err.key(), Some("preshared_key_file"));
    assert!(
        err.to_string().contains("y.psk: key must be 32 bytes"),
        "{err}"
    );

    std::fs::remove_file(dir.path().join("y.psk")).unwrap();
    let err = Config::load(&dir.path().join("x.toml")).unwrap_err();
    assert!(err.to_string().contains("y.psk does not exist"), "{err}");
}

#[test]
fn missing_config_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.toml");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with(&format!("{}: cannot read: ", path.display())));
}

#[test]
fn halves_complement() {
    assert!(Half::Entry.complements(Half::Exit));
    assert!(Half::Exit.complements(Half::Entry));
    assert!(Half::Both.complements(Half::Both));
    assert!(!Half::Entry.complements(Half::Entry));
    assert!(!Half::Exit.complements(Half::Both));
}

/// Found by the `config` fuzz target (its exact input): a value quoted in
/// the message held a line feed, written as a TOML escape, and broke the
/// error over two lines.
#[test]
fn fuzz_config_line_feed_in_a_quoted_value() {
    let text = "private_key=\"5wWk3NSibY7Xt5a/cnyrUerHfN1VchUMeQjVpxFdap8=\"\nlisten=\"\\u000a\"";
    let err = Config::parse(text, Path::new("fuzz.toml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "fuzz.toml:2: key `listen`: `\\n` is not an IP address and port such as \
         127.0.0.1:5353 or [::1]:5353"
    );
}

/// Every way text from the file (or the file's own path) reaches an error
/// comes out escaped: the parser's messages, key file paths, values.
#[test]
fn control_characters_in_errors_are_escaped() {
    let endpoint = with_peer("endpoint = \"\\u001b[2J\"\n");
    let cases: [(&str, &str); 3] = [
        // The TOML parser quotes an unknown key.
        ("\"a\\nb\" = 1\n", "conf/t.toml:1: unknown field `a\\nb`"),
        // A key file path, in the key file error.
        (
            "private_key_file = \"k\\r\\n.key\"\n",
            "conf/t.toml:1: key `private_key_file`: key file conf/k\\r\\n.key does not exist",
        ),
        // A value, with an escape sequence a terminal would obey.
        (
            &endpoint,
            "key `endpoint`: `\\u{1b}[2J` is not an address and port",
        ),
    ];
    for (text, want) in cases {
        let shown = parse(text).unwrap_err().to_string();
        assert!(shown.contains(want), "{shown:?} should contain {want:?}");
        assert!(!shown.contains(char::is_control), "{shown:?}");
    }
    let err = Config::parse("", Path::new("a\nb.toml")).unwrap_err();
    assert!(err.to_string().starts_with("a\\nb.toml: "), "{err}");
}

/// `sdt check` refuses what the node cannot hold, at the table that goes
/// over, as `sdt run` would (it used to pass 4,097 peers or 65 services
/// that only `run` refused, with no line).
#[test]
fn refuses_more_peers_and_services_than_a_node_holds() {
    let peer = |i: usize| {
        let mut bytes = [7u8; 32];
        // Byte 0 loses bits to clamping: count in the bytes after it.
        bytes[1..9].copy_from_slice(&(i as u64 + 1000).to_le_bytes());
        format!(
            "[[peer]]\nname = \"p{i}\"\npublic_key = \"{}\"\n",
            PrivateKey::from_bytes(bytes).public_key()
        )
    };
    let head = format!("private_key = \"{}\"\n\n", key(1));
    let fits: String = (0..MAX_PEERS).map(peer).collect();
    let config = parse(&format!("{head}{fits}")).unwrap();
    assert_eq!(config.peers.len(), MAX_PEERS);
    let over = format!(
        "{head}{fits}{}",
        peer(MAX_PEERS).replacen("]]", "]] # one too many", 1)
    );
    refused(
        &over,
        "# one too many",
        "[[peer]]",
        "too many peers: a node holds at most 4096",
    );

    let service = |id: usize| {
        format!(
            "\n[[service]]\nid = {id}\npeer = \"y\"\nmode = \"push\"\ntarget = \"127.0.0.1:{}\"\n",
            1000 + id
        )
    };
    let fits: String = (0..MAX_SERVICES).map(service).collect();
    assert_eq!(
        parse(&with_peer(&fits)).unwrap().services.len(),
        MAX_SERVICES
    );
    let over = with_peer(&format!(
        "{fits}{}",
        service(MAX_SERVICES).replacen("]]", "]] # one too many", 1)
    ));
    refused(
        &over,
        "# one too many",
        "[[service]]",
        "too many services: a node runs at most 64",
    );
}

#[test]
fn peer_mtu_defaults_to_core_and_is_range_checked() {
    let cfg = parse(&with_peer("")).unwrap();
    assert_eq!(cfg.peers[0].mtu, sdt_core::mtu::DEFAULT_LINK_MTU);
    assert_eq!(cfg.peers[0].mtu, 1500);
    for (value, mtu) in [
        ("576", 576),
        ("1280", 1280),
        ("9000", 9000),
        ("65535", 65535),
    ] {
        let cfg = parse(&with_peer(&format!("mtu = {value}\n"))).unwrap();
        assert_eq!(cfg.peers[0].mtu, mtu);
    }
    for bad in ["575", "0", "-1", "65536", "100000"] {
        let text = with_peer(&format!("mtu = {bad} # M\n"));
        refused(&text, "# M", "mtu", "must be a number from 576 to 65535");
    }
    let text = with_peer("mtu = \"1500\" # M\n");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.line(), Some(line_of(&text, "# M")), "{err}");
}

/// An endpoint the link socket can never reach is refused at the endpoint
/// (`sdt run` would start, and the link would never come up: the sends
/// fail as `send_errors`, nothing logged).
#[test]
fn refuses_an_endpoint_the_link_socket_cannot_reach() {
    let node = |listen: &str, endpoint: &str| {
        format!(
            "private_key = \"{}\"\nlisten = \"{listen}\"\n\n[[peer]]\nname = \"y\"\npublic_key = \"{}\"\nendpoint = \"{endpoint}\" # E\n",
            key(1),
            public(2)
        )
    };
    refused(
        &node("0.0.0.0:51820", "[2001:db8::1]:51820"),
        "# E",
        "endpoint",
        "[2001:db8::1]:51820 is IPv6 and the link's listen 0.0.0.0:51820 is IPv4: a socket \
         bound there can never send to it; use an IPv4 address or listen on [::] (both families)",
    );
    refused(
        &node("127.0.0.1:51820", "[::1]:51820"),
        "# E",
        "endpoint",
        "is IPv6 and the link's listen 127.0.0.1:51820 is IPv4",
    );
    refused(
        &node("[::1]:51820", "127.0.0.1:51820"),
        "# E",
        "endpoint",
        "127.0.0.1:51820 is IPv4 and the link's listen [::1]:51820 is IPv6",
    );
    refused(
        &node("[2001:db8::2]:51820", "[::ffff:192.0.2.1]:51820"),
        "# E",
        "endpoint",
        "is IPv6 and the link's listen [2001:db8::2]:51820 is IPv6",
    );
    // A name resolves to its first address the socket can reach.
    let cfg = parse(&node("127.0.0.1:51820", "localhost:9")).unwrap();
    assert!(cfg.peers[0].endpoint.unwrap().is_ipv4());
    // Dual-stack [::] reaches both families; no listen picks its own.
    for (listen, endpoint) in [
        ("[::]:51820", "192.0.2.1:51820"),
        ("[::]:51820", "[2001:db8::1]:51820"),
        ("0.0.0.0:51820", "192.0.2.1:51820"),
        ("[::1]:51820", "[::1]:9"),
    ] {
        parse(&node(listen, endpoint)).unwrap();
    }
    parse(&with_peer("endpoint = \"[2001:db8::1]:51820\"\n")).unwrap();
}

/// A direct service sends to its one customer from its listen socket.
#[test]
fn refuses_a_direct_target_its_listen_socket_cannot_reach() {
    let text = with_peer(
        "\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"direct\"\nlisten = \"127.0.0.1:7\"\ntarget = \"[::1]:8\" # T\n",
    );
    refused(
        &text,
        "# T",
        "target",
        "[::1]:8 is IPv6 and this service's listen 127.0.0.1:7 is IPv4",
    );
    // Forward and push exits open their own socket of the target's family.
    parse(&with_peer(
        "\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"push\"\ntarget = \"[::1]:8\"\n",
    ))
    .unwrap();
}

/// Listen sockets whose binds would clash, wildcards included, are refused
/// at the later one (`sdt run` failed with "Address in use", no line).
#[test]
fn refuses_listen_sockets_that_share_a_port_through_a_wildcard() {
    let entry = |id: u8, listen: &str, mark: &str| {
        format!("\n[[service]]\nid = {id}\npeer = \"y\"\nmode = \"forward\"\nlisten = \"{listen}\" {mark}\n")
    };
    for (first, second) in [
        ("0.0.0.0:53", "127.0.0.1:53"),
        ("127.0.0.1:53", "0.0.0.0:53"),
        ("[::]:53", "127.0.0.1:53"),
        ("[::]:53", "0.0.0.0:53"),
        ("[::1]:53", "[::]:53"),
    ] {
        let text = with_peer(&format!(
            "{}{}",
            entry(1, first, ""),
            entry(2, second, "# L")
        ));
        refused(
            &text,
            "# L",
            "listen",
            &format!("{second} takes the same port as {first} of the [[service]] on line"),
        );
    }
    for (first, second) in [
        ("0.0.0.0:53", "[::1]:53"),
        ("127.0.0.1:53", "127.0.0.2:53"),
        ("0.0.0.0:53", "0.0.0.0:54"),
    ] {
        parse(&with_peer(&format!(
            "{}{}",
            entry(1, first, ""),
            entry(2, second, "")
        )))
        .unwrap();
    }
    let text = format!(
        "listen = \"0.0.0.0:51820\"\n{}",
        with_peer(&entry(1, "127.0.0.1:51820", "# L"))
    );
    refused(
        &text,
        "# L",
        "listen",
        "127.0.0.1:51820 takes the same port as the link's listen address 0.0.0.0:51820",
    );
}

/// What `sdt run` would find in the way before binding anything: another
/// interface under the TUN device's name, a file at the control socket's
/// path.
#[test]
fn refuses_a_tun_name_or_control_socket_path_already_taken() {
    // `lo` exists in every network namespace and is no TUN device.
    let text =
        with_peer("\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"router\"\ntun = \"lo\" # T\n");
    refused(
        &text,
        "# T",
        "tun",
        "network interface lo exists and is not a TUN device",
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.sock"), "keep me\n").unwrap();
    let path = dir.path().join("t.toml");
    let text = format!("control_socket = \"x.sock\" # C\n{}", with_peer(""));
    let err = Config::parse(&text, &path).unwrap_err();
    assert_eq!((err.line(), err.key()), (Some(1), Some("control_socket")));
    assert!(
        err.to_string()
            .contains("x.sock exists and is not a socket"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("x.sock")).unwrap(),
        "keep me\n"
    );
    // A stale socket is no obstacle: `run` replaces it.
    std::fs::remove_file(dir.path().join("x.sock")).unwrap();
    let _stale = std::os::unix::net::UnixListener::bind(dir.path().join("x.sock")).unwrap();
    Config::parse(&text, &path).unwrap();
}

#[test]
fn an_endpoint_name_that_does_not_resolve_is_kept_to_try_later() {
    let cfg = parse(&with_peer("endpoint = \"nonexistent.invalid:51820\"\n")).unwrap();
    assert_eq!(cfg.peers[0].endpoint, None);
    assert_eq!(
        cfg.peers[0].endpoint_name.as_deref(),
        Some("nonexistent.invalid:51820")
    );
    // A name that resolves keeps its name too; an address has none.
    let cfg = parse(&with_peer("endpoint = \"localhost:51820\"\n")).unwrap();
    assert_eq!(
        cfg.peers[0].endpoint_name.as_deref(),
        Some("localhost:51820")
    );
    let cfg = parse(&with_peer("endpoint = \"127.0.0.1:51820\"\n")).unwrap();
    assert_eq!(cfg.peers[0].endpoint_name, None);
    // Still refused: no port, port 0.
    let text = with_peer("endpoint = \"nonexistent.invalid\" # E\n");
    refused(&text, "# E", "endpoint", "is not an address and port");
    let text = with_peer("endpoint = \"nonexistent.invalid:0\" # E\n");
    refused(&text, "# E", "endpoint", "port 0 is not a destination port");
    // A target name must resolve at load time.
    let text = with_peer(
        "\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"forward\"\ntarget = \"nonexistent.invalid:53\" # E\n",
    );
    refused(
        &text,
        "# E",
        "target",
        "cannot resolve `nonexistent.invalid:53`",
    );
}

#[test]
fn resolve_interval_is_a_duration_or_off() {
    let cfg = parse(&with_peer("")).unwrap();
    assert_eq!(cfg.resolve_interval, Some(DEFAULT_RESOLVE_INTERVAL));
    assert_eq!(DEFAULT_RESOLVE_INTERVAL, Duration::from_secs(120));
    let cfg = parse(&format!("resolve_interval = \"30s\"\n{}", with_peer(""))).unwrap();
    assert_eq!(cfg.resolve_interval, Some(Duration::from_secs(30)));
    let cfg = parse(&format!("resolve_interval = \"off\"\n{}", with_peer(""))).unwrap();
    assert_eq!(cfg.resolve_interval, None);
    let text = format!("resolve_interval = \"0s\" # E\n{}", with_peer(""));
    refused(&text, "# E", "resolve_interval", "must not be zero");
    let text = format!("resolve_interval = \"soon\" # E\n{}", with_peer(""));
    refused(&text, "# E", "resolve_interval", "is not a duration");
}

/// `exit = "tun"`: the entry has a TUN device, the exit a TUN device, an
/// allow-list and peer_addresses; L3 exits may share their device.
#[test]
fn l3_router_services() {
    let l3 = |body: &str| {
        with_peer(&format!(
            "\n[[service]]\nid = 7\npeer = \"y\"\nmode = \"router\"\nexit = \"tun\"\n{body}"
        ))
    };
    let cfg = parse(&l3("tun = \"sdt0\"\naddress = \"10.8.0.2/24\"\n")).unwrap();
    let s = &cfg.services[0];
    assert_eq!((s.half, s.exit), (Half::Entry, RouterExit::Tun));
    assert_eq!(
        crate::build::service_config(s).role,
        sdt_core::node::Role::RouterTunEntry
    );
    let cfg = parse(&l3(
        "tun = \"sdtx\"\naddress = \"10.8.0.1/24\"\nallow = [\"tcp://10.9.0.0/16:80\", \
         \"ip://10.10.0.0/16\"]\npeer_addresses = [\"10.8.0.2/32\", \"fd00:8::/64\"]\n",
    ))
    .unwrap();
    let s = &cfg.services[0];
    assert_eq!((s.half, s.exit), (Half::Exit, RouterExit::Tun));
    assert_eq!(s.peer_addresses.len(), 2);
    assert!(matches!(
        crate::build::service_config(s).role,
        sdt_core::node::Role::RouterTunExit { .. }
    ));
    // The socket exit stays the default, and says so if named.
    let cfg = parse(&with_peer(
        "\n[[service]]\nid = 7\npeer = \"y\"\nmode = \"router\"\nexit = \"socket\"\nallow = []\n",
    ))
    .unwrap();
    assert_eq!(cfg.services[0].exit, RouterExit::Socket);

    let text = l3("tun = \"sdt0\" # T\nexit_typo = 1\n");
    assert!(parse(&text).is_err());
    let text = with_peer(
        "\n[[service]]\nid = 7\npeer = \"y\"\nmode = \"router\"\nexit = \"wire\" # E\ntun = \"sdt0\"\n",
    );
    refused(&text, "# E", "exit", "unknown exit `wire`; expected socket");
    let text = l3("allow = [\"ip://10.0.0.0/8\"] # A\npeer_addresses = [\"10.8.0.2/32\"]\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("key `tun`") && err.contains("on both halves"),
        "{err}"
    );
    let text = l3("tun = \"sdtx\"\nallow = [\"ip://10.0.0.0/8\"] # A\n");
    refused(&text, "# A", "peer_addresses", "needs peer_addresses");
    let text = l3("tun = \"sdt0\"\npeer_addresses = [\"10.8.0.2/32\"] # P\n");
    refused(&text, "# P", "peer_addresses", "belongs to the exit half");
    let text = l3("tun = \"sdtx\"\nallow = []\npeer_addresses = [\"10.8.0.1/24\"] # P\n");
    refused(
        &text,
        "# P",
        "peer_addresses",
        "`10.8.0.1/24`: address has bits set past the prefix length",
    );
    let text =
        l3("tun = \"sdtx\"\nallow = []\npeer_addresses = [\"10.8.0.0/24\", \"10.8.0.2/32\"] # P\n");
    refused(&text, "# P", "peer_addresses", "overlaps 10.8.0.0/24");
    let text = with_peer(
        "\n[[service]]\nid = 7\npeer = \"y\"\nmode = \"router\"\nallow = []\n\
         peer_addresses = [\"10.8.0.2/32\"] # P\n",
    );
    refused(
        &text,
        "# P",
        "peer_addresses",
        "set exit = \"tun\" on both halves",
    );
    let text = with_peer(
        "\n[[service]]\nid = 7\npeer = \"*\" # S\nmode = \"router\"\nexit = \"tun\"\n\
         tun = \"sdtx\"\nallow = []\npeer_addresses = [\"10.8.0.2/32\"]\n",
    );
    refused(&text, "# S", "peer", "belong to one peer");
    let text = with_peer(
        "\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"127.0.0.1:1\"\n\
         exit = \"tun\" # F\n",
    );
    refused(&text, "# F", "exit", "a forward service does not use exit");

    // Two L3 exits share a device; their ranges must not overlap, and the
    // second repeats the device's set-up or leaves it out.
    let exit = |id: u8, extra: &str, range: &str| {
        format!(
            "\n[[service]]\nid = {id}\npeer = \"y\"\nmode = \"router\"\nexit = \"tun\"\n\
             tun = \"sdtx\"\n{extra}allow = [\"ip://10.9.0.0/16\"]\npeer_addresses = [\"{range}\"]\n"
        )
    };
    let first = exit(1, "address = \"10.8.0.1/24\"\n", "10.8.0.2/32");
    let cfg = parse(&with_peer(&format!(
        "{first}{}",
        exit(2, "", "10.8.0.3/32")
    )))
    .unwrap();
    assert_eq!(cfg.services.len(), 2);
    parse(&with_peer(&format!(
        "{first}{}",
        exit(2, "address = \"10.8.0.1/24\"\n", "10.8.0.3/32")
    )))
    .unwrap();
    let text = with_peer(&format!(
        "{first}{}",
        exit(2, "address = \"10.8.1.1/24\" # D\n", "10.8.0.3/32")
    ));
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("is set up by the [[service]] on line"),
        "{err}"
    );
    let text = with_peer(&format!("{first}{}", exit(2, "", "10.8.0.0/24")));
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("10.8.0.0/24 overlaps 10.8.0.2/32 of the [[service]] on line"),
        "{err}"
    );
    // An entry does not share its device.
    let text = with_peer(&format!(
        "{first}\n[[service]]\nid = 3\npeer = \"y\"\nmode = \"router\"\nexit = \"tun\"\n\
         tun = \"sdtx\" # again\n"
    ));
    refused(&text, "# again", "tun", "only L3 exits");
}

#[test]
fn of_several_keys_a_mode_does_not_use_the_first_in_key_order_is_named() {
    // The order of the keys in the file does not matter: listen, target,
    // tun, address, routes, tun_mtu, allow, exit, peer_addresses.
    let push = with_peer(
        "\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"push\"\nlisten = \"127.0.0.1:514\"\n\
         peer_addresses = [\"10.0.0.0/8\"]\nexit = \"tun\"\nallow = []\n\
         tun_mtu = 1400\nroutes = []\naddress = \"10.0.0.1/24\" # A\n",
    );
    refused(
        &push,
        "# A",
        "address",
        "a push service does not use address (it uses listen on the entry or target on the exit)",
    );
    let l3 = with_peer(
        "\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"router\"\nexit = \"tun\"\ntun = \"sdt9\"\n\
         target = \"127.0.0.1:53\"\nlisten = \"127.0.0.1:5353\" # L\n",
    );
    refused(
        &l3,
        "# L",
        "listen",
        "a router service does not use listen (it uses tun, and allow and peer_addresses on the exit)",
    );
}
