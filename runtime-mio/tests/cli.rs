//! The built `sdt` binary: key commands, `check`, exit statuses, and no
//! panics on bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sdt_core::key::{PresharedKey, PrivateKey};

fn sdt(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sdt"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit without reading stdin; a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "sdt {args:?} panicked:\n{stderr}"
    );
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "sdt {args:?}:\n{stderr}"
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(rel)
}

#[test]
fn genkey_pubkey_round_trip_matches_the_library() {
    let gen = sdt(&["genkey"], b"");
    assert!(gen.status.success(), "{}", stderr(&gen));
    let text = stdout(&gen);
    assert_eq!(text.len(), 45, "{text:?}");
    assert!(text.ends_with('\n'));
    let key: PrivateKey = text.parse().unwrap();

    let pubkey = sdt(&["pubkey"], text.as_bytes());
    assert!(pubkey.status.success(), "{}", stderr(&pubkey));
    assert_eq!(stdout(&pubkey), format!("{}\n", key.public_key()));

    // Without the trailing newline too.
    let pubkey = sdt(&["pubkey"], text.trim_end().as_bytes());
    assert_eq!(stdout(&pubkey), format!("{}\n", key.public_key()));

    // Two runs give two different keys.
    assert_ne!(stdout(&sdt(&["genkey"], b"")), text);
}

#[test]
fn genpsk_prints_a_preshared_key() {
    let out = sdt(&["genpsk"], b"");
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.ends_with('\n') && text.len() == 45, "{text:?}");
    text.parse::<PresharedKey>().unwrap();
}

#[test]
fn pubkey_refuses_bad_input_with_status_1() {
    for input in [&b"not a key\n"[..], b"", b"AAAA\n", &[0xff, 0xfe, 0x00]] {
        let out = sdt(&["pubkey"], input);
        assert_eq!(out.status.code(), Some(1), "{input:?}");
        assert!(stdout(&out).is_empty());
        let err = stderr(&out);
        assert!(err.starts_with("sdt: stdin: key"), "{err:?}");
        assert_eq!(err.lines().count(), 1, "{err:?}");
    }
}

