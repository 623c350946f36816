//! `sdt demo`, the README's main-job command, works and says so.

use std::process::Command;

#[test]
fn demo_carries_every_service_and_reports_ok() {
    let out = Command::new(env!("CARGO_BIN_EXE_sdt"))
        .args(["demo", "--seconds", "0.2"])
        .output()
        .expect("run sdt demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("ok: every service carried its traffic"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1000 syslog lines") && stdout.contains("1000 received"),
        "{stdout}"
    );
    assert!(stdout.contains("100/100 one way, 100/100 back"), "{stdout}");
    assert!(
        stdout.contains("x dropped 1 datagram(s) from a stranger"),
        "{stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
