"""Files and HTTP plumbing for the end-to-end tests, in Python's standard library only.

* safetensors writing (the format: 8-byte little-endian header length, a JSON header
  {name: {"dtype", "shape", "data_offsets"}}, then the raw little-endian tensor bytes);
* tiny BERT checkpoints (config.json, vocab.txt, tokenizer_config.json, model.safetensors)
  with random weights, for tests that need a model other than the embedded default one;
* PEFT LoRA adapters as PEFT's save_pretrained writes them (adapter_config.json +
  adapter_model.safetensors with "base_model.model.<module>.lora_A.weight" names);
* multipart/form-data bodies, an HTTP helper and a handle on a running `peftd serve`;
* `npm ci` of the pinned packages the Node.js checks use.
"""

import array
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

# ============================================================================
# safetensors
# ============================================================================


def st_bytes(tensors, metadata=None):
    """tensors: {name: (shape, [floats])} as F32. Returns the file's bytes (names sorted)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs, off = [], 0
    for name in sorted(tensors):
        shape, values = tensors[name]
        n = 1
        for d in shape:
            n *= d
        if len(values) != n:
            raise ValueError("%s: %d values for shape %s" % (name, len(values), shape))
        a = array.array("f", values)
        if sys.byteorder != "little":
            a.byteswap()
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def randn(rng, n, std):
    return [rng.gauss(0.0, std) for _ in range(n)]


# ============================================================================
# A tiny BERT checkpoint
# ============================================================================

WORDS = ("the a an is was good bad great terrible movie film story plot actor actors fun boring "
         "who what where when why how capital city of france paris river long is in on at to and "
         "it this that not very really love hate best worst ever seen").split()


def bert_encoder(layers, H, F, lin, ln):
    """Calls lin(name, out, in) and ln(name) for every tensor of a BERT encoder's layers, in
    Hugging Face names and a fixed order (callers draw random values in call order)."""
    for l in range(layers):
        p = "bert.encoder.layer.%d." % l
        lin(p + "attention.self.query", H, H)
        lin(p + "attention.self.key", H, H)
        lin(p + "attention.self.value", H, H)
        lin(p + "attention.output.dense", H, H)
        ln(p + "attention.output.LayerNorm")
        lin(p + "intermediate.dense", F, H)
        lin(p + "output.dense", H, F)
        ln(p + "output.LayerNorm")


def write_tiny_bert(d, hidden=32, layers=2, heads=2, ffn=64, max_pos=64, labels=("neg", "pos"), qa=True, seed=1):
    """Writes a random BertForSequenceClassification(+ qa_outputs) checkpoint into d."""
    os.makedirs(d, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += sorted(set(WORDS))
    vocab += list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'")
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f)
    cfg = {
        "architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": len(vocab),
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": ffn, "max_position_embeddings": max_pos, "type_vocab_size": 2,
        "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "id2label": {str(i): l for i, l in enumerate(labels)},
        "label2id": {l: i for i, l in enumerate(labels)},
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    rng = random.Random(seed)
    t = {}
    H, F, V = hidden, ffn, len(vocab)

    def lin(name, o, i):
        t[name + ".weight"] = ((o, i), randn(rng, o * i, 0.02 if o * i > 64 else 0.5))
        t[name + ".bias"] = ((o,), randn(rng, o, 0.02))

    def ln(name):
        t[name + ".weight"] = ((H,), [1.0 + x for x in randn(rng, H, 0.05)])
        t[name + ".bias"] = ((H,), randn(rng, H, 0.05))

    t["bert.embeddings.word_embeddings.weight"] = ((V, H), randn(rng, V * H, 0.02))
    t["bert.embeddings.position_embeddings.weight"] = ((max_pos, H), randn(rng, max_pos * H, 0.02))
    t["bert.embeddings.token_type_embeddings.weight"] = ((2, H), randn(rng, 2 * H, 0.02))
    ln("bert.embeddings.LayerNorm")
    bert_encoder(layers, H, F, lin, ln)
    lin("bert.pooler.dense", H, H)
    t["classifier.weight"] = ((len(labels), H), randn(rng, len(labels) * H, 0.5))
    t["classifier.bias"] = ((len(labels),), randn(rng, len(labels), 0.1))
    if qa:
        t["qa_outputs.weight"] = ((2, H), randn(rng, 2 * H, 0.5))
        t["qa_outputs.bias"] = ((2,), [0.0, 0.0])
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(st_bytes(t, {"format": "pt"}))
    return cfg


# ============================================================================
# PEFT LoRA adapters
# ============================================================================


def lora_files(seed, hidden=64, layers=2, r=4, alpha=8, targets=("query", "value"), task_type="SEQ_CLS",
               std=0.3, head_labels=None, ffn=128):
    """Returns (adapter_config.json bytes, adapter_model.safetensors bytes) of a LoRA for a
    BERT of the given size. head_labels: also save a classifier head (modules_to_save) with
    that many outputs. Every seed gives different weights."""
    rng = random.Random(seed)
    shapes = {"query": (hidden, hidden), "key": (hidden, hidden), "value": (hidden, hidden)}
    paths = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value"}
    t = {}
    for l in range(layers):
        for m in targets:
            out_f, in_f = shapes[m]
            base = "base_model.model.bert.encoder.layer.%d.%s" % (l, paths[m])
            t[base + ".lora_A.weight"] = ((r, in_f), randn(rng, r * in_f, std))
            t[base + ".lora_B.weight"] = ((out_f, r), randn(rng, out_f * r, std))
    cfg = {
        "peft_type": "LORA", "task_type": task_type, "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
        "target_modules": list(targets), "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
        "base_model_name_or_path": "peftd-default", "modules_to_save": None,
    }
    if head_labels:
        n = len(head_labels)
        cfg["modules_to_save"] = ["classifier"]
        t["base_model.model.classifier.weight"] = ((n, hidden), randn(rng, n * hidden, 0.5))
        t["base_model.model.classifier.bias"] = ((n,), randn(rng, n, 0.1))
    return json.dumps(cfg, indent=1).encode(), st_bytes(t, {"format": "pt"})


def write_lora_dir(d, files):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "adapter_config.json"), "wb") as f:
        f.write(files[0])
    with open(os.path.join(d, "adapter_model.safetensors"), "wb") as f:
        f.write(files[1])
    return d


# ============================================================================
# HTTP
# ============================================================================


def multipart(fields):
    """fields: list of (name, bytes_or_str, filename_or_None). Returns (content_type, body)."""
    boundary = "peftdTestBoundary%016x" % random.getrandbits(64)
    out = []
    for name, value, filename in fields:
        if isinstance(value, str):
            value = value.encode()
        disp = 'form-data; name="%s"' % name
        if filename:
            disp += '; filename="%s"' % filename
        out.append(("--%s\r\nContent-Disposition: %s\r\n" % (boundary, disp)).encode())
        if filename:
            out.append(b"Content-Type: application/octet-stream\r\n")
        out.append(b"\r\n" + value + b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return "multipart/form-data; boundary=" + boundary, b"".join(out)


def upload_fields(name, files, labels=None, extra=()):
    f = []
    if name is not None:
        f.append(("name", name, None))
    f.append(("config", files[0], "adapter_config.json"))
    f.append(("weights", files[1], "adapter_model.safetensors"))
    if labels is not None:
        f.append(("labels", json.dumps(labels), None))
    f.extend(extra)
    return f


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body.decode())

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


class Client:
    """One keep-alive connection (reconnects when the server closed it)."""

    def __init__(self, port, key=None, timeout=60):
        self.port, self.key, self.timeout, self.conn = port, key, timeout, None

    def request(self, method, path, body=None, headers=None, ctype=None):
        h = dict(headers or {})
        if self.key and "Authorization" not in h:
            h["Authorization"] = "Bearer " + self.key
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
            ctype = ctype or "application/json"
        if ctype:
            h["Content-Type"] = ctype
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                resp = Resp(r.status, r.getheaders(), data)
                if (r.getheader("Connection") or "").lower() == "close":
                    self.close()
                return resp
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # a keep-alive connection the server had closed: retry once on a new one
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def predict(self, body, **kw):
        return self.request("POST", "/predict", body, **kw)

    def upload(self, name, files, labels=None, method="POST", extra=()):
        ct, body = multipart(upload_fields(name if method == "POST" else None, files, labels, extra))
        path = "/adapters" if method == "POST" else "/adapters/" + name
        return self.request(method, path, body, ctype=ct)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def raw_http(port, data, read_timeout=10, until_close=False):
    """Sends raw bytes, returns what the server answers: its first complete response, or with
    until_close everything until it closes the connection; either way at most until read_timeout
    seconds pass without a byte."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            out += b
            if not until_close and b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                if m and len(rest) >= int(m.group(1)):
                    break
        return out
    finally:
        s.close()


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d+)", raw)
    return int(m.group(1)) if m else None


