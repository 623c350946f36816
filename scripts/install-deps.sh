#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: the Rust
# target for the no_std build check, a nightly toolchain and cargo-fuzz for
# the fuzz crate, the programs the end-to-end tests drive and the peers
# the benchmark compares against (boringtun-cli by cargo install). Idempotent:
# it only calls rustup, cargo install or apt-get when something is missing,
# and fails (never skips) when it cannot get it.
set -euo pipefail
# ip, tc, dnsmasq and capsh live in sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

RUST_TARGETS=(thumbv7em-none-eabihf)
# Debian packages and one command each provides, to check for.
DEBS=(
  "iproute2:ip"
  "iproute2:tc"
  "iproute2:ss"
  "dnsmasq-base:dnsmasq"
  "dnsutils:dig"
  "socat:socat"
  "netcat-openbsd:nc"
  # runtime-mio/tests/netns.rs and push_outage.rs: the syslog sender
  "bsdutils:logger"
  "util-linux:setpriv"
  # runtime-mio/tests/control_access.rs: a temporary group for control_group
  "passwd:groupadd"
  "passwd:groupdel"
  "libcap2-bin:capsh"
  "procps:sysctl"
  # runtime-mio/tests/router.rs: ping through a router service, and Python
  # sockets for ECONNREFUSED and path MTU discovery.
  "iputils-ping:ping"
  "python3:python3"
  # runtime-mio/tests/router_l3.rs: curl from a Python http.server and an
  # iperf3 TCP run through an L3 exit.
  "curl:curl"
  "iperf3:iperf3"
  # runtime-mio/tests/systemd.rs: verifies contrib/systemd/sdt@.service
  # (systemd-analyze verify and security work offline, with no systemd as
  # PID 1, as in a container).
  "systemd:systemd-analyze"
  # runtime-mio/tests/completions_man.rs: each shell parses `sdt
  # completions SHELL`; mandoc lints `sdt man`.
  "bash:bash"
  "zsh:zsh"
  "fish:fish"
  "mandoc:mandoc"
  # tests/metrics.rs: `promtool check metrics` lints the scraped text. The
  # package is the whole Prometheus server (~95 MB; on a systemd host its
  # postinst starts prometheus.service on :9090); promtool ships only in it.
  "prometheus:promtool"
  # scripts/bench-netns.sh: the load generator, the relay and the two
  # userspace WireGuards it measures sdt against.
  "iperf3:iperf3"
  "python3:python3"
  "wireguard-tools:wg"
  "wireguard-go:wireguard-go"
  # runtime-smoltcp/tests/qemu.rs: the firmware examples boot on an
  # emulated Cortex-M4F (mps2-an386); the budget check measures sections
  # and symbols.
  "qemu-system-arm:qemu-system-arm"
  "binutils-arm-none-eabi:arm-none-eabi-size"
  "binutils-arm-none-eabi:arm-none-eabi-nm"
)

for t in "${RUST_TARGETS[@]}"; do
  if ! rustup target list --installed | grep -qx "$t"; then
    echo "install-deps: adding rust target $t"
    rustup target add "$t"
  fi
done

# The fuzz crate builds only with nightly Rust (libFuzzer's sanitizer
# coverage flags are unstable). The one `+nightly` names will do, however
# old; install one if there is none.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "install-deps: no nightly Rust toolchain: installing one"
  rustup toolchain install nightly --profile minimal ||
    { echo "install-deps: cannot install a nightly Rust toolchain (rustup toolchain install nightly failed)" >&2; exit 1; }
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
cargo +nightly fuzz --version >/dev/null 2>&1 ||
  { echo "install-deps: cargo +nightly fuzz still does not run" >&2; exit 1; }

missing=()
for entry in "${DEBS[@]}"; do
  pkg=${entry%%:*} cmd=${entry##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  # Without recommends: only the commands checked below are needed (and
  # `prometheus` would bring prometheus-node-exporter along).
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
for entry in "${DEBS[@]}"; do
  cmd=${entry##*:}
  command -v "$cmd" >/dev/null 2>&1 || { echo "install-deps: $cmd still missing" >&2; exit 1; }
done

# boringtun-cli (userspace WireGuard in Rust) is on crates.io only, for
# scripts/bench-netns.sh. cargo installs into ~/.cargo/bin.
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v boringtun-cli >/dev/null 2>&1; then
  echo "install-deps: cargo install boringtun-cli --locked"
  cargo install boringtun-cli --locked --quiet
fi
command -v boringtun-cli >/dev/null 2>&1 || { echo "install-deps: boringtun-cli still missing" >&2; exit 1; }
