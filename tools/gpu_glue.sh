#!/usr/bin/env bash
# MRPC fine-tuning from all-MiniLM-L6-v2 on one GPU: tpu-run against PyTorch + Hugging Face
# transformers (tools/hf_glue_finetune.py) on the same files, initial weights and
# hyperparameters (seq 128, batch 32, lr 2e-5, 3 epochs = 343 steps, 10% warmup), per seed.
#
#   tools/gpu_glue.sh prepare [REPO_ROOT]   here: the existing release binary (not rebuilt), MRPC
#                                           train/dev, the model, the HF script
#                                           -> REPO_ROOT/.device-carry/glue (git-ignored)
#   tools/gpu_glue.sh run [REPO_ROOT]       on the GPU machine (no network needed)
#   tools/gpu_glue.sh compare FILE...       the comparison line over results.jsonl files (for
#                                           seeds split over several `run` calls)
#
# `run` prints one JSON line per result (environment; per seed: ours, HF; then a comparison:
# dev accuracy and F1 x100 of each side, the difference of the means, train seq/s and its
# ratio, and whether |accuracy|, |F1| differences are <= 1 point and the ratio >= 1.5). With
# $OUT set, results.jsonl and logs/ are written there as the runs go.
#
# The weights are rounded to bfloat16 and kept as f32 (see tools/gpu_squad.sh) so that the
# folder compresses to about 50 MiB: carry only .device-carry/glue (the 64 MiB limit).
# Time on an H100: about a minute per seed (both sides, each mostly start-up and compiles), so
# the default 3 seeds fit one 10-minute call; if not, split them (SEEDS="1 2", then SEEDS=3)
# and combine with `compare`.
#
# Settings (environment): SEEDS ("1 2 3"), PY (/opt/torch/.venv/bin/python, else python3); for
# a smoke test elsewhere: BACKEND (cuda; cpu also runs HF on the cpu), MAX_STEPS (both sides).
set -euo pipefail

cmd=${1:-}
if [ "$cmd" = compare ]; then
    shift
    ROOT=.
else
    ROOT=$(cd "${2:-.}" && pwd)
fi
CARRY="$ROOT/.device-carry/glue"

# The comparison line of results.jsonl files given as arguments (run by $PY or python3).
COMPARE=$(cat <<'PY'
import json, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.strip().startswith("{")]
mean = lambda v: sum(v) / len(v) if v else None
out = {"comparison": "MiniLM-L6 MRPC dev, over seeds (accuracy and f1 x100)"}
for name, run in (("ours", "tpu-run finetune glue"), ("hf", "hf_glue_finetune.py")):
    rs = [r for r in rows if r.get("run") == run and "dev" in r.get("eval", {})]
    side = {"seeds": [r.get("seed") for r in rs]}
    for k in ("accuracy", "f1"):
        v = [100 * r["eval"]["dev"][k] for r in rs]
        side[k] = {"mean": mean(v), "min": min(v, default=None), "max": max(v, default=None)}
    for k in ("train_seq_per_s", "train_s", "total_s", "last_loss"):
        side[k] = mean([r[k] for r in rs if r.get(k) is not None])
    side["device"] = rs[0].get("device") if rs else None
    out[name] = side
o, h = out["ours"], out["hf"]
if o["seeds"] and h["seeds"]:
    da = o["accuracy"]["mean"] - h["accuracy"]["mean"]
    df = o["f1"]["mean"] - h["f1"]["mean"]
    ratio = o["train_seq_per_s"] / h["train_seq_per_s"] if h["train_seq_per_s"] else None
    out.update({
        "accuracy_ours_minus_hf": da, "f1_ours_minus_hf": df,
        "train_seq_per_s_ratio": ratio,
        "accuracy_within_1": abs(da) <= 1.0, "f1_within_1": abs(df) <= 1.0,
        "seq_per_s_ratio_at_least_1_5": ratio is not None and ratio >= 1.5,
    })
    out["pass"] = out["accuracy_within_1"] and out["f1_within_1"] and \
        out["seq_per_s_ratio_at_least_1_5"]
print(json.dumps(out))
PY
)

