"""Checks deploy/k8s and docker/compose.yaml.

1. Schema: every Kubernetes object in deploy/k8s is validated against the Kubernetes OpenAPI
   schemas shipped in the npm package kubernetes-models (tests/e2e/k8s/validate.js; versions
   pinned by tests/e2e/k8s/package-lock.json, installed with `npm ci` into build/k8s-schema/).
   That checks types, required fields and enums; like the Kubernetes schemas themselves it
   does not reject unknown field names, so step 2 checks the fields peftd relies on.
2. Structure (python3-yaml): the Deployment runs 2 replicas with a startup and a liveness probe
   on /health and a readiness probe on /ready, takes its environment from the ConfigMap, reads
   the API key from a Secret mounted as a file named by PEFTD_API_KEY_FILE, requests as many
   CPUs as PEFTD_THREADS and mounts the ReadWriteMany claim at PEFTD_DATA_DIR; a
   PodDisruptionBudget keeps one replica; a headless Service lists the pods and an nginx router
   hashes X-Adapter over its DNS name, behind the Service clients use; the Secret is an example
   kustomize does not apply, whose placeholder key peftd refuses (PEFTD_BIN); every PEFTD_*
   name is an option the server knows (from `peftd serve --help` when PEFTD_BIN is set); the
   compose file runs two replicas over one named volume behind nginx with docker/nginx.conf.

Prints "e2e_k8s: N passed, N failed".
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peftio import npm_ci  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "k8s")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what)
    return cond


def load_all():
    objs = {}
    files = sorted(f for f in os.listdir(K8S) if f.endswith((".yaml", ".yml")))
    for f in files:
        with open(os.path.join(K8S, f), encoding="utf-8") as fh:
            for doc in yaml.safe_load_all(fh):
                if doc is not None:
                    objs.setdefault(doc.get("kind"), []).append((f, doc))
    return files, objs


# ==== 1. Schema ====

def schema_check(files):
    src = os.path.join(ROOT, "tests", "e2e", "k8s")
    work = os.path.join(ROOT, "build", "k8s-schema")
    err = npm_ci(src, work)
    if not check(err is None, "schema check: %s" % err):
        return
    shutil.copy(os.path.join(src, "validate.js"), work)
    r = subprocess.run([shutil.which("node"), os.path.join(work, "validate.js")] + [os.path.join(K8S, f) for f in files],
                       cwd=work, capture_output=True, text=True, timeout=120)
    print(r.stdout.rstrip())
    for line in r.stdout.splitlines():
        if line.startswith("ok "):
            check(True, line)
        elif line.startswith("INVALID"):
            check(False, line)
    check(r.returncode == 0, "schema validation exited %d: %s" % (r.returncode, r.stderr.strip()))
    # Every kind peftd ships must have been checked against a schema.
    for kind in ("ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Service", "PodDisruptionBudget"):
        check(re.search(r"^ok .*: %s " % kind, r.stdout, re.M), "%s was not schema-checked" % kind)


# ==== 2. Structure ====

def server_env_names():
    """PEFTD_* variables `peftd serve --help` lists, or None without a binary."""
    binary = os.environ.get("PEFTD_BIN")
    if not binary or not os.access(binary, os.X_OK):
        return None
    r = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, timeout=30)
    names = set(re.findall(r"PEFTD_[A-Z0-9_]+", r.stdout + r.stderr))
    return names or None


def one(objs, kind):
    items = objs.get(kind, [])
    check(len(items) == 1, "exactly one %s (found %d)" % (kind, len(items)))
    return items[0][1] if items else {}


def named(objs, kind, name):
    items = [o for _, o in objs.get(kind, []) if o.get("metadata", {}).get("name") == name]
    check(len(items) == 1, "one %s %s (found %d)" % (kind, name, len(items)))
    return items[0] if items else {}


def file_of(objs, kind):
    return {f for f, _ in objs.get(kind, [])}


def structure_check(files, objs):
    cm, sec, pvc = named(objs, "ConfigMap", "peftd-config"), one(objs, "Secret"), one(objs, "PersistentVolumeClaim")
    dep, svc = named(objs, "Deployment", "peftd"), named(objs, "Service", "peftd-pods")
    kust = one(objs, "Kustomization")
    res = kust.get("resources", [])
    check(sorted(res) == sorted(f for f in files if f not in ("kustomization.yaml", "secret.example.yaml")),
          "kustomization.yaml lists every manifest but the example Secret")
    check(not (file_of(objs, "Secret") & set(res)), "no Secret is applied by default")
    binary = os.environ.get("PEFTD_BIN")
    if binary and os.access(binary, os.X_OK):
        placeholder = (sec.get("stringData") or {}).get("api-key", "")
        d = tempfile.mkdtemp(prefix="peftd-k8s-")
        try:
            kf = os.path.join(d, "key")
            with open(kf, "w") as f:
                f.write(placeholder + "\n")
            r = subprocess.run([binary, "serve", "--port", "0", "--data-dir", os.path.join(d, "data"), "--api-key-file", kf],
                               capture_output=True, text=True, timeout=120)
            check(r.returncode != 0 and "placeholder" in r.stderr, "peftd refuses the example's key: %s" % r.stderr[-200:])
        finally:
            shutil.rmtree(d, ignore_errors=True)

    env = cm.get("data", {})
    check(all(k.startswith("PEFTD_") for k in env), "ConfigMap keys are PEFTD_* variables")
    check(env.get("PEFTD_HOST") == "0.0.0.0", "PEFTD_HOST listens on all pod addresses")
    known = server_env_names()
    if known is not None:
        for k in list(env) + ["PEFTD_API_KEY_FILE"]:
            check(k in known, "%s is an option of peftd serve" % k)

    check("ReadWriteMany" in pvc.get("spec", {}).get("accessModes", []), "the claim is ReadWriteMany")

    spec = dep.get("spec", {})
    check(spec.get("replicas") == 2, "2 replicas")
    labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    sel = spec.get("selector", {}).get("matchLabels", {})
    check(sel and all(labels.get(k) == v for k, v in sel.items()), "the selector matches the pod labels")
    pod = spec.get("template", {}).get("spec", {})
    cs = pod.get("containers", [])
    check(len(cs) == 1, "one container")
    c = cs[0] if cs else {}
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    port = int(env.get("PEFTD_PORT", 8080))
    check(port in ports.values(), "the container port is PEFTD_PORT")
    for probe, path in (("startupProbe", "/health"), ("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        hg = c.get(probe, {}).get("httpGet", {})
        p = hg.get("port")
        check(hg.get("path") == path and (p == port or ports.get(p) == port), "%s on %s" % (probe, path))
    check(any(e.get("configMapRef", {}).get("name") == cm.get("metadata", {}).get("name")
              for e in c.get("envFrom", [])), "environment from the ConfigMap")
    req = c.get("resources", {}).get("requests", {})
    check("cpu" in req and "memory" in req, "cpu and memory requests")
    check(str(req.get("cpu")) == str(env.get("PEFTD_THREADS")), "the CPU request is PEFTD_THREADS (%r vs %r)" %
          (req.get("cpu"), env.get("PEFTD_THREADS")))
    pdb = one(objs, "PodDisruptionBudget")
    psel = pdb.get("spec", {}).get("selector", {}).get("matchLabels", {})
    check(pdb.get("spec", {}).get("minAvailable") == 1 and psel and all(labels.get(k) == v for k, v in psel.items()),
          "the PodDisruptionBudget keeps one replica")

    vols = {v.get("name"): v for v in pod.get("volumes", [])}
    mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts", [])}
    data_vol = vols.get(mounts.get(env.get("PEFTD_DATA_DIR")), {})
    check(data_vol.get("persistentVolumeClaim", {}).get("claimName") == pvc.get("metadata", {}).get("name"),
          "PEFTD_DATA_DIR is the mounted claim")

    key_file = next((e.get("value") for e in c.get("env", []) if e.get("name") == "PEFTD_API_KEY_FILE"), None)
    check(key_file is not None, "PEFTD_API_KEY_FILE is set")
    if key_file:
        d, base = os.path.split(key_file)
        sv = vols.get(mounts.get(d), {}).get("secret", {})
        check(sv.get("secretName") == sec.get("metadata", {}).get("name"), "the key file's directory is the Secret")
        items = {i.get("path"): i.get("key") for i in sv.get("items", [])} or {k: k for k in sec.get("stringData", {})}
        key = items.get(base)
        check(key in sec.get("stringData", {}) or key in sec.get("data", {}), "the key file is an entry of the Secret")
        check(not any(e.get("name") == "PEFTD_API_KEY" for e in c.get("env", [])), "the key is not in the environment")

    ssel = svc.get("spec", {}).get("selector", {})
    check(svc.get("spec", {}).get("clusterIP") == "None", "peftd-pods is headless")
    check(ssel and all(labels.get(k) == v for k, v in ssel.items()), "the headless Service selects the pods")
    tps = [p.get("targetPort") for p in svc.get("spec", {}).get("ports", [])]
    check(tps and all(t == port or ports.get(t) == port for t in tps), "the Service targets the container port")

    # the router: nginx hashing X-Adapter over the headless Service, behind the Service "peftd"
    rdep, rcm, front = named(objs, "Deployment", "peftd-router"), named(objs, "ConfigMap", "peftd-router"), named(objs, "Service", "peftd")
    conf = rcm.get("data", {}).get("nginx.conf", "")
    check("hash $http_x_adapter consistent;" in conf, "the router hashes X-Adapter consistently")
    m = re.search(r"server\s+(\S+):(\d+)\s+resolve", conf)
    check(m is not None and m.group(1).startswith("peftd-pods.") and int(m.group(2)) == port,
          "the router's upstream is the headless Service, re-resolved")
    check(re.search(r"^\s*resolver\s", conf, re.M) and re.search(r"zone\s+peftd", conf), "resolver and a shared zone for resolve")
    rlabels = rdep.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    fsel = front.get("spec", {}).get("selector", {})
    check(fsel and all(rlabels.get(k) == v for k, v in fsel.items()), "the Service peftd selects the router")
    rpod = rdep.get("spec", {}).get("template", {}).get("spec", {})
    mounts = {v.get("name"): v for v in rpod.get("volumes", [])}
    check(any(v.get("configMap", {}).get("name") == "peftd-router" for v in mounts.values()), "the router mounts its nginx.conf")


def compose_check():
    with open(os.path.join(ROOT, "docker", "compose.yaml"), encoding="utf-8") as fh:
        comp = yaml.safe_load(fh)
    services = comp.get("services", {})
    reps = [s for n, s in services.items() if n.startswith("peftd")]
    check(len(reps) == 2, "compose: 2 peftd replicas")
    vols = [set(v.split(":")[0] for v in s.get("volumes", [])) for s in reps]
    check(len(vols) == 2 and vols[0] == vols[1] and "peftd-data" in vols[0], "compose: replicas share the volume")
    check("peftd-data" in (comp.get("volumes") or {}), "compose: the volume is a named volume")
    ngx = services.get("nginx", {})
    check(any(v.startswith("./nginx.conf:") for v in ngx.get("volumes", [])), "compose: nginx uses docker/nginx.conf")
    conf = open(os.path.join(ROOT, "docker", "nginx.conf"), encoding="utf-8").read()
    for n in services:
        if n.startswith("peftd"):
            check(re.search(r"server\s+%s:8080" % re.escape(n), conf), "nginx.conf has upstream " + n)
    check("hash $http_x_adapter consistent;" in conf, "nginx.conf hashes X-Adapter consistently")


def main():
    files, objs = load_all()
    schema_check([f for f in files])
    structure_check(files, objs)
    compose_check()
    print("e2e_k8s: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
