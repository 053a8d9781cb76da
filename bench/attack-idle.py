"""An idle-connection flood against a gateway process, measured.

Usage: python3 bench/attack-idle.py target/release/sio-gateway
Starts the gateway with 10,000 descriptors and an operations listener,
connects 50 websocket clients, floods the client port with 12,000 idle
TCP connections and 10 slowloris requests, and prints connections held
and refused, /health latency and the gateway's RSS before, during and
60 s after. Loopback only.
"""
import base64
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request

hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
print("client fd limit", hard)
GW = sys.argv[1]; P, O = 39111, 39112
proc = subprocess.Popen(["prlimit", "--nofile=10000:10000", GW, "--listen", f"127.0.0.1:{P}", "--ops-listen", f"127.0.0.1:{O}", "--log-format", "json"], stderr=subprocess.DEVNULL)
def rss():
    for l in open(f"/proc/{proc.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
def health():
    t = time.time(); urllib.request.urlopen(f"http://127.0.0.1:{O}/health", timeout=5).read(); return (time.time() - t) * 1000
def metric(name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{O}/metrics", timeout=5).read().decode()
    for l in text.splitlines():
        if l.startswith(name + " "): return l.split()[1]
time.sleep(0.5)
# Healthy websocket clients: handshake, join "/", answer pings.
def ws_client():
    s = socket.create_connection(("127.0.0.1", P))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    s.recv(4096)
    mask = b"\x01\x02\x03\x04"; payload = b"40"
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return s
healthy = [ws_client() for _ in range(50)]
time.sleep(0.5)
print("rss before KiB", rss(), "health ms", round(health(), 2))
base = rss()
# The flood: 12,000 idle TCP connections and 10 slowloris.
t0 = time.time(); opened = []
for i in range(12000):
    try:
        c = socket.socket(); c.setblocking(True); c.settimeout(5)
        c.bind((f"127.0.0.{2 + i % 200}", 0)); c.connect(("127.0.0.1", P)); opened.append(c)
    except OSError as e:
        print("connect failed", i, e); break
slow = []
for i in range(10):
    c = socket.create_connection(("127.0.0.1", P)); c.sendall(b"GET /health HTTP/1.1\r\n"); slow.append(c)
print("flood opened", len(opened), "in s", round(time.time() - t0, 2))
time.sleep(1)
held = refused = 0; refuse_ms = []
for c in opened:
    c.settimeout(0)
    try:
        d = c.recv(1); refused += 1
    except BlockingIOError: held += 1
    except OSError: refused += 1
print("held", held, "refused at once", refused)
print("during: rss KiB", rss(), "(+", rss() - base, ") health ms", round(health(), 2), "tcp", metric('sio_gateway_tcp_connections{listener="clients"}'), "over_cap", metric('sio_gateway_accept_errors_total{reason="over_cap"}'))
# Time to refuse one more.
t = time.time(); c = socket.create_connection(("127.0.0.1", P)); c.settimeout(5)
try: c.recv(1)
except OSError: pass
print("one more refused after ms", round((time.time() - t) * 1000, 2))
# Idle ones are closed at the header timeout (10 s), slowloris too.
t = time.time()
while metric('sio_gateway_tcp_connections{listener="clients"}') not in ("50", "51") and time.time() - t < 30:
    time.sleep(0.5)
print("idle and slow connections closed after s", round(time.time() - t + 1.3, 1), "tcp", metric('sio_gateway_tcp_connections{listener="clients"}'))
for c in opened + slow: c.close()
# Healthy clients: still connected (read pings, answer pong "3").
alive = 0
for s in healthy:
    s.settimeout(0)
    try:
        data = s.recv(65536)
        alive += 1 if data != b"" else 0
    except BlockingIOError: alive += 1
    except OSError: pass
print("healthy clients still connected", alive, "of", len(healthy))
time.sleep(60)
print("60 s after: rss KiB", rss(), "(+", rss() - base, ")", "health ms", round(health(), 2))
proc.terminate(); proc.wait()
