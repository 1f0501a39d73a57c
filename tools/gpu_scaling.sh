#!/usr/bin/env bash
# Data-parallel scaling and resume on another device count, one process on a multi-GPU machine
# (issue 16, runs 1 and 3).
#
#   tools/gpu_scaling.sh prepare [REPO_ROOT]    here: release binary -> REPO_ROOT/.device-carry/
#                                               scaling (git-ignored); carry it with
#                                               .device-carry/feed for the `resume` group's shards
#   tools/gpu_scaling.sh run GROUP [REPO_ROOT]  on the GPU machine; GROUP is one of
#       scaling  BERT-base and BERT-large seq 128 pretraining steps (`pretrain --bench-steps`,
#                synthetic batches on the devices) on 1, 2, 4 and 8 GPUs (as many as there are),
#                the batch per GPU fixed; prints seq/s and the scaling efficiency
#                seq/s(N) / (N x seq/s(1)) against the targets (>= 0.95 at 2, >= 0.90 at 8)
#       resume   BERT-mini on the create-data shards of .device-carry/feed: STEPS steps on 4 GPUs
#                uninterrupted; the same stopped after HALF steps on 4 GPUs, resumed on 2, and
#                (from the same checkpoint) on 1, with the same global batch; prints each run's
#                losses side by side and the examples seen at the end (a count: the reader's
#                position itself comes back from the checkpoint, which
#                tests/pretrain_device_change.rs checks record by record on CPU devices)
#
# Every group writes GROUP.jsonl and GROUP.txt into $OUT (or ./scaling-out without $OUT).
# Settings (environment): BENCH_STEPS (20), PER_GPU_BASE (256), PER_GPU_LARGE (64), GPUS (the
# counts to try, default "1 2 4 8" cut to the machine's), STEPS (40), HALF (20), BATCH (32),
# BACKEND (cuda; `cpu` smoke-tests the script with virtual devices and the tiny preset).
set -euo pipefail

cmd=${1:-}
case "$cmd" in
    prepare) ROOT=$(cd "${2:-.}" && pwd) ;;
    run) GROUP=${2:?run needs a GROUP}; ROOT=$(cd "${3:-.}" && pwd) ;;
    *) echo "usage: $0 prepare [REPO_ROOT] | run GROUP [REPO_ROOT]" >&2; exit 2 ;;
esac
CARRY="$ROOT/.device-carry/scaling"
BACKEND=${BACKEND:-cuda}

prepare() {
    (cd "$ROOT" && cargo build --release --bin tpu-run)
    rm -rf "$CARRY"
    mkdir -p "$CARRY"
    gzip -9 -c "$ROOT/target/release/tpu-run" > "$CARRY/tpu-run.gz"
    du -sh "$CARRY"
}

gpu_count() {
    if [ "$BACKEND" = cpu ]; then echo 8; return; fi
    nvidia-smi --query-gpu=name --format=csv,noheader | wc -l
}

run() {
    [ -f "$CARRY/tpu-run.gz" ] || { echo "run: $CARRY/tpu-run.gz is missing; run \`$0 prepare\` and carry .device-carry/scaling" >&2; exit 1; }
    local out=${OUT:-$ROOT/scaling-out} work bin
    work=$(mktemp -d)
    mkdir -p "$out"
    bin="$work/tpu-run"
    gzip -dc "$CARRY/tpu-run.gz" > "$bin"
    chmod +x "$bin"
    local have
    have=$(gpu_count)
    { [ "$BACKEND" = cpu ] && echo "cpu (virtual devices)" || nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee "$out/$GROUP.txt"
    case "$GROUP" in
        scaling) scaling "$bin" "$have" "$out" ;;
        resume) resume "$bin" "$have" "$out" "$work" ;;
        *) echo "run: unknown group $GROUP" >&2; exit 2 ;;
    esac
}

