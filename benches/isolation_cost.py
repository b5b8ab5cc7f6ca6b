#!/usr/bin/env python3
"""What isolating browsers costs a capture: the same daemon binary, run as an unprivileged user
(as the systemd unit runs it), in one run, on one page, in three settings: browsers on the host's
network without Chromium's sandbox (the naive baseline), in their own network namespace
(`chromium.network_isolation`), and in it with the sandbox (`chromium.sandbox`, the default for
a non-root daemon). Prints captures/s and CPU per capture (the daemon's whole process tree) for
each, and the ratios to the baseline. `make bench-isolation`.

Needs root (to start the daemon as `nobody`), redis-server and Chromium. Knobs: SANDBOX_CAPTURES
(default 60 per setting and round), SANDBOX_CONCURRENCY (default 4), SANDBOX_ROUNDS (default 2;
each setting's best round is kept), SANDBOX_LOG (the daemons' logs), SHOTFARM_BIN (default the
release binary, else the debug one)."""
import concurrent.futures, os, shutil, socket, subprocess, sys, tempfile, threading, time
import http.server, urllib.error, urllib.parse, urllib.request

N = int(os.environ.get("SANDBOX_CAPTURES", "60"))
C = int(os.environ.get("SANDBOX_CONCURRENCY", "4"))
ROUNDS = int(os.environ.get("SANDBOX_ROUNDS", "2"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SHOTFARM_BIN") or next(
    (p for p in (f"{ROOT}/target/release/shotfarm", f"{ROOT}/target/debug/shotfarm") if os.path.exists(p)), None)
NOBODY = 65534
PAGE = b"<!doctype html><title>landing</title><body style='font:16px sans-serif'>" + b"".join(
    b"<section><h2>Section %d</h2><p>" % i + b"Lorem ipsum dolor sit amet. " * 40 + b"</p></section>" for i in range(30)) + b"</body>"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *a):
        pass


def tree_cpu_seconds(root_pid):
    """CPU (user + system) of root_pid and every descendant still running, plus what reaped
    children used."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read()
                fields = st[st.rfind(")") + 2:].split()
                children.setdefault(int(fields[1]), []).append(int(d))
            except OSError:
                pass
    total, stack, tick = 0.0, [root_pid], os.sysconf("SC_CLK_TCK")
    while stack:
        pid = stack.pop()
        try:
            st = open(f"/proc/{pid}/stat").read()
            f = st[st.rfind(")") + 2:].split()
            total += sum(int(x) for x in f[11:15]) / tick
        except OSError:
            pass
        stack.extend(children.get(pid, []))
    return total


SETTINGS = [
    ("host network, no sandbox", "false", "off"),
    ("own network, no sandbox", "true", "off"),
    ("own network + sandbox", "true", "on"),
]


def run(isolation, sandbox, redis_url, key, site_url):
    home = tempfile.mkdtemp(prefix="shotfarm-isolation-bench-")
    os.chown(home, NOBODY, NOBODY)
    api = f"127.0.0.1:{free_port()}"
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "NO_COLOR": "1",
           "SHOTFARM_CHROMIUM__PROFILE_DIR": home, "SHOTFARM_REDIS__URL": redis_url,
           "SHOTFARM_CHROMIUM__SANDBOX": sandbox, "SHOTFARM_CHROMIUM__NETWORK_ISOLATION": isolation, "SHOTFARM_FARM__BROWSERS": "2",
           "SHOTFARM_LIMITS__REQUESTS_PER_MINUTE": "0"}
    binary = os.path.join(home, "shotfarm")  # a copy nobody can run, wherever the checkout is
    shutil.copy(BIN, binary)
    daemon = subprocess.Popen([binary, "serve", "--listen", api, "--metrics-listen", f"127.0.0.1:{free_port()}",
                               "--allow-egress", "127.0.0.0/8"], env=env, user=NOBODY, group=NOBODY,
                              stdout=subprocess.DEVNULL, stderr=open(os.environ.get("SANDBOX_LOG", os.devnull), "a"))
    try:
        for _ in range(300):
            try:
                if b'"ready":2' in urllib.request.urlopen(f"http://{api}/readyz").read().replace(b" ", b""):
                    break
            except Exception:
                pass
            time.sleep(0.1)
        url = f"http://{api}/api/v1/screenshot?" + urllib.parse.urlencode({"url": site_url})

        def shot(_):
            req = urllib.request.Request(url, headers={"x-api-key": key})
            try:
                with urllib.request.urlopen(req) as r:
                    assert r.status == 200 and r.read(4) == b"\x89PNG"
            except urllib.error.HTTPError as e:
                sys.exit(f"isolation_cost: capture failed (isolation {isolation}, sandbox {sandbox}): "
                         f"{e.code} {e.read()[:300]!r}")

        for i in range(6):
            shot(i)
        cpu0, t0 = tree_cpu_seconds(daemon.pid), time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(C) as pool:
            list(pool.map(shot, range(N)))
        wall, cpu = time.monotonic() - t0, tree_cpu_seconds(daemon.pid) - cpu0
        return N / wall, cpu / N * 1000
    finally:
        daemon.terminate()
        daemon.wait(30)
        shutil.rmtree(home, ignore_errors=True)


def main():
    if os.geteuid() != 0 or not BIN:
        sys.exit("isolation_cost: needs root and a built shotfarm binary (cargo build --release)")
    port = free_port()
    redis_dir = tempfile.mkdtemp(prefix="shotfarm-isolation-redis-")
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--dir", redis_dir], stdout=subprocess.DEVNULL)
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        redis_url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.5)
        subprocess.run([BIN, "accounts", "create", "--email", "bench@sandbox.localhost", "--credits", str(ROUNDS * len(SETTINGS) * (N + 6) + 100),
                        "--redis-url", redis_url], check=True, stdout=subprocess.DEVNULL)
        key = subprocess.run([BIN, "keys", "create", "--account", "bench@sandbox.localhost", "--name", "bench",
                              "--redis-url", redis_url], check=True, capture_output=True, text=True).stdout.splitlines()[1].strip()
        site_url = f"http://127.0.0.1:{site.server_address[1]}/"
        results = {}
        for round_ in range(ROUNDS):
            for name, isolation, sandbox in SETTINGS:
                rate, cpu = run(isolation, sandbox, redis_url, key, site_url)
                results.setdefault(name, []).append((rate, cpu))
                print(f"round {round_ + 1}, {name:26}: {rate:5.2f} captures/s, {cpu:6.1f} ms CPU per capture")
        best = {n: (max(r for r, _ in v), min(c for _, c in v)) for n, v in results.items()}
        base = best[SETTINGS[0][0]]
        print(f"({N} captures per round, {C} at once, 2 browsers, as uid {NOBODY}; best round of each)")
        for name, _, _ in SETTINGS[1:]:
            print(f"{name} / {SETTINGS[0][0]}: throughput x{best[name][0] / base[0]:.2f}, "
                  f"CPU per capture x{best[name][1] / base[1]:.2f}")
    finally:
        site.shutdown()
        redis.terminate()
        redis.wait()
        shutil.rmtree(redis_dir, ignore_errors=True)


main()
