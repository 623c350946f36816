#!/bin/sh
# examples/router-l3/netns.sh: runs the L3 exit example for real, as root, and shows
# TCP going through it. It makes three network namespaces: sdt-l3-x (the entry,
# 10.99.254.1), sdt-l3-y (the exit, 10.99.254.2, and 10.99.7.1 towards the server)
# and sdt-l3-s (a server, 10.99.7.80, running Python's http.server and iperf3),
# turns on forwarding in the exit's namespace, gives the server a route back to the
# tunnel addresses (10.99.8.0/24) via the exit, so no NAT is needed, runs both
# nodes, and then from the entry's namespace:
#   curl     a page from http.server (TCP port 8000, allowed): fetched;
#   iperf3   a TCP run to the server (port 5201, allowed);
#   ping     the server: answered;
#   curl     port 8001 (not in the allow list): refused at the exit, counted not_allowed;
#   sdt status of both nodes.
# With NAT instead of the route back, masquerade 10.99.8.0/24 at the exit (README,
# Router mode, "The L3 exit").
#
#   sudo examples/router-l3/netns.sh
#   SDT=target/debug/sdt sudo -E examples/router-l3/netns.sh
#
# Needs iproute2, curl, iperf3, ping (iputils-ping) and python3. Everything it makes
# is removed when it ends.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
SDT=${SDT:-$(command -v sdt || echo "$here/../../target/debug/sdt")}
X=sdt-l3-x
Y=sdt-l3-y
S=sdt-l3-s
[ -x "$SDT" ] || { echo "no sdt binary at $SDT (set SDT=...)" >&2; exit 1; }
run_dir=$(mktemp -d)

cleanup() {
    for pid in $(cat "$run_dir"/*.pid 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    sleep 0.3
    for ns in $X $Y $S; do ip netns del $ns 2>/dev/null || true; done
    rm -rf "$run_dir"
}
trap cleanup EXIT INT TERM

in_ns() { ns=$1; shift; ip netns exec "$ns" "$@"; }

for ns in $X $Y $S; do
    ip netns add $ns
    ip -n $ns link set lo up
done
ip -n $X link add vx type veth peer name vy netns $Y
ip -n $X addr add 10.99.254.1/24 dev vx
ip -n $Y addr add 10.99.254.2/24 dev vy
ip -n $Y link add vys type veth peer name vs netns $S
ip -n $Y addr add 10.99.7.1/24 dev vys
ip -n $S addr add 10.99.7.80/24 dev vs
for link in "$X vx" "$Y vy" "$Y vys" "$S vs"; do
    set -- $link
    ip -n "$1" link set "$2" up
done

# The exit's kernel routes the entry's packets on; the server answers the tunnel
# addresses via the exit.
in_ns $Y sysctl -qw net.ipv4.ip_forward=1
ip -n $S route add 10.99.8.0/24 via 10.99.7.1

mkdir -p "$run_dir/www"
echo "hello through the L3 exit" >"$run_dir/www/index.html"
ip netns exec $S python3 -m http.server 8000 --bind 10.99.7.80 --directory "$run_dir/www" \
    >"$run_dir/http.log" 2>&1 &
echo $! >"$run_dir/http.pid"
ip netns exec $S iperf3 -s -B 10.99.7.80 >"$run_dir/iperf3.log" 2>&1 &
echo $! >"$run_dir/iperf3.pid"

mkdir -p /run/sdt
ip netns exec $Y "$SDT" -v run -c "$here/y.toml" >"$run_dir/exit.log" 2>&1 &
echo $! >"$run_dir/exit.pid"
sleep 0.5
ip netns exec $X "$SDT" -v run -c "$here/x.toml" >"$run_dir/entry.log" 2>&1 &
echo $! >"$run_dir/entry.pid"
for _ in $(seq 50); do
    ip netns exec $X "$SDT" status -c "$here/x.toml" 2>/dev/null | grep -q "session up" && break
    sleep 0.2
done

step() { printf '\n$ %s\n' "$*"; }
step "ip route show dev sdt2         # (entry) routes sdt installed"
in_ns $X ip route show dev sdt2
step "curl http://10.99.7.80:8000/   # (entry) TCP through the L3 exit"
in_ns $X curl -sS --max-time 10 http://10.99.7.80:8000/
step "iperf3 -c 10.99.7.80 -n 20M    # (entry) a TCP run"
in_ns $X iperf3 -c 10.99.7.80 -n 20M
step "ping -c 3 10.99.7.80"
in_ns $X ping -c 3 -i 0.2 -W 2 10.99.7.80
step "curl http://10.99.7.80:8001/   # not in the allow list: refused at the exit"
in_ns $X curl -sS --max-time 2 http://10.99.7.80:8001/ || true
step "sdt status   # (entry)"
in_ns $X "$SDT" status -c "$here/x.toml"
step "sdt status   # (exit)"
in_ns $Y "$SDT" status -c "$here/y.toml"
