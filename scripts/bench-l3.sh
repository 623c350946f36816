#!/bin/sh
# scripts/bench-l3.sh: TCP throughput through router mode's L3 exit against the
# same route without sdt, in one run. Three namespaces: an entry e, an exit x that
# forwards (ip_forward = 1), a server s running iperf3. The server has two
# addresses: 10.98.7.2, reached from e over the veths through x's kernel (plain
# routing, the reference), and 10.98.9.2, reached through sdt (e's TUN device, the
# link over the same veth, x's L3 exit TUN device, x's kernel). iperf3 runs TCP
# from e to each for --time seconds, one after the other; the figures and their
# ratio are printed (a figure, not a pass or fail).
#
#   sudo scripts/bench-l3.sh [SECONDS]            # default 5; release build
#   SDT=target/debug/sdt sudo -E scripts/bench-l3.sh
#
# Needs iproute2, iperf3 and python3. Everything it makes is removed when it ends.
set -eu

secs=${1:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
SDT=${SDT:-$root/target/release/sdt}
[ -x "$SDT" ] || { echo "no sdt binary at $SDT (cargo build --release -p sdt, or set SDT=...)" >&2; exit 1; }
E=sdt-bl3-e X=sdt-bl3-x S=sdt-bl3-s
dir=$(mktemp -d)

cleanup() {
    for pid in $(cat "$dir"/*.pid 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    sleep 0.3
    for ns in $E $X $S; do ip netns del $ns 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
in_ns() { ns=$1; shift; ip netns exec "$ns" "$@"; }

for ns in $E $X $S; do ip netns add $ns; ip -n $ns link set lo up; done
ip -n $E link add ve type veth peer name vxe netns $X
ip -n $X link add vxs type veth peer name vs netns $S
ip -n $E addr add 10.98.254.1/24 dev ve
ip -n $X addr add 10.98.254.2/24 dev vxe
ip -n $X addr add 10.98.7.1/24 dev vxs
ip -n $S addr add 10.98.7.2/24 dev vs
ip -n $S addr add 10.98.9.2/32 dev vs
for l in "$E ve" "$X vxe" "$X vxs" "$S vs"; do set -- $l; ip -n "$1" link set "$2" up; done
in_ns $X sysctl -qw net.ipv4.ip_forward=1
ip -n $E route add 10.98.7.0/24 via 10.98.254.2
ip -n $X route add 10.98.9.2/32 dev vxs
ip -n $S route add 10.98.254.0/24 via 10.98.7.1
ip -n $S route add 10.98.8.0/24 via 10.98.7.1

ke=$("$SDT" genkey) kx=$("$SDT" genkey)
pe=$(echo "$ke" | "$SDT" pubkey) px=$(echo "$kx" | "$SDT" pubkey)
umask 077
cat >"$dir/e.toml" <<CONF
private_key = "$ke"
listen = "10.98.254.1:52901"
control_socket = "$dir/e.sock"
[[peer]]
name = "x"
public_key = "$px"
endpoint = "10.98.254.2:52902"
keep_up = true
[[service]]
id = 1
peer = "x"
mode = "router"
exit = "tun"
tun = "sdtbl3e"
address = "10.98.8.2/24"
routes = ["10.98.9.2/32"]
CONF
cat >"$dir/x.toml" <<CONF
private_key = "$kx"
listen = "10.98.254.2:52902"
control_socket = "$dir/x.sock"
[[peer]]
name = "e"
public_key = "$pe"
[[service]]
id = 1
peer = "e"
mode = "router"
exit = "tun"
tun = "sdtbl3x"
address = "10.98.8.1/24"
peer_addresses = ["10.98.8.2/32"]
allow = ["tcp://10.98.9.2:5202"]
CONF

ip netns exec $S iperf3 -s -B 10.98.7.2 >/dev/null 2>&1 & echo $! >"$dir/iperf-a.pid"
ip netns exec $S iperf3 -s -B 10.98.9.2 -p 5202 >/dev/null 2>&1 & echo $! >"$dir/iperf-b.pid"
ip netns exec $X "$SDT" run -c "$dir/x.toml" 2>"$dir/x.log" & echo $! >"$dir/x.pid"
sleep 0.5
ip netns exec $E "$SDT" run -c "$dir/e.toml" 2>"$dir/e.log" & echo $! >"$dir/e.pid"
for _ in $(seq 50); do
    ip netns exec $E "$SDT" status -c "$dir/e.toml" 2>/dev/null | grep -q "session up" && break
    sleep 0.2
done
sleep 0.5

mbps() {
    in_ns $E iperf3 -c "$1" -p "$2" -t "$secs" -J | python3 -c \
        'import json, sys; print("%.0f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e6))'
}
veth=$(mbps 10.98.7.2 5201)
l3=$(mbps 10.98.9.2 5202)
echo "iperf3 TCP, $secs s, e -> x (forwarding) -> s:"
echo "  plain veth route:         $veth Mbit/s"
echo "  through sdt's L3 exit:    $l3 Mbit/s"
python3 -c "print('  ratio (L3 exit / veth):  %.2f' % ($l3 / $veth))"
