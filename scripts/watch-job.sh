#!/usr/bin/env bash
# watch-job.sh ID [INTERVAL] - polls GET /jobs/ID every INTERVAL seconds (default 1) and prints
# a line whenever it changes: status, epoch, step/total, the latest training loss and the latest
# evaluation (docs/TRAINING.md), until the job has ended. Exits 0 if it succeeded, 1 otherwise.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pd_positional "$@"
[ ${#POS[@]} -ge 1 ] && [ ${#POS[@]} -le 2 ] || pd_usage_error "usage: $(basename "$0") ID [INTERVAL]"
id=${POS[0]} interval=${POS[1]:-1}
pd_number INTERVAL "$interval"
command -v python3 >/dev/null 2>&1 || { echo "$0: needs python3 to read the job's JSON" >&2; exit 1; }

last=""
while :; do
    body=$(api GET "/jobs/$id") || { printf '%s\n' "$body" | pretty >&2; exit 1; }
    line=$(printf '%s' "$body" | python3 -c '
import json, sys
j = json.load(sys.stdin)
st = j.get("status", "?")
out = ["%-9s" % st]
if j.get("epoch") is not None:
    out.append("epoch %.2f/%s" % (j["epoch"], j.get("epochs", "?")))
if j.get("step") is not None:
    out.append("step %s/%s" % (j["step"], j.get("total_steps", "?")))
if j.get("loss"):
    out.append("loss %.4f" % j["loss"][-1][1])
if j.get("eval"):
    step, m = j["eval"][-1]
    out.append("eval@%s " % step + " ".join("%s %.4f" % (k, v) for k, v in sorted(m.items())))
if j.get("published_versions"):
    out.append("published %s" % j["published_versions"])
if j.get("error"):
    out.append("error: %s" % j["error"])
end = st in ("succeeded", "failed", "cancelled")
print(("END:" + st + " " if end else "") + "  ".join(out))
')
    shown=${line#END:* }
    if [ "$shown" != "$last" ]; then
        echo "$(date +%H:%M:%S) $shown"
        last=$shown
    fi
    case "$line" in
        END:succeeded*) exit 0 ;;
        END:*) exit 1 ;;
    esac
    sleep "$interval"
done
