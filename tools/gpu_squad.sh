#!/usr/bin/env bash
# SQuAD fine-tuning on one GPU: tpu-run against PyTorch + Hugging Face transformers on the same
# split, init and hyperparameters, and the BERT-base train-step throughput of both.
#
#   tools/gpu_squad.sh prepare [REPO_ROOT]   here: release binary, split, model, scripts
#                                            -> REPO_ROOT/.device-carry/squad (git-ignored)
#   tools/gpu_squad.sh run [REPO_ROOT]       on the GPU machine (no network needed)
#
# `run` prints one JSON line per result (environment; per seed: ours, HF, HF's predictions
# scored by tpu-run squad-eval; the BERT-base seq 384 batch 32 throughput of ours and of
# ../shared/bench/torch_bert.py's PyTorch eager step; a comparison) and, when $OUT is set,
# writes them to $OUT/gpu_squad.jsonl with each run's log.
#
# The carried folder must stay under the device tool's 64 MiB, and all-MiniLM-L6-v2's
# model.safetensors (f32) is 91 MB and does not compress. So `prepare` rounds its weights to
# bfloat16 (round to nearest even) and stores them as f32 with zero low halves, which gzip
# halves; both frameworks start from exactly these weights (same init), which differ from the
# released ones by at most 2^-9 relative.
#
# Settings (environment): SEEDS ("1 2"), VAL_ARTICLES (6), SPLIT_SEED (12345), BENCH_STEPS (30),
# PY (/opt/torch/.venv/bin/python, else python3), SKIP_BENCH=1, SKIP_FINETUNE=1; for a smoke
# test elsewhere: BACKEND (cuda), MAX_STEPS (both fine-tunings), BENCH_PRESET (base).
set -euo pipefail

cmd=${1:-}
ROOT=$(cd "${2:-.}" && pwd)
CARRY="$ROOT/.device-carry/squad"
VAL_ARTICLES=${VAL_ARTICLES:-6}
SPLIT_SEED=${SPLIT_SEED:-12345}

prepare() {
    local squad="$ROOT/../shared/data/squad/train-a-v1.1.json"
    local bench="$ROOT/../shared/bench/torch_bert.py"
    [ -f "$squad" ] || { echo "prepare: $squad is absent" >&2; exit 1; }
    [ -f "$bench" ] || { echo "prepare: $bench is absent" >&2; exit 1; }
    (cd "$ROOT" && cargo build --release --bin tpu-run)
    rm -rf "$CARRY"
    mkdir -p "$CARRY/data" "$CARRY/minilm"
    gzip -9 -c "$ROOT/target/release/tpu-run" > "$CARRY/tpu-run.gz"
    cp "$bench" "$CARRY/"
    "$ROOT/target/release/tpu-run" squad-split "$squad" --val-articles "$VAL_ARTICLES" --seed "$SPLIT_SEED" \
        --out-train "$CARRY/data/train.json" --out-val "$CARRY/data/val.json"
    # The model directory (fetched into the cache once; the tests use the same copy).
    local model
    model=$(python3 - <<'PY'
import os
print(os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                   "tpu-run", "models", "all-minilm-l6-v2"))
PY
)
    [ -f "$model/model.safetensors" ] || { echo "prepare: no MiniLM in $model; run \`cargo test --test import_minilm\` once (it fetches it)" >&2; exit 1; }
    cp "$model"/{config.json,vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json} "$CARRY/minilm/"
    python3 - "$model/model.safetensors" "$CARRY/minilm/model.safetensors" <<'PY'
