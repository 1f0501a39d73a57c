#!/usr/bin/env bash
# A/B timing of two tpu-run builds on one GPU: the same `tpu-run bench` configuration run by the
# binary before a change (A) and after it (B), alternating A B A B so drift hits both alike.
#
#   tools/gpu_ab.sh prepare A_BINARY [REPO_ROOT]   here: B is target/release/tpu-run (rebuilt);
#                                                   both gzipped -> REPO_ROOT/.device-carry/ab
#   tools/gpu_ab.sh run [REPO_ROOT]                 on the GPU machine
#
# `run` writes ab.jsonl (the bench records, A's then B's per round, told apart by
# env.git_commit) and ab.txt into $OUT (./ab-out without it) and prints each round's median step
# and the B/A throughput ratio of the medians over the rounds.
# Settings (environment): ROUNDS (2), STEPS (20), ARGS (the bench configuration; default
# BERT-base pretraining seq 128 batch 256, bf16, cuDNN attention, BERT's dropout).
set -euo pipefail

cmd=${1:-}
case "$cmd" in
    prepare) A=${2:?prepare needs the A binary}; ROOT=$(cd "${3:-.}" && pwd) ;;
    run) ROOT=$(cd "${2:-.}" && pwd) ;;
    *) echo "usage: $0 prepare A_BINARY [REPO_ROOT] | run [REPO_ROOT]" >&2; exit 2 ;;
esac
CARRY="$ROOT/.device-carry/ab"
ARGS=${ARGS:-"--backend cuda --precision bf16 --attention cudnn --model base --task pretrain --seq 128 --batch 256"}

prepare() {
    [ -x "$A" ] || { echo "prepare: $A is not an executable" >&2; exit 1; }
    (cd "$ROOT" && cargo build --release --bin tpu-run)
    rm -rf "$CARRY"
    mkdir -p "$CARRY"
    gzip -9 -c "$A" > "$CARRY/a.gz"
    gzip -9 -c "$ROOT/target/release/tpu-run" > "$CARRY/b.gz"
    du -sh "$CARRY"
}

run() {
    [ -f "$CARRY/a.gz" ] && [ -f "$CARRY/b.gz" ] || { echo "run: carry .device-carry/ab (\`$0 prepare\` first)" >&2; exit 1; }
    local out=${OUT:-$ROOT/ab-out} work r v
    work=$(mktemp -d)
    mkdir -p "$out"
    for v in a b; do gzip -dc "$CARRY/$v.gz" > "$work/$v"; chmod +x "$work/$v"; done
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/ab.txt" || true
    for r in $(seq 1 "${ROUNDS:-2}"); do
        for v in a b; do
            # shellcheck disable=SC2086 # ARGS is a list of flags
            (cd "$work" && "./$v" bench $ARGS --repeat 1 --steps "${STEPS:-20}" --out "$work/$v.part") \
                >> "$out/ab.txt" 2>&1 || echo "== $v round $r failed" | tee -a "$out/ab.txt"
            cat "$work/$v.part" >> "$out/ab.jsonl" 2>/dev/null || true
            if [ -f "$work/$v.part" ]; then sed "s/^/$v\t/" "$work/$v.part" >> "$work/tagged"; fi
            rm -f "$work/$v.part"
        done
    done
    python3 - "$work/tagged" <<'PY' | tee -a "$out/ab.txt"
import json, statistics, sys
ms = {"a": [], "b": []}
for line in open(sys.argv[1]):
    tag, rec = line.split("\t", 1)
    r = json.loads(rec)
    step = (r.get("runtime") or {}).get("median_step_s")
    commit = (r.get("env") or {}).get("git_commit", "?")[:9]
    print(f"{tag} {commit} median step {step * 1e3:.2f} ms" if step else f"{tag} {commit} no result: {r.get('error')}")
    if step:
        ms[tag].append(step)
if ms["a"] and ms["b"]:
    a, b = statistics.median(ms["a"]), statistics.median(ms["b"])
    print(f"B/A throughput {a / b:.4f} (A {a * 1e3:.2f} ms, B {b * 1e3:.2f} ms, medians of {len(ms['a'])} and {len(ms['b'])} rounds)")
PY
}

"$cmd"
