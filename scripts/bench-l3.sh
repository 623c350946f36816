#!/bin/sh
# scripts/bench-l3.sh: TCP throughput through router mode's L3 exit against the
# same route without sdt, in one run. Three namespaces: an entry e, an exit x that
# forwards (ip_forward = 1), a server s running iperf3. The server has two
# addresses: 10.98.7.2, reached from e over the veths through x's kernel (plain
# routing, the reference), and 10.98.9.2, reached through sdt (e's TUN device, the
# link over the same veth, x's L3 exit TUN device, x's kernel). iperf3 runs TCP
# from e to each for SECONDS, one after the other; the figures and their ratio are
# printed (a figure, not a pass or fail).
#
# Each of ROUNDS rounds measures the plain route, then sdt with TUN offloads on
# (`tun_offload`, the default) and off, both nodes restarted for each, in an order
# that alternates from round to round so that a change in the machine's load
# lands on both; the medians and the ratio on / off follow, with the load average.
#
#   sudo scripts/bench-l3.sh [SECONDS [ROUNDS]]   # default 5 s, 1 round; release build
#   SDT=target/debug/sdt sudo -E scripts/bench-l3.sh
#   REVERSE=1 sudo -E scripts/bench-l3.sh 5 3      # s sends to e (iperf3 -R)
#
# Needs iproute2, iperf3 and python3. Everything it makes is removed when it ends.
set -eu

secs=${1:-5}
rounds=${2:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
SDT=${SDT:-${CARGO_TARGET_DIR:-$root/target}/release/sdt}
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
cat >"$dir/e.toml.in" <<CONF
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
tun_offload = OFFLOAD
address = "10.98.8.2/24"
routes = ["10.98.9.2/32"]
CONF
cat >"$dir/x.toml.in" <<CONF
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
tun_offload = OFFLOAD
address = "10.98.8.1/24"
peer_addresses = ["10.98.8.2/32"]
allow = ["tcp://10.98.9.2:5202"]
CONF

ip netns exec $S iperf3 -s -B 10.98.7.2 >/dev/null 2>&1 & echo $! >"$dir/iperf-a.pid"
ip netns exec $S iperf3 -s -B 10.98.9.2 -p 5202 >/dev/null 2>&1 & echo $! >"$dir/iperf-b.pid"
sleep 1

# Starts both nodes with tun_offload = $1 and waits for the session.
start_sdt() {
    for n in e x; do sed "s/OFFLOAD/$1/" "$dir/$n.toml.in" >"$dir/$n.toml"; done
    ip netns exec $X "$SDT" run -c "$dir/x.toml" 2>"$dir/x-$1.log" & echo $! >"$dir/x.pid"
    sleep 0.5
    ip netns exec $E "$SDT" run -c "$dir/e.toml" 2>"$dir/e-$1.log" & echo $! >"$dir/e.pid"
    for _ in $(seq 50); do
        ip netns exec $E "$SDT" status -c "$dir/e.toml" 2>/dev/null | grep -q "session up" && break
        sleep 0.2
    done
    sleep 0.5
}
stop_sdt() {
    for n in e x; do
        pid=$(cat "$dir/$n.pid"); kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        rm -f "$dir/$n.pid"
    done
}

reverse=
[ "${REVERSE:-0}" = 0 ] || reverse=-R
mbps() {
    in_ns $E iperf3 -c "$1" -p "$2" -t "$secs" $reverse -J | python3 -c \
        'import json, sys; print("%.0f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e6))'
}
through_sdt() {
    start_sdt "$1"
    r=$(mbps 10.98.9.2 5202)
    if [ "$1" = true ]; then
        # What each device did: offloads in use, super-packets split and written.
        ip netns exec $E "$SDT" status -c "$dir/e.toml" | grep "TUN offloads" | sed 's/^ */    entry: /' >&2
        ip netns exec $X "$SDT" status -c "$dir/x.toml" | grep "TUN offloads" | sed 's/^ */    exit:  /' >&2
    fi
    stop_sdt
    echo "$r"
}

if [ -n "$reverse" ]; then way="s -> x (forwarding) -> e (iperf3 -R)"; else way="e -> x (forwarding) -> s"; fi
echo "iperf3 TCP, $secs s, $way, $rounds round(s):"
: >"$dir/veth"; : >"$dir/on"; : >"$dir/off"
i=0
while [ $i -lt "$rounds" ]; do
    veth=$(mbps 10.98.7.2 5201); echo "$veth" >>"$dir/veth"
    if [ $((i % 2)) -eq 0 ]; then order="true false"; else order="false true"; fi
    line="  round $((i + 1)): plain veth route $veth Mbit/s"
    for o in $order; do
        r=$(through_sdt $o)
        if [ $o = true ]; then echo "$r" >>"$dir/on"; line="$line, offload on $r";
        else echo "$r" >>"$dir/off"; line="$line, offload off $r"; fi
    done
    echo "$line"
    i=$((i + 1))
done
python3 - "$dir" <<'PY'
import statistics, sys
d = sys.argv[1]
get = lambda n: [float(x) for x in open(f"{d}/{n}").read().split()]
veth, on, off = get("veth"), get("on"), get("off")
m = statistics.median
print("  medians: plain veth route %.0f Mbit/s, through sdt's L3 exit: offload on %.0f, off %.0f Mbit/s"
      % (m(veth), m(on), m(off)))
print("  ratio offload on / off:  %.2f (per round: %s)"
      % (m(on) / m(off), ", ".join("%.2f" % (a / b) for a, b in zip(on, off))))
print("  ratio (L3 exit / veth):  on %.2f, off %.2f" % (m(on) / m(veth), m(off) / m(veth)))
print("  load average: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
PY