def http_request(method, path, body=b"", headers=(), version=b"HTTP/1.1", host=True, length=True, close=True):
    """The bytes of one HTTP request, for raw_http: method, path and version as given (bytes or
    str, sent verbatim), a Host header, headers as (name, value) pairs in order, Content-Length
    of body when length is true and a body is given, Connection: close when close is true."""
    def b(x):
        return x if isinstance(x, (bytes, bytearray)) else str(x).encode("utf-8", "surrogateescape")

    out = [b(method) + b" " + b(path) + b" " + b(version) + b"\r\n"]
    if host:
        out.append(b"Host: 127.0.0.1\r\n")
    for k, v in headers:
        out.append(b(k) + b": " + b(v) + b"\r\n")
    if length and body:
        out.append(b"Content-Length: %d\r\n" % len(body))
    if close:
        out.append(b"Connection: close\r\n")
    return b"".join(out) + b"\r\n" + b(body)


def parse_responses(raw, head=False):
    """Splits the bytes a server sent into responses. Returns ([Resp], leftover bytes that are not
    a complete response). Bodies are delimited by Content-Length (none after HEAD, 1xx, 204 and
    304), by chunked encoding, or else run to the end of the bytes."""
    out = []
    while raw:
        head_end = raw.find(b"\r\n\r\n")
        m = re.match(rb"HTTP/\d\.\d (\d{3})[^\r\n]*\r\n", raw)
        if head_end < 0 or not m:
            break
        status = int(m.group(1))
        headers = []
        for line in raw[m.end():head_end].split(b"\r\n"):
            k, _, v = line.partition(b":")
            headers.append((k.strip().decode("latin-1"), v.strip().decode("latin-1")))
        rest = raw[head_end + 4:]
        resp = Resp(status, headers, b"")
        te, cl = (resp.header("Transfer-Encoding") or "").lower(), resp.header("Content-Length")
        if head or status < 200 or status in (204, 304):
            n = 0
        elif "chunked" in te:
            body, p = b"", 0
            while True:
                e = rest.find(b"\r\n", p)
                if e < 0:
                    return out, raw
                size = int(rest[p:e].split(b";")[0], 16)
                if size == 0:
                    t = rest.find(b"\r\n\r\n", e - 2)
                    if t < 0:
                        return out, raw
                    p = t + 4
                    break
                body += rest[e + 2:e + 2 + size]
                p = e + 2 + size + 2
            resp.body, raw = body, rest[p:]
            out.append(resp)
            continue
        elif cl is not None and cl.isdigit():
            n = int(cl)
            if len(rest) < n:
                break
        else:
            n = len(rest)
        resp.body, raw = rest[:n], rest[n:]
        out.append(resp)
    return out, raw