import json, struct, sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
body = np.frombuffer(raw[8 + n:], dtype=np.uint8).copy()
for name, t in header.items():
    if name == "__metadata__":
        continue
    if t["dtype"] != "F32":
        continue  # integer buffers (position_ids) stay as they are
    s, e = t["data_offsets"]
    u = body[s:e].view("<u4")
    # f32 -> bf16, round to nearest even, kept as f32 (NaN/inf do not occur in these weights).
    u[:] = ((u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
with open(dst, "wb") as f:
    f.write(raw[:8 + n])
    f.write(body.tobytes())
PY
    gzip -9 -f "$CARRY/minilm/model.safetensors"
    echo "prepared $CARRY ($(du -sh "$CARRY" | cut -f1)); on the GPU machine: tools/gpu_squad.sh run ."
}

run() {
    local PY=${PY:-/opt/torch/.venv/bin/python}
    [ -x "$PY" ] || PY=python3
    local WORK=/tmp/gpu_squad SEEDS=${SEEDS:-"1 2"} BACKEND=${BACKEND:-cuda}
    local BIN="$WORK/tpu-run" RESULTS="$WORK/results.jsonl"
    local steps=()
    [ -n "${MAX_STEPS:-}" ] && steps=(--max-steps "$MAX_STEPS")
    [ -f "$CARRY/tpu-run.gz" ] || { echo "run: $CARRY/tpu-run.gz is missing; run \`tools/gpu_squad.sh prepare\` first and carry .device-carry/squad" >&2; exit 1; }
    rm -rf "$WORK"
    mkdir -p "$WORK/minilm"
    gzip -dc "$CARRY/tpu-run.gz" > "$BIN"
    chmod +x "$BIN"
    : > "$RESULTS"
    cp "$CARRY"/minilm/*.json "$CARRY"/minilm/vocab.txt "$WORK/minilm/"
    gzip -dc "$CARRY/minilm/model.safetensors.gz" > "$WORK/minilm/model.safetensors"
    emit() { echo "$1"; echo "$1" >> "$RESULTS"; }
    # The last line of a command's stdout if it is JSON, else an error line with its log's tail.
    json_or_error() {
        local what=$1 log=$2 line
        line=$(tail -n 1 "$log.out" 2>/dev/null || true)
        if [[ "$line" == "{"* ]]; then emit "$line"; else
            emit "$("$PY" -c 'import json,sys; print(json.dumps({"error": sys.argv[1], "log_tail": open(sys.argv[2]).read()[-1500:]}))' "$what" "$log.err")"
        fi
    }
    emit "$("$PY" - <<'PY'
import json, subprocess
env = {}
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
print(json.dumps(env))
PY
)"
    local data="$CARRY/data" t0=$SECONDS
    if [ -z "${SKIP_FINETUNE:-}" ]; then
        for seed in $SEEDS; do
            local log="$WORK/ours-$seed"
            timeout 600 "$BIN" finetune squad --backend "$BACKEND" --init "$WORK/minilm" \
                --train "$data/train.json" --predict "$data/val.json" --output-dir "$log" \
                --seed "$seed" --no-checkpoint --no-progress --log-every 100 --json "${steps[@]}" \
                > "$log.out" 2> "$log.err" || true
            json_or_error "tpu-run finetune squad seed $seed" "$log"
            log="$WORK/hf-$seed"
            timeout 600 "$PY" "$ROOT/tools/hf_squad_finetune.py" --model "$WORK/minilm" \
                --train "$data/train.json" --predict "$data/val.json" --output-dir "$log" \
                --seed "$seed" "${steps[@]}" > "$log.out" 2> "$log.err" || true
            json_or_error "hf_squad_finetune.py seed $seed" "$log"
            if [ -f "$log/predictions.json" ]; then
                emit "{\"check\": \"HF seed $seed predictions scored by tpu-run squad-eval\", \"scores\": $("$BIN" squad-eval "$data/val.json" "$log/predictions.json" 2>/dev/null)}"
            fi
        done
    fi
    if [ -z "${SKIP_BENCH:-}" ]; then
        local log="$WORK/bench-ours"
        timeout 600 "$BIN" finetune squad --backend "$BACKEND" --synthetic-bench \
            --preset "${BENCH_PRESET:-base}" \
            --batch-size 32 --max-seq-length 384 --max-steps "${BENCH_STEPS:-30}" \
            > "$log.out" 2> "$log.err" || true
        json_or_error "tpu-run --synthetic-bench base" "$log"
        log="$WORK/bench-torch"
        timeout 600 "$PY" - "$CARRY" > "$log.out" 2> "$log.err" <<'PY' || true
import sys
sys.path.insert(0, sys.argv[1])
import torch_bert  # ../shared/bench/torch_bert.py, carried
torch_bert.bench("squad", "base", 32, 384, False)
PY
        json_or_error "torch_bert.py squad base 32x384 eager" "$log"
    fi
    emit "$("$PY" - "$RESULTS" $((SECONDS - t0)) <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ours = [r for r in rows if r.get("run") == "tpu-run finetune squad"]
hf = [r for r in rows if r.get("run") == "hf transformers"]
mean = lambda v: sum(v) / len(v) if v else None
out = {"comparison": "MiniLM-L6 SQuAD, mean over seeds", "seconds": int(sys.argv[2])}
for name, rs in (("ours", ours), ("hf", hf)):
    out[name] = {k: mean([r[k] for r in rs if r.get(k) is not None])
                 for k in ("exact_match", "f1", "train_s", "predict_s", "total_s",
                           "train_seq_per_s")}
    out[name]["seeds"] = [r.get("seed") for r in rs]
if ours and hf and out["ours"]["f1"] is not None and out["hf"]["f1"] is not None:
    out["f1_ours_minus_hf"] = out["ours"]["f1"] - out["hf"]["f1"]
    out["train_seq_per_s_ratio"] = out["ours"]["train_seq_per_s"] / out["hf"]["train_seq_per_s"]
b = [r for r in rows if str(r.get("bench", "")).startswith("tpu-run")]
t = [r for r in rows if r.get("anchor") == "torch"]
if b and t and "seq_per_s" in t[0]:
    out["bert_base_384x32_seq_per_s"] = {"ours": b[0].get("seq_per_s"), "torch_eager": t[0]["seq_per_s"]}
print(json.dumps(out))
PY
)"
    if [ -n "${OUT:-}" ]; then
        cp "$RESULTS" "$OUT/gpu_squad.jsonl"
        tar -C "$WORK" -czf "$OUT/gpu_squad_logs.tgz" --exclude='*.safetensors' --exclude=minilm . || true
    fi
}

case "$cmd" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: $0 prepare|run [REPO_ROOT]" >&2; exit 2 ;;
esac
