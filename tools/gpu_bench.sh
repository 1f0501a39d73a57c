#!/usr/bin/env bash
# `tpu-run bench` on one GPU with the JAX and PyTorch anchors, for BENCHMARKS.md and
# benches/results/.
#
#   tools/gpu_bench.sh prepare [REPO_ROOT]      here: release binary + anchor scripts
#                                               -> REPO_ROOT/.device-carry/bench (git-ignored)
#   tools/gpu_bench.sh run GROUP [REPO_ROOT]    on the GPU machine; GROUP is one of
#       pretrain   BERT-base seq 128 batch 256 and BERT-large seq 512 batch 32 (profile of the first)
#       base       BERT-base seq 128 batch 256 with the anchors (dropout 0.1), then with dropout 0
#                  (the same math as the JAX anchor), no profile: issue 17's first row in ~5 min
#       squad      BERT-base and BERT-large SQuAD seq 384 batch 32
#       flags      BERT-base seq 128 batch 256 (dropout 0) under XLA flag variants, no anchors
#       profile    BERT-base seq 128 batch 256 profiled as `--profile` does it (command buffers
#                  off) and with them kept on (the cuDNN-safe set)
#       audit      the fusion audit's inputs: BERT-base seq 128 batch 256 profiled with dropout
#                  0.1 and 0 (layers, kernels.tsv: time per kernel in each layer-folded scope)
#                  and XLA's optimized HLO text of the step (audit_hlo.tar.gz); with MERGER=1
#                  then the step with XLA's dot merger allowed to fuse the query/key/value GEMMs
#
# The flag variants are told apart by their records' env.xla_flags. Every group writes GROUP.jsonl (one record per configuration), GROUP.txt (the table and the
# log) and, for pretrain, the profile's layers.tsv into $OUT (or ./bench-out without $OUT).
# Settings (environment): REPEAT (2), STEPS (20), ANCHOR_TIMEOUT (300 s); for audit: DROPOUTS
# ("0.1 0"), MERGER.
set -euo pipefail

cmd=${1:-}
case "$cmd" in
    prepare) ROOT=$(cd "${2:-.}" && pwd) ;;
    run) GROUP=${2:?run needs a GROUP}; ROOT=$(cd "${3:-.}" && pwd) ;;
    *) echo "usage: $0 prepare [REPO_ROOT] | run GROUP [REPO_ROOT]" >&2; exit 2 ;;
esac
CARRY="$ROOT/.device-carry/bench"

prepare() {
    local bench="$ROOT/../shared/bench"
    for f in jax_bert.py torch_bert.py; do
        [ -f "$bench/$f" ] || { echo "prepare: $bench/$f is absent" >&2; exit 1; }
    done
    (cd "$ROOT" && cargo build --release --bin tpu-run)
    rm -rf "$CARRY"
    mkdir -p "$CARRY/shared/bench"
    gzip -9 -c "$ROOT/target/release/tpu-run" > "$CARRY/tpu-run.gz"
    cp "$bench/jax_bert.py" "$bench/torch_bert.py" "$CARRY/shared/bench/"
    du -sh "$CARRY"
}

