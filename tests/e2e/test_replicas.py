"""Two peftd replicas over one data directory behind nginx (docker/nginx.conf).

Starts two `peftd serve` processes (PEFTD_BIN) on free loopback ports with the same --data-dir
and Debian's nginx in front, using a copy of docker/nginx.conf whose upstreams, listen port,
pid and logs are rewritten for this machine (nginx runs as the current user, in the
foreground, with -p/-c in a temporary directory). Then:

  * an adapter uploaded on replica A (the example LoRA from examples/make_lora.py) is served
    by replica B within 2 s (replicas poll the data dir), with the same scores as on A;
  * a delete on A reaches B within 2 s;
  * requests with the same X-Adapter header always reach the same replica (read from the
    nginx access log's upstream address, and from X-Peftd-Replica when the server sends it);
  * after kill -9 of the replica serving an adapter, requests through nginx still answer;
  * the surviving replica exits cleanly on SIGTERM.

Prints "e2e_replicas: N passed, N failed".
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PEFTD = os.environ.get("PEFTD_BIN", os.path.join(ROOT, "build", "peftd"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PYTHON = "/usr/bin/python3"
SYNC_LIMIT = 2.0  # seconds for a change on one replica to be visible on the other

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what, flush=True)
    return cond


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=30):
    """Returns (status, headers dict (lower-case names), body bytes); never raises on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout) as e:
        return 0, {}, str(e).encode()


