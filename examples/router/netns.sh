#!/bin/sh
# examples/router/netns.sh: runs the router example for real, as root, and shows
# traffic going through it. It makes two network namespaces, sdt-ex-x and sdt-ex-y,
# joined by a veth (10.99.254.1 in x, 10.99.254.2 in y, the addresses the example
# configs listen on), puts a "network behind the exit" (10.99.9.53 and
# 2001:db8:99::53 on its loopback device, with dnsmasq answering DNS there) in the
# exit's namespace, runs both nodes, and then from the entry's namespace:
#   dig    through the TUN device: answered (UDP to an allowed port);
#   dig    to a port the allow list does not name: no answer, counted not_allowed;
#   ping   (IPv4 and IPv6) through the socket exit: answered;
#   a UDP send to a closed port: refused at the sender (ICMP port unreachable);
#   ping -M do -s 1472 after tun_mtu is raised: Frag Needed with sdt's MTU is not
#     shown here (the default tun_mtu already fits one frame, so the kernel
#     refuses locally); runtime-mio/tests/router.rs shows it;
#   sdt status of both nodes.
# TCP (curl) does not go through router mode's socket exit, which carries UDP
# and ICMP echo; the L3 exit does: examples/router-l3/netns.sh shows curl, iperf3
# and ping through it.
#
#   sudo examples/router/netns.sh                  # the router example
#   sudo examples/router/netns.sh router-reverse   # its mirror image
#   SDT=target/debug/sdt sudo -E examples/router/netns.sh
#
# Needs iproute2, dnsmasq, dig (bind9-dnsutils), ping (iputils-ping) and python3. Everything it makes is removed
# when it ends.
set -eu

example=${1:-router}
here=$(cd "$(dirname "$0")/.." && pwd)/$example
SDT=${SDT:-$(command -v sdt || echo "$here/../../target/debug/sdt")}
X=sdt-ex-x
Y=sdt-ex-y
case $example in
router) entry=$X exit=$Y entry_cfg=x exit_cfg=y tun=sdt0 closed=52651 ;;
router-reverse) entry=$Y exit=$X entry_cfg=y exit_cfg=x tun=sdt1 closed=52751 ;;
*) echo "usage: $0 [router|router-reverse]" >&2; exit 2 ;;
esac
[ -x "$SDT" ] || { echo "no sdt binary at $SDT (set SDT=...)" >&2; exit 1; }
run_dir=$(mktemp -d)

cleanup() {
    for pid in $(cat "$run_dir"/*.pid 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    sleep 0.3
    ip netns del $X 2>/dev/null || true
    ip netns del $Y 2>/dev/null || true
    rm -rf "$run_dir"
}
trap cleanup EXIT INT TERM

in_ns() { ns=$1; shift; ip netns exec "$ns" "$@"; }

ip netns add $X
ip netns add $Y
ip -n $X link set lo up
ip -n $Y link set lo up
ip -n $X link add vx type veth peer name vy netns $Y
ip -n $X addr add 10.99.254.1/24 dev vx
ip -n $Y addr add 10.99.254.2/24 dev vy
# An IPv6 address on the entry's side, for the kernel to send IPv6 from.
ip -n $entry addr add 2001:db8:254::1/64 dev "$( [ $entry = $X ] && echo vx || echo vy )" nodad
ip -n $X link set vx up
ip -n $Y link set vy up

# The network behind the exit: its server's addresses on the exit's loopback.
ip -n $exit addr add 10.99.9.53/32 dev lo
ip -n $exit addr add 2001:db8:99::53/128 dev lo
ip netns exec $exit dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
    --listen-address=10.99.9.53 --listen-address=2001:db8:99::53 --port=53 \
    --address=/demo.example/192.0.2.99 --pid-file= >"$run_dir/dnsmasq.log" 2>&1 &
echo $! >"$run_dir/dnsmasq.pid"

# The exit pings from ICMP datagram sockets, which Linux opens only for the
# groups in this range (per namespace).
ip netns exec $exit sysctl -qw net.ipv4.ping_group_range="0 2147483647"

mkdir -p /run/sdt
ip netns exec $exit "$SDT" -v run -c "$here/$exit_cfg.toml" >"$run_dir/exit.log" 2>&1 &
echo $! >"$run_dir/exit.pid"
sleep 0.5
ip netns exec $entry "$SDT" -v run -c "$here/$entry_cfg.toml" >"$run_dir/entry.log" 2>&1 &
echo $! >"$run_dir/entry.pid"
for _ in $(seq 50); do
    in_ns $entry "$SDT" status -c "$here/$entry_cfg.toml" 2>/dev/null | grep -q "session up" && break
    sleep 0.2
done

step() { printf '\n$ %s\n' "$*"; }
step "ip route show dev $tun        # (entry) routes sdt installed"
in_ns $entry ip route show dev $tun
in_ns $entry ip -6 route show dev $tun
step "dig @10.99.9.53 demo.example  # (entry) UDP to an allowed port"
in_ns $entry dig +short +tries=2 +time=2 @10.99.9.53 demo.example
step "dig @2001:db8:99::53 demo.example"
in_ns $entry dig +short +tries=2 +time=2 @2001:db8:99::53 demo.example
step "dig -p 5353 @10.99.9.53 demo.example  # not in the allow list: no answer"
in_ns $entry dig +short +tries=1 +time=1 -p 5353 @10.99.9.53 demo.example || true
step "ping -c 3 10.99.9.53         # (entry) ICMP echo through the socket exit"
in_ns $entry ping -c 3 -i 0.2 -W 2 10.99.9.53
step "ping -6 -c 3 2001:db8:99::53"
in_ns $entry ping -6 -c 3 -i 0.2 -W 2 2001:db8:99::53
step "python3: UDP to 10.99.9.53:$closed (allowed), where nothing listens"
in_ns $entry python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("10.99.9.53", int(sys.argv[1]))); s.settimeout(2); s.send(b"anyone?")
try:
    s.recv(100)
except ConnectionRefusedError as e:
    print("refused:", e)
except socket.timeout:
    print("no answer")
' "$closed"
step "sdt status   # (entry)"
in_ns $entry "$SDT" status -c "$here/$entry_cfg.toml"
step "sdt status   # (exit)"
in_ns $exit "$SDT" status -c "$here/$exit_cfg.toml"
