//! Building the firmware examples for the board: `thumbv7em-none-eabihf`
//! in the workspace's `firmware` profile, with the same flags as test.sh
//! (so they are usually built already).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "thumbv7em-none-eabihf";
/// The workspace profile the firmware is built and budgeted in
/// (Cargo.toml, `[profile.firmware]`).
const PROFILE: &str = "firmware";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lies in the workspace")
        .to_path_buf()
}

/// Builds `example` for the board, with the crate's `features` on top of
/// `--no-default-features`, and returns the ELF file.
pub fn build(example: &str, features: &[&str]) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace())
        .args([
            "build",
            "--locked",
            "--profile",
            PROFILE,
            "-p",
            "sdt-smoltcp",
        ])
        .args([
            "--example",
            example,
            "--target",
            TARGET,
            "--no-default-features",
        ]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let status = command.status().expect("run cargo build");
    assert!(status.success(), "cargo build --example {example} failed");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let elf = target_dir
        .join(TARGET)
        .join(PROFILE)
        .join("examples")
        .join(example);
    assert!(elf.exists(), "no firmware at {}", elf.display());
    elf
}

/// Runs a binutils program of the ARM toolchain on `elf`.
pub fn binutils(program: &str, args: &[&str], elf: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .arg(elf)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program} ({e}): install Debian's binutils-arm-none-eabi \
                 (scripts/install-deps.sh does)"
            )
        });
    assert!(out.status.success(), "{program} failed");
    String::from_utf8(out.stdout).expect("binutils print text")
}

/// Section sizes by name, from `arm-none-eabi-size -A`.
pub fn sections(elf: &Path) -> Vec<(String, u64)> {
    binutils("arm-none-eabi-size", &["-A"], elf)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (name, size) = (f.next()?, f.next()?.parse().ok()?);
            name.starts_with('.').then(|| (name.to_string(), size))
        })
        .collect()
}
