//! The firmware examples on an emulated Cortex-M4F: QEMU's `mps2-an386`
//! (`qemu-system-arm`, installed by scripts/install-deps.sh; the test fails
//! without it). Each test builds its example for `thumbv7em-none-eabihf`
//! in release mode with the same command as test.sh (so it is usually
//! built already), boots it, and checks what it reported over semihosting
//! and its exit status.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TARGET: &str = "thumbv7em-none-eabihf";
/// Far above a run's time (well under a second on an idle machine): only a
/// hung firmware gets here.
const QEMU_LIMIT: Duration = Duration::from_secs(60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lies in the workspace")
        .to_path_buf()
}

/// Builds `example` for the board and returns the ELF file.
fn build(example: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--locked", "--release", "-p", "sdt-smoltcp"])
        .args([
            "--example",
            example,
            "--target",
            TARGET,
            "--no-default-features",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --example {example} failed");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let elf = target_dir
        .join(TARGET)
        .join("release/examples")
        .join(example);
    assert!(elf.exists(), "no firmware at {}", elf.display());
    elf
}

/// Boots `elf` on mps2-an386 with instruction counting (`-icount
/// shift=0`: one virtual nanosecond per instruction) and semihosting;
/// returns whether QEMU exited with status 0, and what the firmware
/// printed.
fn boot(elf: &Path) -> (bool, String) {
    let mut child = Command::new("qemu-system-arm")
        .args(["-M", "mps2-an386", "-nographic", "-monitor", "none"])
        .args(["-icount", "shift=0"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run qemu-system-arm ({e}): install Debian's qemu-system-arm \
                 (scripts/install-deps.sh does)"
            )
        });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qemu") {
            break status;
        }
        if started.elapsed() > QEMU_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let out = reader.join().unwrap_or_default();
            panic!("the firmware ran for over {QEMU_LIMIT:?}; it printed:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().expect("read qemu's output");
    println!("{out}");
    (status.success(), out)
}

/// The line of `out` starting with `prefix`.
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line `{prefix}...` in:\n{out}"))
}

#[test]
fn two_nodes_on_the_chip_handshake_and_carry_datagrams() {
    let (ok, out) = boot(&build("firmware_pair"));
    assert!(line(&out, "handshake: ").starts_with("handshake: done"));
    for size in [64, 1400] {
        let l = line(&out, &format!("datagram {size} B: "));
        assert!(l.contains(" 20/20 round trips"), "{l}");
    }
    assert_eq!(
        line(&out, "carried: "),
        "carried: 40 datagrams to the peer, 40 back, 40 echoes, all intact: true"
    );
    assert_eq!(line(&out, "drops: "), "drops: 0");
    assert_eq!(out.lines().last(), Some("OK"), "{out}");
    assert!(ok, "QEMU's exit status is the firmware's verdict: failure");
}
