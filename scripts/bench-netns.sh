#!/usr/bin/env bash
# The namespace benchmark of issue 11 (sdt against plain veth, a socat relay,
# boringtun-cli and wireguard-go, with iperf3 UDP between two network
# namespaces). The work is done by bench-netns.py beside this file (Python:
# the rate search, JSON parsing and table are clearer there than in bash);
# this wrapper is the documented command. Run as root; --help lists options.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin:${CARGO_HOME:-$HOME/.cargo}/bin"
exec python3 "$(dirname "$0")/bench-netns.py" "$@"