def jpost(url, obj, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return http("POST", url, json.dumps(obj).encode(), h)


def multipart(fields):
    """fields: list of (name, filename or None, bytes). Returns (content type, body)."""
    boundary = "peftd-e2e-%d" % os.getpid()
    out = b""
    for name, fname, data in fields:
        out += b"--" + boundary.encode() + b"\r\n"
        disp = 'form-data; name="%s"' % name
        if fname:
            disp += '; filename="%s"' % fname
        out += b"Content-Disposition: " + disp.encode() + b"\r\n"
        out += b"Content-Type: application/octet-stream\r\n\r\n" if fname else b"\r\n"
        out += data + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return "multipart/form-data; boundary=" + boundary, out


def upload(base, name, adir, headers=None):
    fields = [("name", None, name.encode())]
    for field, fname in (("config", "adapter_config.json"), ("weights", "adapter_model.safetensors")):
        with open(os.path.join(adir, fname), "rb") as f:
            fields.append((field, fname, f.read()))
    ctype, body = multipart(fields)
    h = {"Content-Type": ctype}
    h.update(headers or {})
    return http("POST", base + "/adapters", body, h)


def wait_health(url, proc, limit=60.0, path="/ready"):
    """Waits until url answers 200 on path (/ready: the model loaded; nginx has no /ready of its
    own, it passes it to a replica)."""
    t0 = time.time()
    while time.time() - t0 < limit:
        if proc.poll() is not None:
            return False
        st, _, _ = http("GET", url + path, timeout=2)
        if st == 200:
            return True
        time.sleep(0.1)
    return False


def wait_status(url, want, limit):
    """Polls GET url until it answers `want`; returns the seconds it took, or None."""
    t0 = time.time()
    while True:
        st, _, _ = http("GET", url, timeout=5)
        dt = time.time() - t0
        if st == want:
            return dt
        if dt > limit:
            return None
        time.sleep(0.05)


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def render_nginx_conf(tmp, nginx_port, ports):
    """docker/nginx.conf with loopback upstreams, a loopback listen port and files in tmp."""
    with open(os.path.join(ROOT, "docker", "nginx.conf"), encoding="utf-8") as f:
        conf = f.read()
    n = [0]

    def upstream(m):
        n[0] += 1
        return "server 127.0.0.1:%d" % ports[int(m.group(1)) - 1]

    conf = re.sub(r"server\s+peftd-(\d+):8080", upstream, conf)
    conf = re.sub(r"^pid\s+[^;]+;", "pid %s/nginx.pid;" % tmp, conf, flags=re.M)
    conf = re.sub(r"^error_log\s+[^;]+;", "error_log %s/error.log info;" % tmp, conf, flags=re.M)
    conf = re.sub(r"access_log\s+\S+\s+peftd;", "access_log %s/access.log peftd;" % tmp, conf)
    conf = re.sub(r"listen\s+8080;", "listen 127.0.0.1:%d;" % nginx_port, conf)
    temp = "".join("    %s_temp_path %s/%s;\n" % (k, tmp, k) for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = conf.replace("http {\n", "http {\n" + temp, 1)
    if os.geteuid() == 0:
        # nginx started by root hands its workers to "nobody", which could not write the
        # temporary directory; run them as the current user, as a non-root start would.
        conf = "user root;\n" + conf
    return conf, n[0]


def upstream_log(tmp):
    """(adapter, upstream address) per request in the nginx access log."""
    out = []
    for line in tail(os.path.join(tmp, "access.log"), 100000).splitlines():
        # $upstream_addr lists every replica tried: "127.0.0.1:A, 127.0.0.1:B" after a failover.
        m = re.search(r'adapter="([^"]*)" upstream=(.*?) upstream_status=', line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def main():
    if not check(os.access(PEFTD, os.X_OK), "PEFTD_BIN %s is not an executable" % PEFTD):
        return
    if not check(os.access(NGINX, os.X_OK), "nginx not found (scripts/install-deps.sh --test installs it)"):
        return
    tmp = tempfile.mkdtemp(prefix="peftd-replicas-")
    procs = {}
    try:
        run(tmp, procs)
    finally:
        for name, p in procs.items():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp, procs):
    model, data, lora = os.path.join(tmp, "model"), os.path.join(tmp, "data"), os.path.join(tmp, "lora")
    os.makedirs(data)
    r = subprocess.run([PEFTD, "gen-model", "--out", model], capture_output=True, text=True, timeout=120)
    if not check(r.returncode == 0, "peftd gen-model: %s%s" % (r.stdout, r.stderr)):
        return
    r = subprocess.run([PYTHON, os.path.join(ROOT, "examples", "make_lora.py"), "--model", model, "--out", lora],
                       capture_output=True, text=True, timeout=60)
    if not check(r.returncode == 0, "examples/make_lora.py: %s%s" % (r.stdout, r.stderr)):
        return

    ports = [free_port(), free_port()]
    urls = ["http://127.0.0.1:%d" % p for p in ports]
    for i, port in enumerate(ports):
        log = open(os.path.join(tmp, "replica%d.log" % i), "w")
        procs["replica%d" % i] = subprocess.Popen(
            [PEFTD, "serve", "--model", model, "--data-dir", data, "--host", "127.0.0.1", "--port", str(port),
             "--threads", "1"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    for i in range(2):
        if not check(wait_health(urls[i], procs["replica%d" % i]),
                     "replica %d did not become healthy:\n%s" % (i, tail(os.path.join(tmp, "replica%d.log" % i)))):
            return

    nport = free_port()
    conf, n_up = render_nginx_conf(tmp, nport, ports)
    check(n_up == 2, "docker/nginx.conf has 2 upstream servers (found %d)" % n_up)
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(conf)
    ngx = [NGINX, "-p", tmp, "-c", os.path.join(tmp, "nginx.conf"), "-e", os.path.join(tmp, "error.log")]
    r = subprocess.run(ngx + ["-t"], capture_output=True, text=True, timeout=30)
    if not check(r.returncode == 0, "nginx -t: " + r.stderr):
        return
    procs["nginx"] = subprocess.Popen(ngx + ["-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lb = "http://127.0.0.1:%d" % nport
    if not check(wait_health(lb, procs["nginx"], 10), "nginx did not answer:\n" + tail(os.path.join(tmp, "error.log"))):
        return

    # ==== Upload on A, served by B ====
    st, _, body = upload(urls[0], "demo", lora)
    check(st in (200, 201), "upload on replica A: %d %s" % (st, body[:300]))
    dt = wait_status(urls[1] + "/adapters/demo", 200, SYNC_LIMIT)
    check(dt is not None, "replica B did not see the upload within %.1f s" % SYNC_LIMIT)
    if dt is not None:
        print("upload visible on B after %.2f s" % dt)
    req = {"adapter": "demo", "inputs": ["a great movie", "a boring mess"], "return_logits": True}
    outs = []
    for u in urls:
        st, _, body = jpost(u + "/predict", req)
        check(st == 200, "predict with the uploaded adapter on %s: %d %s" % (u, st, body[:300]))
        outs.append(json.loads(body) if st == 200 else None)
    if outs[0] and outs[1]:
        check(outs[0].get("outputs") == outs[1].get("outputs"), "both replicas give the same scores for the same adapter")
        check(outs[0].get("adapter") == "demo", "the answer names the adapter")
    st, _, body = jpost(urls[1] + "/predict", {"inputs": ["a great movie"], "return_logits": True})
    base = json.loads(body) if st == 200 else None
    check(st == 200 and outs[1] and base and base.get("outputs")[0] != outs[1].get("outputs")[0],
          "the adapter changes the base model's scores")

    # ==== Delete on A, gone on B ====
    st, _, body = http("DELETE", urls[0] + "/adapters/demo")
    check(st in (200, 204), "delete on A: %d %s" % (st, body[:200]))
    dt = wait_status(urls[1] + "/adapters/demo", 404, SYNC_LIMIT)
    check(dt is not None, "replica B still has the adapter %.1f s after the delete" % SYNC_LIMIT)
    if dt is not None:
        print("delete visible on B after %.2f s" % dt)
    st, _, _ = jpost(urls[1] + "/predict", req)
    check(st == 404, "predict with the deleted adapter on B is 404 (got %d)" % st)

    # ==== Routing by X-Adapter through nginx ====
    for name in ("demo", "other"):
        st, _, body = upload(lb, name, lora, {"X-Adapter": name})
        check(st in (200, 201), "upload %s through nginx: %d %s" % (name, st, body[:200]))
    for name in ("demo", "other"):
        for u in urls:
            check(wait_status(u + "/adapters/" + name, 200, SYNC_LIMIT) is not None, "%s reached %s" % (name, u))
    replica_hdr = {}
    for i in range(12):
        name = ("demo", "other")[i % 2]
        st, h, body = jpost(lb + "/predict", {"adapter": name, "inputs": ["a fine film"]}, {"X-Adapter": name})
        check(st == 200, "predict through nginx (%s): %d %s" % (name, st, body[:200]))
        if "x-peftd-replica" in h:
            replica_hdr.setdefault(name, set()).add(h["x-peftd-replica"])
    time.sleep(0.2)  # the access log line is written after the response
    seen = {}
    for adapter, up in upstream_log(tmp):
        if adapter in ("demo", "other"):
            seen.setdefault(adapter, []).append(up)
    for name in ("demo", "other"):
        ups = seen.get(name, [])
        # Uploads and predictions both carried X-Adapter: one replica for all of them.
        check(len(ups) >= 7 and len(set(ups)) == 1, "X-Adapter %s always reaches one replica: %s" % (name, sorted(set(ups))))
    for name, ids in replica_hdr.items():
        check(len(ids) == 1, "X-Peftd-Replica is constant for %s: %s" % (name, ids))
    if not replica_hdr:
        print("note: the server sends no X-Peftd-Replica header; routing was read from the nginx access log")

    # ==== kill -9 the replica serving "demo" ====
    target = seen.get("demo", [None])[0]
    idx = next((i for i, p in enumerate(ports) if target and target.endswith(":%d" % p)), 0)
    victim = procs["replica%d" % idx]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(0.2)
    ok = 0
    for _ in range(6):
        st, _, body = jpost(lb + "/predict", {"adapter": "demo", "inputs": ["still there?"]}, {"X-Adapter": "demo"})
        ok += st == 200
    check(ok == 6, "after kill -9 of replica %d, %d of 6 requests through nginx answered" % (idx, ok))
    st, _, _ = http("GET", lb + "/health")
    check(st == 200, "health through nginx after kill -9 (%d)" % st)
    seen_after = [up for a, up in upstream_log(tmp)[-7:] if a == "demo"]
    check(any(up.endswith(":%d" % ports[1 - idx]) for up in seen_after), "the surviving replica took over: %s" % seen_after)

    # ==== The survivor shuts down cleanly ====
    survivor = procs["replica%d" % (1 - idx)]
    survivor.send_signal(signal.SIGTERM)
    try:
        rc = survivor.wait(20)
    except subprocess.TimeoutExpired:
        rc = None
    check(rc == 0, "replica %d exit status on SIGTERM: %s\n%s" % (1 - idx, rc, tail(os.path.join(tmp, "replica%d.log" % (1 - idx)))))


if __name__ == "__main__":
    main()
    print("e2e_replicas: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