run() {
    [ -f "$CARRY/tpu-run.gz" ] || { echo "run: $CARRY/tpu-run.gz is missing; run \`$0 prepare\` and carry .device-carry/bench" >&2; exit 1; }
    local out=${OUT:-$ROOT/bench-out} work
    work=$(mktemp -d)
    mkdir -p "$out"
    gzip -dc "$CARRY/tpu-run.gz" > "$work/tpu-run"
    chmod +x "$work/tpu-run"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/$GROUP.txt"
    local common=(bench --backend cuda --precision bf16 --attention cudnn
                  --repeat "${REPEAT:-2}" --steps "${STEPS:-20}")
    local anchors=(--anchors --anchors-dir "$CARRY/shared/bench" --anchor-timeout "${ANCHOR_TIMEOUT:-300}")
    # Each invocation appends its records, so a group cut short keeps what it measured.
    invoke() {
        (cd "$work" && ./tpu-run "$@" --out "$work/part.jsonl") 2>&1 | tee -a "$out/$GROUP.txt" \
            || echo "== this invocation failed (its records say why)" | tee -a "$out/$GROUP.txt"
        cat "$work/part.jsonl" >> "$out/$GROUP.jsonl" 2>/dev/null || true
        rm -f "$work/part.jsonl"
    }
    case "$GROUP" in
        pretrain)
            invoke "${common[@]}" "${anchors[@]}" --model base --task pretrain --seq 128 \
                --batch 256 --profile "$work/profile"
            cp "$work/profile/"*/layers.tsv "$out/base_s128_layers.tsv" 2>/dev/null || true
            cp "$work/profile/"*/unmapped.tsv "$out/base_s128_unmapped.tsv" 2>/dev/null || true
            invoke "${common[@]}" "${anchors[@]}" --model large --task pretrain --seq 512 --batch 32
            ;;
        base)
            invoke "${common[@]}" "${anchors[@]}" --model base --task pretrain --seq 128 --batch 256
            invoke "${common[@]}" --dropout 0 --model base --task pretrain --seq 128 --batch 256
            ;;
        squad)
            invoke "${common[@]}" "${anchors[@]}" --model base,large --task squad --seq 384 --batch 32
            ;;
        flags)
            local f
            for f in "" xla_gpu_enable_triton_gemm=false xla_gpu_enable_cublaslt=true \
                     xla_gpu_enable_command_buffer= xla_gpu_enable_latency_hiding_scheduler=true; do
                echo "== xla flag: ${f:-(none)}" | tee -a "$out/$GROUP.txt"
                invoke "${common[@]}" --repeat 1 --dropout 0 --model base --task pretrain \
                    --seq 128 --batch 256 ${f:+--xla-flag "$f"}
            done
            ;;
        profile)
            # Device time per layer as `--profile` takes it (command buffers off) and with command
            # buffers kept on: kernels inside a CUDA graph carry no HLO op and stay unmapped.
            local f
            for f in "" xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL; do
                echo "== xla flag: ${f:-(none)}" | tee -a "$out/$GROUP.txt"
                rm -rf "$work/profile"
                invoke "${common[@]:0:7}" --repeat 1 --steps 5 --model base --task pretrain --seq 128 \
                    --batch 256 --profile "$work/profile" ${f:+--xla-flag "$f"}
                local tag=${f:+cmdbuf}
                cp "$work/profile/"*/layers.tsv "$out/layers_${tag:-default}.tsv" 2>/dev/null || true
                cp "$work/profile/"*/unmapped.tsv "$out/unmapped_${tag:-default}.tsv" 2>/dev/null || true
                gzip -c "$work/profile/"*/trace.json > "$out/trace_${tag:-default}.json.gz" 2>/dev/null || true
            done
            ;;
        audit)
            local d
            for d in ${DROPOUTS:-0.1 0}; do
                echo "== dropout $d" | tee -a "$out/$GROUP.txt"
                rm -rf "$work/profile" "$work/dump"
                invoke "${common[@]:0:7}" --repeat 1 --steps 5 --dropout "$d" --model base \
                    --task pretrain --seq 128 --batch 256 --profile "$work/profile" \
                    --xla-flag "xla_dump_to=$work/dump" --xla-flag xla_dump_hlo_as_text=true
                for f in layers kernels unmapped; do
                    cp "$work/profile/"*/$f.tsv "$out/audit_d${d}_$f.tsv" 2>/dev/null || true
                done
                (cd "$work" && tar czf "$out/audit_d${d}_hlo.tar.gz" \
                    $(cd "$work" && ls dump/*after_optimizations.txt dump/*buffer-assignment.txt 2>/dev/null)) || true
            done
            # XLA's DotMerger leaves dots over xla_gpu_dot_merger_threshold_mb apart: the
            # query/key/value projections stay three GEMMs unless it is raised (measured: no gain).
            [ -n "${MERGER:-}" ] || return 0
            echo "== dropout 0.1, xla_gpu_dot_merger_threshold_mb=1024" | tee -a "$out/$GROUP.txt"
            invoke "${common[@]:0:7}" --repeat 1 --steps 20 --model base --task pretrain --seq 128 \
                --batch 256 --xla-flag xla_gpu_dot_merger_threshold_mb=1024
            ;;
        *) echo "run: unknown group $GROUP" >&2; exit 2 ;;
    esac
    # The flag variants share one configuration key, so only the other groups get a combined
    # table and plot.
    if [ "$GROUP" = pretrain ] || [ "$GROUP" = squad ]; then
        "$work/tpu-run" bench --compare "$out/$GROUP.jsonl" \
            --plot "$out/$GROUP.svg" | tee -a "$out/$GROUP.txt"
    fi
}

"$cmd"
