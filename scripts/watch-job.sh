#!/usr/bin/env bash
# watch-job.sh ID [INTERVAL] - polls GET /jobs/ID every INTERVAL seconds (default 1) and prints
# one line per change (status, step, epoch, loss, eval metrics) until the job has ended.
# Exits 0 if it succeeded, 1 if it failed or was cancelled.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 ID [INTERVAL]" >&2; exit 2; }
id=$1 interval=${2:-1}
command -v python3 >/dev/null 2>&1 || { echo "$0: needs python3 to read the job's JSON" >&2; exit 1; }

last=""
while :; do
    body=$(api GET "/jobs/$id") || exit 1
    line=$(printf '%s' "$body" | python3 -c '
import json, sys
j = json.load(sys.stdin)
st = j.get("status") or j.get("state") or "?"
parts = ["status=%s" % st]
for k in ("epoch", "step", "steps", "loss", "eval_loss", "accuracy", "f1", "adapter", "version", "error"):
    v = j.get(k)
    if v is None and isinstance(j.get("progress"), dict): v = j["progress"].get(k)
    if v is None and isinstance(j.get("metrics"), dict): v = j["metrics"].get(k)
    if v is not None:
        parts.append("%s=%s" % (k, ("%.4f" % v) if isinstance(v, float) else v))
done = st in ("succeeded", "done", "completed", "failed", "cancelled", "canceled", "error")
print(("END " if done else "") + " ".join(parts))
')
    if [ "$line" != "$last" ]; then
        echo "$(date +%H:%M:%S) ${line#END }"
        last=$line
    fi
    case "$line" in
        "END status=succeeded"*|"END status=done"*|"END status=completed"*) exit 0 ;;
        END*) exit 1 ;;
    esac
    sleep "$interval"
done
