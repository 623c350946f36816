#!/usr/bin/env python3
"""The namespace benchmark of issue 11: sdt against plain veth, a socat relay
and two userspace WireGuards, side by side in one run on one machine.

Two network namespaces joined by a veth pair; an iperf3 UDP server in one
(Y), the client in the other (X). For every path the highest rate with under
1% loss is searched at 1400 B and at 64 B payloads, then confirmed by 3 runs
of 4 s whose median is the figure (all configurable). The CPU time of the
tunnel's own processes (utime+stime from /proc/PID/stat) over the confirming
runs is reported too. See docs/performance.md, "Benchmark: bench-netns".

Python rather than bash: the search, the JSON parsing, the medians and the
table are a few lines each here and would be a tangle of jq and bc in bash;
the standard library is all it needs. scripts/bench-netns.sh runs it.

Needs root (namespaces, TUN devices), iperf3, socat, wg, wireguard-go and
boringtun-cli (scripts/install-deps.sh installs them all).
"""

import argparse
import base64
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "sdtbench-"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Addresses inside the two namespaces (nothing leaves them).
X_VETH, Y_VETH = "10.201.0.1", "10.201.0.2"
RELAY_ENTRY = "10.201.1.1"  # on X's loopback: where socat's and sdt forward's entry listen
ROUTER_TUN = "10.201.2.1"
BT_X, BT_Y = "10.201.3.1", "10.201.3.2"
WGGO_X, WGGO_Y = "10.201.4.1", "10.201.4.2"
IPERF_PORT = 5201
CLIENT_PORT = 5202  # the client's fixed UDP port for the socat relay (--cport)
# 1500 (veth) - 20 (IP) - 8 (UDP) - 32 (WireGuard): a 1400 B payload plus its
# 28 B of inner IP/UDP fits without fragmenting (wg-quick's 1420 would not).
WG_MTU = 1440

SIZES = (1400, 64)
PATHS = ["veth", "socat", "boringtun", "wireguard-go", "sdt-forward", "sdt-router"]
PEERS_PATH = "sdt-forward-peers"
# New clients a second through a forward service in front of dnsmasq, each a
# fresh source port with one query (issue 15): run by
# runtime-mio/tests/dns_rate.rs, which sets up its own namespaces; the
# benchmark offers each rate in turn and reports the highest with nothing
# refused.
DNS_PATH = "dns"
DNS_RATES = (2000, 5000, 8000, 10000, 15000)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    """A set-up step failed; the message says which."""


def run(cmd, timeout=30, check=True, env=None):
    """Runs cmd to completion; raises BenchError if it fails and check."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{' '.join(cmd)}: timed out after {timeout} s") from e
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


def cpu_ticks(pids):
    """utime+stime of the given processes (all their threads), in ticks."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the ")" of comm: state is field 3, utime 14, stime 15.
        total += int(fields[11]) + int(fields[12])
    return total


