#!/usr/bin/env bash
# Runs each fuzz target for a few seconds over its corpus: a smoke test,
# which ./test.sh runs. Needs nightly Rust and cargo-fuzz
# (scripts/install-deps.sh installs both).
#
#   fuzz/smoke.sh [SECONDS] [TARGET...]    # default: 10 seconds, every target
#
# New inputs go to a temporary directory, so the corpus in git is left as
# it is. A crash stops the script with a non-zero status; its input is in
# fuzz/artifacts/TARGET/. Targets run without a network when `unshare -rn`
# works (the config target would otherwise ask a name server to resolve
# the host names it makes up).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-10}
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(link_datagram handshake_responder ip_packet tun_offload config)
fi

nonet=()
if unshare -rn true 2>/dev/null; then
  nonet=(unshare -rn)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  # Build with the network (crates may need fetching), run without it.
  cargo +nightly fuzz build "$t"
  mkdir -p "$work/$t"
  extra=()
  if [ -f "$t.dict" ]; then
    extra=(-dict="$t.dict")
  fi
  "${nonet[@]}" cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}"
done