scaling() {
    local bin=$1 have=$2 out=$3 model per n line
    local presets="base large" precision=bf16
    [ "$BACKEND" = cpu ] && presets=tiny && precision=f32
    for model in $presets; do
        per=${PER_GPU_BASE:-256}
        [ "$model" = large ] && per=${PER_GPU_LARGE:-64}
        [ "$BACKEND" = cpu ] && per=4
        for n in ${GPUS:-1 2 4 8}; do
            [ "$n" -le "$have" ] || continue
            echo "== $model, $n device(s), batch $((per * n))" | tee -a "$out/scaling.txt"
            if line=$(timeout 600 "$bin" pretrain --backend "$BACKEND" --preset "$model" \
                    --seq-len 128 --max-predictions 20 --batch-size $((per * n)) \
                    --num-devices "$n" --precision "$precision" --synthetic-data \
                    --bench-steps "${BENCH_STEPS:-20}" 2>> "$out/scaling.txt" | tail -n 1) \
                    && [[ "$line" == "{"* ]]; then
                echo "$line" | tee -a "$out/scaling.jsonl"
            else
                echo "== failed: $model on $n device(s)" | tee -a "$out/scaling.txt"
            fi
        done
    done
    python3 - "$out/scaling.jsonl" <<'PY' | tee -a "$out/scaling.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
one = {r["preset"]: r["seq_per_s"] for r in rows if r["devices"] == 1}
target = {2: 0.95, 8: 0.90}
for r in rows:
    base = one.get(r["preset"])
    n = r["devices"]
    eff = r["seq_per_s"] / (n * base) if base else None
    verdict = ""
    if eff is not None and n in target:
        verdict = " (target >= %.2f: %s)" % (target[n], "met" if eff >= target[n] else "NOT met")
    print("%-6s %d device(s) batch %4d: %8.1f seq/s, efficiency %s%s" % (
        r["preset"], n, r["batch"], r["seq_per_s"],
        "%.3f" % eff if eff is not None else "-", verdict))
PY
}

resume() {
    local bin=$1 have=$2 out=$3 work=$4 shards="$ROOT/.device-carry/feed/shards"
    [ "$have" -ge 4 ] || { echo "resume: needs 4 devices, this machine has $have" | tee -a "$out/resume.txt"; return 1; }
    [ -d "$shards" ] || { echo "resume: $shards is missing: run tools/gpu_feed.sh prepare and carry .device-carry/feed" >&2; return 1; }
    mkdir -p "$work/shards"
    for f in "$shards"/*.gz; do gzip -dc "$f" > "$work/shards/$(basename "$f" .gz)"; done
    local preset=mini precision=bf16
    [ "$BACKEND" = cpu ] && preset=tiny && precision=f32
    local common=(--backend "$BACKEND" --preset "$preset" --seq-len 128 --max-predictions 20
                  --batch-size "${BATCH:-32}" --precision "$precision" --steps "${STEPS:-40}"
                  --warmup-steps 4 --data "$work/shards/*.tfrecord" --log-every 1
                  --checkpoint-interval "${HALF:-20}")
    local half=${HALF:-20}
    go() { # name devices output-dir [flags...]
        local name=$1 n=$2 dir=$3
        shift 3
        echo "== $name: $n device(s)" | tee -a "$out/resume.txt"
        timeout 600 "$bin" pretrain "${common[@]}" --num-devices "$n" --output-dir "$dir" "$@" \
            >> "$out/resume.txt" 2>&1 || echo "== $name failed" | tee -a "$out/resume.txt"
    }
    go uninterrupted 4 "$work/r4" --no-resume
    go first-half 4 "$work/half" --no-resume --stop-after "$half"
    cp -r "$work/half" "$work/on1"
    go resumed-on-2 2 "$work/half"
    go resumed-on-1 1 "$work/on1"
    python3 - "$work" "$half" <<'PY' | tee "$out/resume.jsonl"
import json, os, sys
work, half = sys.argv[1], int(sys.argv[2])
def records(d):
    p = os.path.join(work, d, "metrics.jsonl")
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
runs = {"4 GPUs": "r4", "4 then 2": "half", "4 then 1": "on1"}
losses, seen = {}, {}
for name, d in runs.items():
    rows = records(d)
    losses[name] = {r["step"]: r["loss"] for r in rows if r.get("kind") == "train"}
    seen[name] = max((r.get("examples_seen", 0) for r in rows if r.get("kind") == "train"), default=None)
steps = sorted(set().union(*[set(v) for v in losses.values()]))
for s in steps:
    print(json.dumps({"step": s, **{k: v.get(s) for k, v in losses.items()}}))
print(json.dumps({"examples_seen_at_end": seen, "resumed_at": half,
                  "nothing_lost_or_repeated": len(set(seen.values())) == 1 and None not in seen.values()}))
PY
}

"$cmd"
