#!/usr/bin/env bash
# A/B timing of two tpu-run builds on one GPU: the same `tpu-run bench` configuration run by the
# binary before a change (A) and after it (B), alternating A B A B so drift hits both alike.
#
#   tools/gpu_ab.sh prepare A_BINARY [REPO_ROOT]   here: B is target/release/tpu-run (rebuilt);
#                                                   both gzipped -> REPO_ROOT/.device-carry/ab
#   tools/gpu_ab.sh run [REPO_ROOT]                 on the GPU machine
#
# More builds between A and B (C, D, ... in that order of the alternation) come from the
# environment of `prepare`: MIDDLE="BINARY_1 BINARY_2" (each is compared with A, as B is).
# `run` writes ab.jsonl (the bench records, in run order per round, told apart by
# env.git_commit) and ab.txt into $OUT (./ab-out without it) and prints each round's median step
# and each build's throughput over A's (ratio of the medians over the rounds).
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
    local tag=c m
    for m in ${MIDDLE:-}; do
        [ -x "$m" ] || { echo "prepare: $m is not an executable" >&2; exit 1; }
        gzip -9 -c "$m" > "$CARRY/$tag.gz"
        tag=$(echo "$tag" | tr 'c-y' 'd-z')
    done
    du -sh "$CARRY"
}

run() {
    [ -f "$CARRY/a.gz" ] && [ -f "$CARRY/b.gz" ] || { echo "run: carry .device-carry/ab (\`$0 prepare\` first)" >&2; exit 1; }
    local out=${OUT:-$ROOT/ab-out} work r v builds
    work=$(mktemp -d)
    mkdir -p "$out"
    # a, then the middle builds c, d, ..., then b
    builds="a $(cd "$CARRY" && ls ./*.gz | sed 's|^\./||; s|\.gz$||' | { grep -v '^[ab]$' || true; } | sort | tr '\n' ' ')b"
    for v in $builds; do gzip -dc "$CARRY/$v.gz" > "$work/$v"; chmod +x "$work/$v"; done
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/ab.txt" || true
    for r in $(seq 1 "${ROUNDS:-2}"); do
        for v in $builds; do
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
ms = {}
for line in open(sys.argv[1]):
    tag, rec = line.split("\t", 1)
    r = json.loads(rec)
    step = (r.get("runtime") or {}).get("median_step_s")
    commit = (r.get("env") or {}).get("git_commit", "?")[:9]
    print(f"{tag} {commit} median step {step * 1e3:.2f} ms" if step else f"{tag} {commit} no result: {r.get('error')}")
    if step:
        ms.setdefault(tag, []).append(step)
for tag in sorted(t for t in ms if t != "a"):
    a, x = statistics.median(ms["a"]), statistics.median(ms[tag])
    print(f"{tag.upper()}/A throughput {a / x:.4f} (A {a * 1e3:.2f} ms, {tag.upper()} {x * 1e3:.2f} ms, medians of {len(ms['a'])} and {len(ms[tag])} rounds)")
PY
}

"$cmd"