prepare() {
    local data="$ROOT/../shared/data/glue/MRPC" bin="$ROOT/target/release/tpu-run"
    [ -f "$data/train.tsv" ] && [ -f "$data/dev.tsv" ] || { echo "prepare: no MRPC train/dev.tsv in $data" >&2; exit 1; }
    [ -x "$bin" ] || { echo "prepare: $bin is absent; build it (cargo build --release --bin tpu-run)" >&2; exit 1; }
    local py=""
    for p in ${PREP_PY:-} python3 /tmp/hfvenv/bin/python; do
        if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then py=$p; break; fi
    done
    [ -n "$py" ] || { echo "prepare: no python with numpy (set PREP_PY)" >&2; exit 1; }
    local model
    model=$(python3 -c 'import os; print(os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tpu-run", "models", "all-minilm-l6-v2"))')
    [ -f "$model/model.safetensors" ] || { echo "prepare: no MiniLM in $model; run \`cargo test --test import_minilm\` once (it fetches it)" >&2; exit 1; }
    rm -rf "$CARRY"
    mkdir -p "$CARRY/data" "$CARRY/minilm"
    local tmpbin="$CARRY/tpu-run.tmp"
    cp "$bin" "$tmpbin"  # a stable copy: the binary may be rebuilt meanwhile
    python3 - "$tmpbin" "$ROOT" > "$CARRY/prepared.json" <<'PY'
import hashlib, json, os, subprocess, sys, time
b, root = sys.argv[1], sys.argv[2]
git = lambda *a: subprocess.run(["git", "-C", root, *a], capture_output=True, text=True,
                                env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}).stdout.strip()