def machine_ticks():
    """(busy, total) ticks of all CPUs from /proc/stat: busy is everything
    but idle and iowait (steal included: time the host took is not ours)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def ticks_since(start):
    """(busy, total) ticks since machine_ticks() gave `start`."""
    return tuple(now - was for now, was in zip(machine_ticks(), start))


def busy_percent(ticks):
    """(busy, total) ticks as % of the whole machine (100 = every core busy)."""
    return 100 * ticks[0] / max(ticks[1], 1)


class Lab:
    """The two namespaces, everything started in them, and its cleanup.

    Every process is started in its own session so that it and its children
    can be ended by its process group; cleanup runs in reverse order of
    set-up, on success, failure, SIGINT, SIGTERM and SIGHUP alike."""

    def __init__(self, sdt, window):
        self.sdt = sdt
        self.window = window
        self.tag = str(os.getpid())
        self.x = f"{PREFIX}{self.tag}-x"
        self.y = f"{PREFIX}{self.tag}-y"
        self.dir = tempfile.mkdtemp(prefix="sdt-bench-netns-")
        self.undo = []  # (description, callable), run last first
        self.server = None

    # -- set-up and cleanup ------------------------------------------------

    def on_cleanup(self, what, fn):
        self.undo.append((what, fn))

    def cleanup(self):
        while self.undo:
            what, fn = self.undo.pop()
            try:
                fn()
            except Exception as e:  # cleanup goes on whatever failed
                log(f"bench-netns: cleanup {what}: {e}")

    def cleanup_to(self, mark):
        """Undoes everything set up after `mark` (a len(self.undo))."""
        while len(self.undo) > mark:
            what, fn = self.undo.pop()
            try:
                fn()
            except Exception as e:
                log(f"bench-netns: cleanup {what}: {e}")

    def start(self, ns, cmd, name, env=None):
        """Starts cmd in namespace ns; returns its Popen. Its output goes to
        a log file in the lab's directory, shown if it dies early."""
        path = os.path.join(self.dir, f"{name}.log")
        out = open(path, "w")
        full = ["ip", "netns", "exec", ns] + cmd
        p = subprocess.Popen(
            full, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )
        out.close()
        p.log_path = path
        p.label = name

        def stop():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=5)

        self.on_cleanup(f"process {name} ({p.pid})", stop)
        return p

    def died(self, p):
        """A BenchError for process p that exited, with its last log lines."""
        with open(p.log_path) as f:
            tail = f.read()[-2000:]
        return BenchError(f"{p.label} exited with {p.returncode}:\n{tail}")

    def ip(self, ns, *args):
        return run(["ip", "-n", ns] + list(args))

    def sh(self, ns, *cmd, **kw):
        return run(["ip", "netns", "exec", ns] + list(cmd), **kw)

    def setup(self):
        sweep_stale()
        for ns in (self.x, self.y):
            run(["ip", "netns", "add", ns])
            self.on_cleanup(f"namespace {ns}", lambda ns=ns: run(["ip", "netns", "del", ns]))
            self.ip(ns, "link", "set", "lo", "up")
            # Router replies arrive on the TUN from an address routed via
            # the veth for TCP: no reverse-path filter in the lab.
            self.sh(ns, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0")
        self.on_cleanup("work directory", lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.ip(self.x, "link", "add", "vx", "type", "veth", "peer", "name", "vy", "netns", self.y)
        self.ip(self.x, "addr", "add", f"{X_VETH}/24", "dev", "vx")
        self.ip(self.y, "addr", "add", f"{Y_VETH}/24", "dev", "vy")
        self.ip(self.x, "addr", "add", f"{RELAY_ENTRY}/32", "dev", "lo")
        self.ip(self.x, "link", "set", "vx", "up")
        self.ip(self.y, "link", "set", "vy", "up")
        self.start_server()

    def start_server(self):
        self.server = self.start(self.y, ["iperf3", "-s", "-p", str(IPERF_PORT)], "iperf3-server")
        self.wait_listening(self.y, self.server)

    def wait_listening(self, ns, p, where=None):
        """Waits until something in ns listens on TCP port IPERF_PORT (at
        address `where` if given), failing if process p exits first."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise self.died(p)
            match = f"sport = :{IPERF_PORT}" + (f" and src {where}" if where else "")
            ss = self.sh(ns, "ss", "-Htln", match, check=False).stdout
            if ss.strip():
                return
            time.sleep(0.05)
        raise BenchError(f"{p.label} did not start listening")

    def restart_server(self):
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            self.server.wait(timeout=5)
        self.start_server()

    # -- one iperf3 run ------------------------------------------------------

    def iperf(self, path, rate, size, secs=None, nbytes=None):
        """One iperf3 UDP run of path at offered rate (bit/s of payload; 0 =
        unlimited). Returns a dict with sent/received rates and loss, or
        None if iperf3 failed three times (the server is restarted between)."""
        cmd = ["ip", "netns", "exec", self.x, "iperf3", "-c", path.server, "-p", str(IPERF_PORT),
               "-u", "-b", str(int(rate)), "-l", str(size), "--json", "--connect-timeout", "3000"]
        if self.window:
            # The sockets' buffers on both ends, every path alike.
            cmd += ["-w", self.window]
        cmd += ["-n", str(nbytes)] if nbytes else ["-t", str(secs)]
        cmd += path.client_args
        limit = (secs or 1) + 15
        for attempt in range(3):
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
                d = json.loads(p.stdout)
            except (subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                err = f"{type(e).__name__}"
                d = None
            if d is not None and "error" not in d:
                end = d["end"]
                recv = end.get("sum_received", end["sum"])
                sent = end.get("sum_sent", end["sum"])
                secs_r = recv["seconds"] or 1e-9
                got = recv["packets"] - recv["lost_packets"]
                return {
                    "offered": rate,
                    "sent_bps": sent["bits_per_second"],
                    "recv_bps": recv["bits_per_second"],
                    "recv_pps": got / secs_r,
                    "packets": recv["packets"],
                    "received": got,
                    "loss": recv["lost_percent"],
                }
            if d is not None:
                err = d["error"]
            log(f"  iperf3 failed ({err}); restarting the server")
            time.sleep(0.5)
            self.restart_server()
        return None


def sweep_stale():
    """Deletes namespaces left by earlier runs whose process is gone."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for name in names:
        m = re.fullmatch(PREFIX + r"(\d+)-[xy]", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            run(["ip", "netns", "del", name], check=False)
    # The WireGuard control sockets such a run left (setup_wireguard names).
    try:
        socks = os.listdir("/var/run/wireguard")
    except OSError:
        return
    for name in socks:
        m = re.fullmatch(r"(?:bt|wg)(\d+)[xy]\.sock", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            os.unlink(os.path.join("/var/run/wireguard", name))


class Path:
    """A path under test: where the client sends, the tunnel processes."""

    def __init__(self, name, server, client_args=(), pids=()):
        self.name = name
        self.server = server
        self.client_args = list(client_args)
        self.pids = list(pids)
        self.note = ""


# -- the paths --------------------------------------------------------------

def setup_veth(lab):
    return Path("plain veth", Y_VETH)


def tcp_control_relay(lab):
    """iperf3's TCP control connection to the server over the veth, from
    RELAY_ENTRY:5201 in X, for the paths that carry only UDP from there."""
    p = lab.start(lab.x, ["socat", f"TCP-LISTEN:{IPERF_PORT},bind={RELAY_ENTRY},reuseaddr,fork",
                          f"TCP:{Y_VETH}:{IPERF_PORT}"], "tcp-control-relay")
    lab.wait_listening(lab.x, p, RELAY_ENTRY)


def setup_socat(lab):
    tcp_control_relay(lab)
    # Unconnected UDP sockets both ways, so nothing ends a relay between
    # runs; the client's port is fixed (--cport) so X's relay knows where to
    # send replies.
    a = lab.start(lab.x, ["socat", "-b", "65536",
                          f"UDP-DATAGRAM:{RELAY_ENTRY}:{CLIENT_PORT},bind={RELAY_ENTRY}:{IPERF_PORT}",
                          f"UDP-DATAGRAM:{Y_VETH}:7000,bind={X_VETH}:7001"], "socat-x")
    b = lab.start(lab.y, ["socat", "-b", "65536",
                          f"UDP-DATAGRAM:{X_VETH}:7001,bind={Y_VETH}:7000",
                          f"UDP-DATAGRAM:{Y_VETH}:{IPERF_PORT},bind={Y_VETH}:7002"], "socat-y")
    return Path("socat relay (plaintext)", RELAY_ENTRY, ["--cport", str(CLIENT_PORT)], [a.pid, b.pid])


def wg_keys():
    priv = run(["wg", "genkey"]).stdout.strip()
    pub = subprocess.run(["wg", "pubkey"], input=priv, capture_output=True, text=True,
                         check=True).stdout.strip()
    return priv, pub


def setup_wireguard(lab, kind):
    """A WireGuard pair, boringtun-cli or wireguard-go, configured with wg."""
    short = "bt" if kind == "boringtun" else "wg"
    ax, ay = (BT_X, BT_Y) if kind == "boringtun" else (WGGO_X, WGGO_Y)
    port = 51821 if kind == "boringtun" else 51822
    devs = {lab.x: f"{short}{lab.tag}x"[:15], lab.y: f"{short}{lab.tag}y"[:15]}
    keys = {ns: wg_keys() for ns in devs}
    procs = []
    os.makedirs("/var/run/wireguard", exist_ok=True)  # where both put their control socket
    for ns, dev in devs.items():
        sock = f"/var/run/wireguard/{dev}.sock"
        lab.on_cleanup(f"socket {sock}", lambda s=sock: os.path.exists(s) and os.unlink(s))
        if kind == "boringtun":
            cmd = [shutil.which("boringtun-cli") or "boringtun-cli", "--foreground",
                   "--disable-drop-privileges", dev]
        else:
            cmd = ["wireguard-go", "-f", dev]
        env = dict(os.environ, WG_LOG_LEVEL="error", LOG_LEVEL="error")
        procs.append(lab.start(ns, cmd, f"{kind}-{ns[-1]}", env=env))
    for ns, dev in devs.items():
        sock = f"/var/run/wireguard/{dev}.sock"
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            for p in procs:
                if p.poll() is not None:
                    raise lab.died(p)
            if time.monotonic() > deadline:
                raise BenchError(f"{kind}: no {sock} after 10 s")
            time.sleep(0.05)
    for ns, other, me, peer_addr, endpoint in (
        (lab.x, lab.y, ax, ay, Y_VETH), (lab.y, lab.x, ay, ax, X_VETH),
    ):
        dev = devs[ns]
        keyfile = os.path.join(lab.dir, f"{dev}.key")
        with open(keyfile, "w") as f:
            f.write(keys[ns][0] + "\n")
        os.chmod(keyfile, 0o600)
        lab.sh(ns, "wg", "set", dev, "private-key", keyfile, "listen-port", str(port),
               "peer", keys[other][1], "endpoint", f"{endpoint}:{port}",
               "allowed-ips", f"{peer_addr}/32")
        lab.ip(ns, "addr", "add", f"{me}/24", "dev", dev)
        lab.ip(ns, "link", "set", dev, "mtu", str(WG_MTU), "up")
    version = ""
    if kind == "boringtun":
        version = run([cmd[0], "--version"], check=False).stdout.strip()
        name = f"boringtun-cli {version.split()[-1] if version else ''}".strip()
    else:
        v = run(["dpkg-query", "-W", "-f", "${Version}", "wireguard-go"], check=False).stdout
        name = f"wireguard-go {v.split('-')[0]}".strip()
    return Path(name, ay, [], [p.pid for p in procs])


def sdt_key(lab):
    priv = run([lab.sdt, "genkey"]).stdout.strip()
    pub = subprocess.run([lab.sdt, "pubkey"], input=priv, capture_output=True, text=True,
                         check=True).stdout.strip()
    return priv, pub


def write(lab, name, text):
    path = os.path.join(lab.dir, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def node_config(lab, priv, listen, peer_name, peer_pub, endpoint, sock, services, extra_peers=""):
    return (
        f'private_key = "{priv}"\nlisten = "{listen}"\ncontrol_socket = "{sock}"\n\n'
        f'[[peer]]\nname = "{peer_name}"\npublic_key = "{peer_pub}"\n'
        f'endpoint = "{endpoint}"\nkeep_up = true\n\n{extra_peers}{services}'
    )


def idle_peers(n):
    """n peers that exist only in the config: random public keys (any 32
    bytes are a valid X25519 key) and no endpoint."""
    blocks = []
    for i in range(n):
        key = base64.b64encode(os.urandom(32)).decode()
        blocks.append(f'[[peer]]\nname = "idle{i}"\npublic_key = "{key}"\n\n')
    return "".join(blocks)


def start_sdt_pair(lab, label, port, x_service, y_service, extra_peers=0):
    """Starts node X (entry) and node Y (exit). Returns (processes, peers
    configured on Y). If Y refuses its peer count ("more than K peers"),
    starts again with what it accepts and says so."""
    (xk, xp), (yk, yp) = sdt_key(lab), sdt_key(lab)
    xsock = os.path.join(lab.dir, f"{label}-x.sock")
    ysock = os.path.join(lab.dir, f"{label}-y.sock")
    xcfg = write(lab, f"{label}-x.toml", node_config(
        lab, xk, f"{X_VETH}:{port}", "y", yp, f"{Y_VETH}:{port}", xsock, x_service))
    while True:
        ycfg = write(lab, f"{label}-y.toml", node_config(
            lab, yk, f"{Y_VETH}:{port}", "x", xp, f"{X_VETH}:{port}", ysock, y_service,
            idle_peers(extra_peers)))
        mark = len(lab.undo)
        y = lab.start(lab.y, [lab.sdt, "run", "-c", ycfg], f"{label}-y")
        refused = wait_control(lab, y, ysock)
        if refused is None:
            break
        m = re.search(r"more than (\d+) peers", refused)
        if not m or extra_peers == 0:
            raise BenchError(f"{label}: node Y exited:\n{refused}")
        lab.cleanup_to(mark)
        limit = int(m.group(1))
        log(f"  the daemon refuses {extra_peers + 1} peers (at most {limit}): "
            f"running with {limit - 1} idle peers instead")
        extra_peers = limit - 1
    x = lab.start(lab.x, [lab.sdt, "run", "-c", xcfg], f"{label}-x")
    refused = wait_control(lab, x, xsock)
    if refused is not None:
        raise BenchError(f"{label}: node X exited:\n{refused}")
    return [x, y], extra_peers + 1


def wait_control(lab, p, sock):
    """Waits for a node's control socket. None once it is there; the node's
    output if it exited instead."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if p.poll() is not None:
            with open(p.log_path) as f:
                return f.read()[-3000:]
        if os.path.exists(sock):
            return None
        time.sleep(0.05)
    raise BenchError(f"{p.label}: no control socket {sock} after 15 s")


def setup_sdt_forward(lab, extra_peers=0):
    tcp_control_relay(lab)
    label = "fwd" if extra_peers == 0 else "fwdpeers"
    port = 51830 if extra_peers == 0 else 51840
    x_svc = (f'[[service]]\nid = 1\npeer = "y"\nmode = "forward"\n'
             f'listen = "{RELAY_ENTRY}:{IPERF_PORT}"\n')
    y_svc = (f'[[service]]\nid = 1\npeer = "x"\nmode = "forward"\n'
             f'target = "{Y_VETH}:{IPERF_PORT}"\n')
    procs, peers = start_sdt_pair(lab, label, port, x_svc, y_svc, extra_peers)
    name = "sdt forward" if extra_peers == 0 else f"sdt forward, {peers} peers on Y"
    path = Path(name, RELAY_ENTRY, [], [p.pid for p in procs])
    path.peers = peers
    return path


def setup_sdt_router(lab):
    tun = f"sdt{lab.tag}r"[:15]
    x_svc = (f'[[service]]\nid = 1\npeer = "y"\nmode = "router"\ntun = "{tun}"\n'
             f'address = "{ROUTER_TUN}/24"\n')
    y_svc = (f'[[service]]\nid = 1\npeer = "x"\nmode = "router"\n'
             f'allow = ["{Y_VETH}:{IPERF_PORT}"]\n')
    procs, _ = start_sdt_pair(lab, "router", 51850, x_svc, y_svc)
    # iperf3's UDP to the server's port goes into the TUN; its TCP control
    # connection (router mode carries UDP only) and sdt's own link traffic
    # stay on the veth.
    lab.ip(lab.x, "route", "add", f"{Y_VETH}/32", "dev", tun, "src", ROUTER_TUN, "table", "201")
    lab.ip(lab.x, "rule", "add", "to", f"{Y_VETH}/32", "ipproto", "udp", "dport", str(IPERF_PORT),
           "lookup", "201", "priority", "201")
    lab.on_cleanup("router rule", lambda: lab.ip(lab.x, "rule", "del", "priority", "201"))
    for proto, dev in (("udp", tun), ("tcp", "vx")):
        got = lab.ip(lab.x, "route", "get", Y_VETH, "ipproto", proto, "dport", str(IPERF_PORT)).stdout
        if f" dev {dev} " not in got:
            raise BenchError(f"router: {proto} to {Y_VETH}:{IPERF_PORT} is routed as {got.strip()}")
    return Path("sdt router", Y_VETH, [], [p.pid for p in procs])


SETUPS = {
    "veth": setup_veth,
    "socat": setup_socat,
    "boringtun": lambda lab: setup_wireguard(lab, "boringtun"),
    "wireguard-go": lambda lab: setup_wireguard(lab, "wireguard-go"),
    "sdt-forward": setup_sdt_forward,
    "sdt-router": setup_sdt_router,
}


# -- measuring --------------------------------------------------------------

def figure(r, size):
    """The figure of a run: payload Mbit/s at 1400 B, kpps at 64 B."""
    return r["recv_bps"] / 1e6 if size == 1400 else r["recv_pps"] / 1e3


def describe(r, size):
    unit = "Mbit/s" if size == 1400 else "kpps"
    if r["offered"] == 0:
        off = "unlimited"
    elif size == 1400:
        off = f"{r['offered'] / 1e6:.1f} Mbit/s"
    else:
        off = f"{r['offered'] / (size * 8) / 1e3:.1f} kpps"
    return f"offered {off}: {figure(r, size):.1f} {unit}, loss {r['loss']:.2f}%"


def warm_up(lab, path):
    """Waits until the path carries datagrams (handshakes done)."""
    deadline = time.monotonic() + 20
    while True:
        r = lab.iperf(path, 1_000_000, 1000, nbytes=20_000)
        if r is not None and r["received"] > 0:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{path.name}: carries nothing after 20 s")
        time.sleep(0.5)


class Cost:
    """What a path's confirming runs cost: the tunnel processes' CPU (% of
    one core, and µs per datagram delivered), and how busy the whole machine
    was (% of all its cores): a machine near 100% busy is the limit, not
    the tunnel's design."""

    def __init__(self, cpu, ticks, delivered, machine):
        self.cpu = cpu
        self.us_per_datagram = 1e6 * ticks / CLK_TCK / delivered if delivered else 0.0
        self.machine = machine


def measure(lab, path, size, opts):
    """The highest offered rate with loss under opts.loss, confirmed by
    opts.runs runs: returns (median run, its Cost over those runs)."""
    def ok(r):
        return r is not None and r["loss"] < opts.loss

    def pause():  # lets queues drain and the server re-arm between runs
        time.sleep(0.2)

    if opts.quick:
        t0, c0, m0 = time.monotonic(), cpu_ticks(path.pids), machine_ticks()
        r = lab.iperf(path, 0, size, secs=opts.time)
        ticks = cpu_ticks(path.pids) - c0
        cpu = 100 * ticks / CLK_TCK / (time.monotonic() - t0)
        if r is None or r["received"] == 0:
            raise BenchError(f"{path.name}: carried nothing at {size} B")
        log(f"  {size} B quick: {describe(r, size)}")
        return r, Cost(cpu, ticks, r["received"], busy_percent(ticks_since(m0)))

    def trial(rate, what):
        """A search trial. On a shared machine a stall of the receiver
        loses datagrams at any rate, so a rate fails only when a second
        trial at it loses too: overload loses every time, stalls do not."""
        for attempt in range(2):
            pause()
            r = lab.iperf(path, rate, size, secs=opts.search_time)
            log(f"  {size} B {what} {describe(r, size) if r else 'failed'}")
            if ok(r):
                return r
            what = "again"
        return r

    probe = lab.iperf(path, 0, size, secs=opts.search_time)
    if probe is None:
        raise BenchError(f"{path.name}: iperf3 failed at {size} B")
    log(f"  {size} B probe {describe(probe, size)}")
    bits = size * 8
    hi = max(probe["sent_bps"], 1.0)
    lo = None
    if ok(probe):
        lo = hi  # the sender is the limit
    else:
        # Under overload a path may carry less than it can: start from what
        # it delivered and halve until a rate passes.
        c = max(probe["recv_pps"] * bits, hi / 256)
        while lo is None and c >= hi / 512:
            if ok(trial(c, "try  ")):
                lo = c
            else:
                hi = c
                c /= 2
        if lo is None:
            raise BenchError(f"{path.name}: no rate passes at {size} B")
        for _ in range(opts.steps):
            if hi / lo < 1 + opts.precision:
                break
            c = (lo * hi) ** 0.5
            if ok(trial(c, "step ")):
                lo = c
            else:
                hi = c
    rate = lo
    for attempt in range(3):
        runs = []
        c0 = cpu_ticks(path.pids)
        busy = 0.0
        machine = [0, 0]  # busy and total ticks over the runs, not the pauses
        for _ in range(opts.runs):
            pause()
            s, m = time.monotonic(), machine_ticks()
            r = lab.iperf(path, 0 if rate == probe["sent_bps"] and ok(probe) else rate, size,
                          secs=opts.time)
            busy += time.monotonic() - s
            machine = [t + d for t, d in zip(machine, ticks_since(m))]
            if r is not None:
                runs.append(r)
                log(f"  {size} B run   {describe(r, size)}")
        ticks = cpu_ticks(path.pids) - c0
        cpu = 100 * ticks / CLK_TCK / max(busy, 1e-9)
        if not runs:
            raise BenchError(f"{path.name}: every confirming run failed at {size} B")
        cost = Cost(cpu, ticks, sum(r["received"] for r in runs), busy_percent(machine))
        runs.sort(key=lambda r: figure(r, size))
        med = runs[len(runs) // 2]
        if statistics.median(r["loss"] for r in runs) < opts.loss or attempt == 2:
            med["lossy"] = not statistics.median(r["loss"] for r in runs) < opts.loss
            return med, cost
        rate = min(rate, med["sent_bps"]) * 0.93
        log(f"  {size} B median loss over {opts.loss}%: again 7% lower")


def fmt_ratio(v, ref):
    return f"{v / ref:.2f}" if ref else "-"


def table(results, peers_note):
    """Markdown table: figures and ratios to veth and the faster WireGuard."""
    by = {key: res for key, res in results}
    veth = by.get("veth")
    wgs = [by[k] for k in ("boringtun", "wireguard-go") if k in by]
    best = {size: max((w[size][0] for w in wgs), default=None) for size in SIZES}
    lines = ["| path | 1400 B Mbit/s | × veth | × best WG | 64 B kpps | × veth | × best WG "
             "| tunnel CPU % (1400 B / 64 B) | tunnel CPU µs per datagram | machine busy % |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, res in results:
        row = [res["name"]]
        for size in SIZES:
            v, lossy = res[size][0], res[size][2]
            row.append(f"{v:.1f}" + (" (loss ≥ threshold)" if lossy else ""))
            row.append(fmt_ratio(v, veth[size][0] if veth else None))
            row.append(fmt_ratio(v, best[size]))
        a, b = res[1400][1], res[64][1]
        row.append("-" if not res["pids"] else f"{a.cpu:.0f} / {b.cpu:.0f}")
        row.append("-" if not res["pids"] else
                   f"{a.us_per_datagram:.2f} / {b.us_per_datagram:.2f}")
        row.append(f"{a.machine:.0f} / {b.machine:.0f}")
        lines.append("| " + " | ".join(row) + " |")
    if peers_note:
        lines.append("")
        lines.append(peers_note)
    return "\n".join(lines)


def dns_rate(rate):
    """One dns_rate run at `rate` new clients a second for 3 s: (kept up,
    sent, answered, refused), parsed from the test's report (printed whether
    or not the test's own assertions pass, which they do not past capacity)."""
    env = dict(os.environ, SDT_DNS_RATE=f"rate={rate} seconds=3")
    out = subprocess.run(
        ["cargo", "test", "--release", "--locked", "-q", "-p", "sdt", "--test", "dns_rate",
         "--", "--nocapture", "--test-threads=1"],
        cwd=REPO, env=env, capture_output=True, text=True).stdout
    clients = re.search(r"^clients: Seen \{ sent: (\d+), answered: (\d+).*?\}, (\d+) new "
                        r"clients/s kept up", out, re.M)
    refused = re.search(r"^refused: entry (\d+), exit (\d+)", out, re.M)
    if not clients or not refused:
        raise BenchError(f"dns_rate at {rate}/s printed no report:\n{out[-2000:]}")
    sent, answered, kept = (int(clients.group(i)) for i in (1, 2, 3))
    return kept, sent, answered, int(refused.group(1)) + int(refused.group(2))


def dns_table(rates):
    """Offers each of `rates` in turn; the table, and the highest rate
    sustained (every query answered, nothing refused)."""
    rows = ["| offered new clients/s | kept up | answered | refused by sdt |",
            "|---|---|---|---|"]
    sustained = 0
    for rate in rates:
        log(f"  dns: {rate} new clients/s")
        kept, sent, answered, refused = dns_rate(rate)
        rows.append(f"| {rate} | {kept} | {answered} of {sent} | {refused} |")
        if refused == 0 and answered == sent:
            sustained = max(sustained, kept)
    rows.append("")
    rows.append(f"sdt forward sustained {sustained} new clients/s (one DNS query each, "
                "nothing refused, every query answered)")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(
        prog="bench-netns.sh",
        description="UDP throughput of sdt, veth, socat and userspace WireGuard between two "
                    "network namespaces (iperf3). Needs root.")
    ap.add_argument("--quick", action="store_true",
                    help="about a second per path and size, one run, no search: checks every "
                         "path carries datagrams (for ./test.sh)")
    ap.add_argument("--only", default="", metavar="PATHS",
                    help="comma-separated subset of: " + ",".join(PATHS + [PEERS_PATH, DNS_PATH])
                         + f" ({DNS_PATH}: new clients a second, not in --quick)")
    ap.add_argument("--peers", type=int, default=0, metavar="N",
                    help="also run sdt forward with N extra idle peers on the exit node "
                         "(capped to what the daemon accepts)")
    ap.add_argument("--runs", type=int, default=3, help="confirming runs, median taken (3)")
    ap.add_argument("--time", type=int, default=4, help="seconds per confirming run (4)")
    ap.add_argument("--search-time", type=int, default=2, help="seconds per search trial (2)")
    ap.add_argument("--steps", type=int, default=6, help="bisection steps at most (6)")
    ap.add_argument("--precision", type=float, default=0.05,
                    help="stop the search when hi/lo is within this (0.05)")
    ap.add_argument("--loss", type=float, default=1.0, help="loss threshold in percent (1.0)")
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    ap.add_argument("--sdt", default=os.path.join(REPO, target_dir, "release", "sdt"),
                    help="the sdt binary (default: target/release/sdt, or under "
                         "$CARGO_TARGET_DIR, built first)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    ap.add_argument("--window", default="4M", metavar="SIZE",
                    help="iperf3 -w, the socket buffers of client and server on every path "
                         "(4M; '' for the kernel's default, 208 KiB, which the bursts of any "
                         "batching sender overflow at high rates)")
    opts = ap.parse_args()
    if opts.quick:
        opts.runs, opts.time = 1, 1

    paths = [p for p in PATHS]
    if opts.peers > 0:
        paths.append(PEERS_PATH)
    if not opts.quick:
        paths.append(DNS_PATH)
    if opts.only:
        wanted = [p.strip() for p in opts.only.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in PATHS + [PEERS_PATH, DNS_PATH]]
        if unknown:
            ap.error(f"unknown path(s) {', '.join(unknown)}; known: "
                     + ", ".join(PATHS + [PEERS_PATH, DNS_PATH]))
        if DNS_PATH in wanted and DNS_PATH not in paths:
            paths.append(DNS_PATH)
        if PEERS_PATH in wanted and opts.peers <= 0:
            ap.error(f"{PEERS_PATH} needs --peers N")
        paths = [p for p in paths if p in wanted]
    if os.geteuid() != 0:
        sys.exit("bench-netns: needs root (network namespaces, TUN devices)")
    missing = [t for t in ("ip", "iperf3", "socat", "wg", "wireguard-go", "boringtun-cli")
               if shutil.which(t) is None]
    needed = {"socat": "socat", "boringtun": "boringtun-cli", "wireguard-go": "wireguard-go"}
    missing = [t for t in missing if t in ("ip", "iperf3") or
               any(needed.get(p) == t for p in paths) or
               (t == "wg" and ("boringtun" in paths or "wireguard-go" in paths))]
    if missing:
        sys.exit(f"bench-netns: missing {', '.join(missing)}: run scripts/install-deps.sh")
    if any(p.startswith("sdt") for p in paths) and not opts.no_build:
        log("bench-netns: cargo build --release -p sdt")
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "sdt", "--quiet"],
                       cwd=REPO, check=True)

    lab = Lab(opts.sdt, opts.window)

    def on_signal(signum, _frame):
        raise SystemExit(f"bench-netns: stopped by signal {signum}")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    results = []
    peers_note = ""
    started = time.monotonic()
    dns = dns_table(DNS_RATES) if DNS_PATH in paths else ""
    paths = [p for p in paths if p != DNS_PATH]
    try:
        lab.setup()
        for key in paths:
            mark = len(lab.undo)
            log(f"== {key}")
            if key == PEERS_PATH:
                path = setup_sdt_forward(lab, opts.peers)
            else:
                path = SETUPS[key](lab)
            warm_up(lab, path)
            res = {"name": path.name, "pids": path.pids}
            for size in SIZES:
                med, cpu = measure(lab, path, size, opts)
                res[size] = (figure(med, size), cpu, med.get("lossy", False))
            if key == PEERS_PATH:
                res["peers"] = path.peers
            results.append((key, res))
            lab.cleanup_to(mark)
    finally:
        lab.cleanup()
    by = dict(results)
    if PEERS_PATH in by and "sdt-forward" in by:
        one, many = by["sdt-forward"], by[PEERS_PATH]
        peers_note = (f"sdt forward with {many['peers']} peers on the exit node carries "
                      f"{many[1400][0] / one[1400][0]:.2f}x (1400 B) and "
                      f"{many[64][0] / one[64][0]:.2f}x (64 B) of what it carries with 1"
                      + ("" if many["peers"] == opts.peers + 1 else
                         f" (asked for {opts.peers + 1}; the daemon accepts at most "
                         f"{many['peers']})"))
    mode = "quick: 1 unlimited run of %d s per size, no search" % opts.time if opts.quick else (
        f"highest rate with under {opts.loss}% loss, median of {opts.runs} runs of {opts.time} s")
    window = f"iperf3 -w {opts.window}" if opts.window else "iperf3's default socket buffers"
    print(f"bench-netns ({mode}; {window}; {time.monotonic() - started:.0f} s; "
          f"tunnel CPU: the tunnel's processes, 100% = one core; machine busy: all "
          f"{os.cpu_count()} cores, 100% = all busy)")
    if results:
        print(table(results, peers_note))
    if dns:
        print(dns)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"bench-netns: {e}")