def error_problem(resp, code=None):
    """What is wrong with resp as a peftd error reply, or None: the body must be strict UTF-8
    JSON {"error": {"code": str, "message": non-empty str}} sent as application/json, with code
    equal to the given one."""
    if not (resp.header("Content-Type") or "").startswith("application/json"):
        return "Content-Type %r" % resp.header("Content-Type")
    try:
        e = json.loads(resp.body.decode("utf-8"))["error"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as x:
        return "not a JSON error body (%s)" % x
    if not isinstance(e, dict) or not isinstance(e.get("code"), str) or not isinstance(e.get("message"), str) or not e["message"]:
        return "error without a code and a message: %r" % e
    if code is not None and e["code"] != code:
        return "code %r, wanted %r" % (e["code"], code)
    return None


def proc_status_kb(pid, field="VmRSS"):
    """A memory figure of a process from /proc/PID/status in KiB (VmRSS, VmHWM, ...), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss(pid):
    """Resets the process's VmHWM to its current RSS (Linux >= 4.0; needs permission)."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# Lines a sanitizer writes when it finds something.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer")


# ============================================================================
# The server process
# ============================================================================


class Server:
    """`peftd serve` on a free loopback port (--port 0; the port is read from its log)."""

    def __init__(self, binary, args, env=None, log_path=None, prefix=()):
        """prefix: a command that execs the server with its arguments appended (e.g. prlimit
        --as=N --), so that the process id is still the server's."""
        self.binary, self.args, self.prefix = binary, list(args), list(prefix)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.log_path = log_path
        self.proc = None
        self.port = None

    def start(self, timeout=60, wait_ready=True):
        self.logf = open(self.log_path, "ab")
        self.log_start = self.logf.tell()
        self.proc = subprocess.Popen(self.prefix + [self.binary, "serve", "--port", "0"] + self.args, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("peftd exited with %d:\n%s" % (self.proc.returncode, self.log_tail()))
            for line in self.log_lines():
                if line.get("msg") == "listening":
                    self.port = line["port"]
                if wait_ready and line.get("msg") == "ready":
                    return self
            if self.port and not wait_ready:
                return self
            time.sleep(0.02)
        raise RuntimeError("peftd did not become ready:\n" + self.log_tail())

    def log_lines(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            out = []
            for raw in f.read().splitlines():
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    out.append({"raw": raw.decode(errors="replace")})
            return out

    def log_tail(self, n=30):
        with open(self.log_path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")

    def client(self, key=None, timeout=60):
        return Client(self.port, key, timeout)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends sig and returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        self.logf.close()
        self.proc = None
        return rc

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            self.logf.close()
            self.proc = None


# ============================================================================
# npm packages of the Node.js checks
# ============================================================================


def npm_ci(src, work, timeout=600):
    """Installs the packages pinned by src/package-lock.json into work/ with `npm ci` (scripts not
    run), again only when the lock file changed (work/installed.sha256 holds its digest).
    Returns None, or a message saying why it could not."""
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        return "node and npm are needed (scripts/install-deps.sh --test)"
    with open(os.path.join(src, "package-lock.json"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    stamp = os.path.join(work, "installed.sha256")
    if os.path.exists(stamp) and open(stamp).read() == digest:
        return None
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(src, f), work)
    r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                       cwd=work, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        return "npm ci in %s failed:\n%s%s" % (work, r.stdout, r.stderr)
    with open(stamp, "w") as f:
        f.write(digest)
    return None