print(json.dumps({"prepared": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "binary_sha256": hashlib.sha256(open(b, "rb").read()).hexdigest(),
                  "binary_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                time.gmtime(os.path.getmtime(os.path.join(root, "target/release/tpu-run")))),
                  "git_head": git("rev-parse", "--short", "HEAD"),
                  "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}))
PY
    gzip -9 -c "$tmpbin" > "$CARRY/tpu-run.gz"
    rm -f "$tmpbin"
    cp "$data/train.tsv" "$data/dev.tsv" "$CARRY/data/"
    cp "$ROOT/tools/hf_glue_finetune.py" "$CARRY/"
    cp "$model"/{config.json,vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json} "$CARRY/minilm/"
    # f32 -> bf16 (round to nearest even) kept as f32, as tools/gpu_squad.sh: both sides start
    # from exactly these weights.
    "$py" - "$model/model.safetensors" "$CARRY/minilm/model.safetensors" <<'PY'
import json, struct, sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
body = np.frombuffer(raw[8 + n:], dtype=np.uint8).copy()
for name, t in header.items():
    if name == "__metadata__" or t["dtype"] != "F32":
        continue  # integer buffers (position_ids) stay as they are
    s, e = t["data_offsets"]
    u = body[s:e].view("<u4")
    u[:] = ((u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
with open(dst, "wb") as f:
    f.write(raw[:8 + n])
    f.write(body.tobytes())
PY
    gzip -9 -f "$CARRY/minilm/model.safetensors"
    local kib
    kib=$(du -sk "$CARRY" | cut -f1)
    echo "prepared $CARRY: $((kib / 1024)) MiB ($kib KiB; the device tool carries at most 64 MiB in all)"
    du -sh "$CARRY"/* | sed "s|$CARRY/||"
    [ "$kib" -lt $((60 * 1024)) ] || { echo "prepare: $CARRY is too large to carry" >&2; exit 1; }
    local others
    others=$(du -sk "$ROOT/.device-carry" | cut -f1)
    [ "$others" -le $((kib + 64)) ] || echo "note: .device-carry holds $((others / 1024)) MiB in all; carry only .device-carry/glue"
    echo "on the GPU machine: tools/gpu_glue.sh run .   (carry .device-carry/glue)"
}

run() {
    local PY=${PY:-/opt/torch/.venv/bin/python}
    [ -x "$PY" ] || PY=python3
    local WORK=/tmp/gpu_glue SEEDS=${SEEDS:-"1 2 3"} BACKEND=${BACKEND:-cuda}
    local BIN="$WORK/tpu-run" RESULTS="$WORK/results.jsonl" data="$CARRY/data"
    local steps=() hfdev=()
    [ -n "${MAX_STEPS:-}" ] && steps=(--max-steps "$MAX_STEPS")
    [ "$BACKEND" = cpu ] && hfdev=(--device cpu)
    [ -f "$CARRY/tpu-run.gz" ] || { echo "run: $CARRY/tpu-run.gz is missing; run \`tools/gpu_glue.sh prepare\` first and carry .device-carry/glue" >&2; exit 1; }
    rm -rf "$WORK"
    mkdir -p "$WORK/minilm"
    gzip -dc "$CARRY/tpu-run.gz" > "$BIN"
    chmod +x "$BIN"
    : > "$RESULTS"
    if [ -n "${OUT:-}" ]; then mkdir -p "$OUT/logs"; : > "$OUT/results.jsonl"; fi
    cp "$CARRY"/minilm/*.json "$CARRY"/minilm/vocab.txt "$WORK/minilm/"
    gzip -dc "$CARRY/minilm/model.safetensors.gz" > "$WORK/minilm/model.safetensors"
    emit() {
        echo "$1"
        echo "$1" >> "$RESULTS"
        [ -z "${OUT:-}" ] || echo "$1" >> "$OUT/results.jsonl"
    }
    # The last line of a command's stdout if it is JSON, else an error line with its log's tail.
    json_or_error() {
        local what=$1 log=$2 line
        line=$(tail -n 1 "$log.out" 2>/dev/null || true)
        if [[ "$line" == "{"* ]]; then emit "$line"; else
            emit "$("$PY" -c 'import json,sys; print(json.dumps({"error": sys.argv[1], "log_tail": open(sys.argv[2]).read()[-1500:]}))' "$what" "$log.err")"
        fi
        [ -z "${OUT:-}" ] || cp "$log.out" "$log.err" "$OUT/logs/" 2>/dev/null || true
    }
    emit "$("$PY" - "$CARRY/prepared.json" "$BACKEND" "$SEEDS" "${MAX_STEPS:-}" <<'PY'
import json, subprocess, sys
env = {"env": None, "backend": sys.argv[2], "seeds": sys.argv[3], "max_steps": sys.argv[4] or None}
try:
    env["env"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                 "--format=csv,noheader"], capture_output=True,
                                text=True).stdout.strip()
except OSError as e:
    env["env"] = f"no nvidia-smi: {e}"
for mod in ("torch", "transformers"):
    try:
        env[mod] = __import__(mod).__version__
    except Exception as e:
        env[mod] = f"not importable: {e}"
try:
    env["prepared"] = json.load(open(sys.argv[1]))
except OSError:
    pass
print(json.dumps(env))
PY
)"
    local t0=$SECONDS
    for seed in $SEEDS; do
        local log="$WORK/ours-$seed"
        timeout 600 "$BIN" finetune glue --task mrpc --backend "$BACKEND" --init "$WORK/minilm" \
            --data-dir "$data" --output-dir "$log" --seed "$seed" --no-checkpoint --no-progress \
            --json "${steps[@]}" > "$log.out" 2> "$log.err" || true
        json_or_error "tpu-run finetune glue seed $seed" "$log"
        log="$WORK/hf-$seed"
        timeout 600 "$PY" "$CARRY/hf_glue_finetune.py" --model "$WORK/minilm" --data-dir "$data" \
            --task mrpc --seed "$seed" "${hfdev[@]}" "${steps[@]}" > "$log.out" 2> "$log.err" || true
        json_or_error "hf_glue_finetune.py seed $seed" "$log"
    done
    local line
    line=$("$PY" -c "$COMPARE" "$RESULTS")
    emit "${line%\}}, \"seconds\": $((SECONDS - t0))}"
}

case "$cmd" in
    prepare) prepare ;;
    run) run ;;
    compare) [ $# -gt 0 ] || { echo "usage: $0 compare RESULTS.jsonl..." >&2; exit 2; }
             "${PY:-python3}" -c "$COMPARE" "$@" ;;
    *) echo "usage: $0 prepare|run [REPO_ROOT] | compare RESULTS.jsonl..." >&2; exit 2 ;;
esac