#[test]
fn check_accepts_a_good_example() {
    let path = example("forward/x.toml");
    let out = sdt(&["check", "-c", path.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{}: ok, 1 peer, 1 service\n", path.display())
    );
    let out = sdt(&["-v", "check", "--config", path.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn check_refuses_a_broken_file_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(example("forward/y.toml")).unwrap();
    let cases = [
        // (what to change, the key named, the line's marker)
        ("mode = \"forward\"", "mode = \"sideways\"", "mode"),
        ("max_channels = 1024", "max_channels = 0", "max_channels"),
        ("max_channels = 1024", "max_chanels = 10", "max_chanels"),
        ("peer = \"x\"", "peer = \"z\"", "peer"),
    ];
    for (from, to, key) in cases {
        assert!(good.contains(from), "{from}");
        let text = good.replacen(from, to, 1);
        let line = text[..text.find(to).unwrap()].matches('\n').count() + 1;
        let path = dir.path().join("broken.toml");
        std::fs::write(&path, &text).unwrap();
        let out = sdt(&["check", "-c", path.to_str().unwrap()], b"");
        assert_eq!(out.status.code(), Some(1), "{to}");
        assert!(stdout(&out).is_empty());
        let err = stderr(&out);
        let want = format!("sdt: {}:{line}: key `{key}`: ", path.display());
        assert!(err.starts_with(&want), "{err:?} should start {want:?}");
        assert_eq!(err.lines().count(), 1, "{err:?}");
    }

    // Not TOML at all.
    let path = dir.path().join("garbage.toml");
    std::fs::write(&path, "[[peer]\nname = \n").unwrap();
    let out = sdt(&["check", "-c", path.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with(&format!("sdt: {}:1: ", path.display())));

    // A missing file.
    let path = dir.path().join("missing.toml");
    let out = sdt(&["check", "-c", path.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with(&format!("sdt: {}: cannot read", path.display())));
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    for args in [&["frobnicate"][..], &[], &["check"], &["genkey", "--nope"]] {
        let out = sdt(args, b"");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    }
    let out = sdt(&["--help"], b"");
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for word in ["genkey", "pubkey", "genpsk", "check", "Exit status:"] {
        assert!(help.contains(word), "{word} not in help:\n{help}");
    }
    assert_eq!(sdt(&["--version"], b"").status.code(), Some(0));
}

/// `sdt run -c FILE` with a timeout: it must refuse `FILE` at once, not run.
fn run_refusing(path: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sdt"))
        .args(["run", "-c", path.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Generous: a refusal takes milliseconds; this only catches a node
    // that started (and would otherwise run forever).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "sdt run {} started instead of refusing:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Issue 12 finding 2: whatever `sdt run` refuses before binding a socket,
/// `sdt check` refuses too, with the same one-line `FILE:LINE: key` error.
/// Each broken config goes to both commands.
#[test]
fn check_and_run_refuse_the_same_configs_with_the_same_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = |n: u64| {
        let mut bytes = [9u8; 32];
        bytes[1..9].copy_from_slice(&n.to_le_bytes());
        PrivateKey::from_bytes(bytes)
    };
    let head = |listen: &str| {
        format!(
            "private_key = \"{}\"\n{listen}control_socket = \"{}\"\n",
            key(0),
            dir.path().join("node.sock").display()
        )
    };
    let peer = |i: u64, extra: &str| {
        format!(
            "\n[[peer]]\nname = \"p{i}\"\npublic_key = \"{}\"\n{extra}",
            key(i + 1).public_key()
        )
    };
    let push = |id: usize, target: &str| {
        format!("\n[[service]]\nid = {id}\npeer = \"p0\"\nmode = \"push\"\ntarget = \"{target}\"\n")
    };
    let entry = |id: usize, listen: &str| {
        format!(
            "\n[[service]]\nid = {id}\npeer = \"p0\"\nmode = \"forward\"\nlisten = \"{listen}\"\n"
        )
    };
    let in_the_way = dir.path().join("file.sock");
    std::fs::write(&in_the_way, "keep me\n").unwrap();
    let too_many_peers: String = (0..4097).map(|i| peer(i, "")).collect();
    let too_many_services: String = (0..65).map(|i| push(i, "127.0.0.1:9")).collect();
    let cases: Vec<(&str, String, &str)> = vec![
        // (what, the config, the key the error names)
        ("4097 peers", format!("{}{too_many_peers}", head("")), "[[peer]]"),
        (
            "65 services",
            format!("{}{}{too_many_services}", head(""), peer(0, "")),
            "[[service]]",
        ),
        (
            "IPv4 listen, IPv6 endpoint",
            format!(
                "{}{}",
                head("listen = \"127.0.0.1:0\"\n"),
                peer(0, "endpoint = \"[::1]:51820\"\n")
            ),
            "endpoint",
        ),
        (
            "IPv4 wildcard listen, IPv6 endpoint",
            format!(
                "{}{}",
                head("listen = \"0.0.0.0:0\"\n"),
                peer(0, "endpoint = \"[::1]:51820\"\n")
            ),
            "endpoint",
        ),
        (
            "IPv6 listen, IPv4 endpoint",
            format!(
                "{}{}",
                head("listen = \"[::1]:0\"\n"),
                peer(0, "endpoint = \"127.0.0.1:51820\"\n")
            ),
            "endpoint",
        ),
        (
            "direct service, IPv4 listen, IPv6 target",
            format!(
                "{}{}\n[[service]]\nid = 1\npeer = \"p0\"\nmode = \"direct\"\nlisten = \"127.0.0.1:45355\"\ntarget = \"[::1]:9\"\n",
                head(""),
                peer(0, "")
            ),
            "target",
        ),
        (
            "listen under a wildcard of another service",
            format!(
                "{}{}{}{}",
                head(""),
                peer(0, ""),
                entry(1, "0.0.0.0:45353"),
                entry(2, "127.0.0.1:45353")
            ),
            "listen",
        ),
        (
            "listen on the link's wildcard port",
            format!(
                "{}{}{}",
                head("listen = \"[::]:45354\"\n"),
                peer(0, ""),
                entry(1, "127.0.0.1:45354")
            ),
            "listen",
        ),
        (
            "a TUN device name taken by another interface",
            format!(
                "{}{}\n[[service]]\nid = 1\npeer = \"p0\"\nmode = \"router\"\ntun = \"lo\"\n",
                head(""),
                peer(0, "")
            ),
            "tun",
        ),
        (
            "a regular file at the control socket's path",
            format!(
                "private_key = \"{}\"\ncontrol_socket = \"{}\"\n{}",
                key(0),
                in_the_way.display(),
                peer(0, "")
            ),
            "control_socket",
        ),
        (
            "a control_group that does not exist",
            format!(
                "{}control_group = \"sdt-no-such-group-{}\"\n{}",
                head(""),
                std::process::id(),
                peer(0, "")
            ),
            "control_group",
        ),
        (
            "a control_group without a control socket",
            format!(
                "private_key = \"{}\"\ncontrol_socket = false\ncontrol_group = \"root\"\n{}",
                key(0),
                peer(0, "")
            ),
            "control_group",
        ),
        (
            "control_socket neither a path nor false",
            format!("private_key = \"{}\"\ncontrol_socket = 7\n{}", key(0), peer(0, "")),
            "control_socket",
        ),
        (
            "same peer key twice",
            format!(
                "{}{}{}",
                head(""),
                peer(0, ""),
                peer(0, "").replace("p0", "q0")
            ),
            "public_key",
        ),
        (
            "duplicate service id",
            format!(
                "{}{}{}{}",
                head(""),
                peer(0, ""),
                push(1, "127.0.0.1:9"),
                push(1, "127.0.0.1:10")
            ),
            "id",
        ),
    ];
    for (what, text, key) in &cases {
        let path = dir.path().join("broken.toml");
        std::fs::write(&path, text).unwrap();
        let check = sdt(&["check", "-c", path.to_str().unwrap()], b"");
        let run = run_refusing(&path);
        let first = |o: &Output| stderr(o).lines().next().unwrap_or_default().to_owned();
        let want = format!("sdt: {}:", path.display());
        let line = first(&check);
        assert!(
            line.starts_with(&want) && line.contains(&format!(": key `{key}`: ")),
            "{what}: check said {line:?}"
        );
        assert_eq!(check.status.code(), Some(1), "{what}: {line}");
        assert_eq!(first(&run), line, "{what}: run and check differ");
        assert_eq!(run.status.code(), Some(1), "{what}: {line}");
    }
    assert_eq!(std::fs::read_to_string(&in_the_way).unwrap(), "keep me\n");
}
