#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need,
# then checks formatting, lints, the no_std build and runs every test.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")"

./scripts/install-deps.sh

# A RUSTFLAGS from the environment replaces the rustflags of
# .cargo/config.toml: keep poly1305's fast backend then too (see there).
if [[ -n "${RUSTFLAGS:-}" ]]; then
  export RUSTFLAGS="$RUSTFLAGS --cfg poly1305_force_soft"
fi

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# sdt-bench builds only with the `bench` feature, which the line above
# leaves off: lint it too, or it rots unseen.
cargo clippy -p sdt --all-targets --features bench --locked -- -D warnings

echo "== docs (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

echo "== no_std, no heap: sdt-core for thumbv7em-none-eabihf"
cargo build --locked -p sdt-core --target thumbv7em-none-eabihf
# Without its push and router modes (cargo features, default on), as the
# firmware examples build it: it must build, lint clean and refuse those
# modes' services.
cargo build --locked -p sdt-core --target thumbv7em-none-eabihf --no-default-features
cargo clippy --locked -p sdt-core --all-targets --no-default-features -- -D warnings
cargo test --locked -p sdt-core --no-default-features --lib modes_left_out_of_the_build

echo "== no_std, no heap: sdt-smoltcp and its firmware example for thumbv7em-none-eabihf"
cargo build --locked -p sdt-smoltcp --target thumbv7em-none-eabihf --no-default-features
cargo build --locked -p sdt-smoltcp --target thumbv7em-none-eabihf --no-default-features \
  --features push,router
# The same flags as runtime-smoltcp/tests/qemu.rs, which boots them.
cargo build --locked --profile firmware -p sdt-smoltcp --example firmware --example firmware_pair \
  --target thumbv7em-none-eabihf --no-default-features
# The networked firmware needs the Ethernet medium; built apart, so that the
# feature does not reach the budgeted firmware (tests/board.rs boots it).
cargo build --locked --profile firmware -p sdt-smoltcp --example firmware_net \
  --target thumbv7em-none-eabihf --no-default-features --features ethernet
cargo clippy --locked --profile firmware -p sdt-smoltcp --example firmware_net \
  --target thumbv7em-none-eabihf --no-default-features --features ethernet -- -D warnings

echo "== tests"
cargo test --workspace --locked

# The fuzz crate is outside the workspace (it needs nightly), so nothing
# above builds it: build every target here, then run each for a few seconds
# over its corpus, or it rots unseen (issue 10, finding 4).
echo "== fuzz crate: build every target (nightly), then fuzz/smoke.sh"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "test.sh: no nightly Rust toolchain, which the fuzz crate needs" \
    "(scripts/install-deps.sh installs one with rustup): failing" >&2
  exit 1
fi
# cargo fuzz has no --locked: fail here if fuzz/Cargo.lock is out of date.
cargo +nightly fetch --locked --manifest-path fuzz/Cargo.toml
(cd fuzz && cargo +nightly fuzz build)
fuzz/smoke.sh 5

# `cargo install --path runtime-mio` must install `sdt` and nothing else
# (sdt-bench needs --features bench). The shared target directory and the
# dev profile reuse what the tests built.
echo "== cargo install --path runtime-mio installs sdt alone"
install_root=$(mktemp -d)
CARGO_TARGET_DIR=target cargo install --locked --debug --quiet --path runtime-mio \
  --root "$install_root"
installed=$(ls "$install_root/bin")
if [[ "$installed" != sdt ]]; then
  echo "test.sh: cargo install --path runtime-mio installed: $installed" >&2
  exit 1
fi
"$install_root/bin/sdt" --version
rm -rf "$install_root"

# The README's main command, exactly as README.md writes it (the first
# `cargo run` line), so the two cannot drift apart.
main_command=$(grep -m1 -E '^cargo run' README.md)
echo "== README's main command: $main_command"
bash -c "$main_command"

# sdt-bench's round trips, briefly (about 2 s), so that its relays and
# socat baseline cannot rot: it fails if a path answers nothing or socat is
# missing, and asserts nothing about speed.
echo "== sdt-bench --only latency (brief)"
cargo run --release --locked --quiet -p sdt --features bench --bin sdt-bench -- \
  --only latency --pings 500

# The namespace benchmark in its quick mode (about 2 s per path), so that it
# cannot rot: it asserts nothing about speed, only that every path carries
# datagrams. The full run is documented in docs/performance.md.
echo "== namespace benchmark, quick mode (scripts/bench-netns.sh --quick)"
./scripts/bench-netns.sh --quick
