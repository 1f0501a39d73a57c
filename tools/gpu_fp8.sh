#!/usr/bin/env bash
# FP8 matmuls on one Hopper GPU (issue 17's FP8 lever): bf16 against fp8 throughput, whether XLA
# turned the encoder's dots into cuBLASLt FP8 GEMMs, and a 500-step convergence comparison.
#
#   tools/gpu_fp8.sh prepare [REPO_ROOT]      here: release binary, corpus text and vocab
#                                             -> REPO_ROOT/.device-carry/fp8 (git-ignored)
#   tools/gpu_fp8.sh run GROUP [REPO_ROOT]    on the GPU machine (no network needed); GROUP:
#       bench      BERT-base and BERT-large pretraining, seq 128 batch 256, bf16 and fp8
#                  (base128 and large128: one model each, to fit 10-minute device commands)
#       large512   BERT-large pretraining, seq 512 batch 32, bf16 and fp8
#       forms      BERT-base seq 128 batch 256: bf16, then fp8 in each emitted form of the hidden
#                  TPU_RUN_FP8_FORM (direct, the default; direct-bf16; qdq, flax's older
#                  quantize-dequantize), then qdq with xla_allow_excess_precision=false (keeps
#                  XLA's SimplifyFPConversions from folding its f8 convert pairs away); one
#                  forms-FORM.jsonl / .txt each (REPEAT=1 STEPS=10 keeps it within 10 minutes)
#       converge   500 steps of BERT-base (seq 128, batch 256) in bf16 and in fp8 on TFRecord
#                  shards made here by `tpu-run create-data` from ../shared/data/corpus (train:
#                  the Gutenberg and speeches text; eval: WikiText-2's test split)
#       all        the three in turn (longer than one 10-minute device command)
#
# Every group prints its verdict lines and writes GROUP.jsonl (bench records, or the two runs'
# summaries) and GROUP.txt (the log) into $OUT (or ./fp8-out without $OUT).
#
# The FP8 check reads each bench record's optimized module: XLA:GPU's GEMM rewriter turns a dot
# of f8 operands into a `__cublas$lt$matmul$f8` custom call, and the fp8 step has 3 per encoder
# dense layer (forward, and the two backward dots), 6 dense layers per encoder layer: 216 for
# BERT-base, 432 for BERT-large. The bf16 step has none. Each verdict line also gives the
# optimized module's f8 values (0: XLA folded every f8 convert pair away, the bf16 fallback) and
# dots reading f8 outside cuBLAS (Triton FP8 GEMMs: fp8_rewrite TRITON instead of ok).
#
# The convergence guard (issue 17): the fp8 run's final eval MLM loss within 1% of the bf16
# run's and its MLM accuracy within 0.5 points (same seed, same data).
#
# Settings (environment): REPEAT (2), STEPS (20 timed bench steps), CONVERGE_STEPS (500),
# LEARNING_RATE (2e-4), WARMUP (50), ATTENTION (cudnn), DROPOUT (unset: BERT's 0.1); for a
# smoke test of `converge` elsewhere: BACKEND (cuda), CONVERGE_PRESET (base), CONVERGE_BATCH (256).
set -euo pipefail

cmd=${1:-}
case "$cmd" in
    prepare) ROOT=$(cd "${2:-.}" && pwd) ;;
    run) GROUP=${2:?run needs a GROUP}; ROOT=$(cd "${3:-.}" && pwd) ;;
    *) echo "usage: $0 prepare [REPO_ROOT] | run GROUP [REPO_ROOT]" >&2; exit 2 ;;
esac
CARRY="$ROOT/.device-carry/fp8"

prepare() {
    local corpus="$ROOT/../shared/data/corpus"
    for f in nltk_gutenberg_speeches.txt wikitext2_raw_test.txt; do
        [ -f "$corpus/$f" ] || { echo "prepare: $corpus/$f is absent" >&2; exit 1; }
    done
    local vocab="${XDG_CACHE_HOME:-$HOME/.cache}/tpu-run/models/all-minilm-l6-v2/vocab.txt"
    (cd "$ROOT" && cargo build --release --bin tpu-run)
    if [ ! -f "$vocab" ]; then
        # create-data fetches the uncased vocab into the cache on first use (here, with network).
        local tmp
        tmp=$(mktemp -d)
        printf 'A sentence.\nAnother one.\n' > "$tmp/t.txt"
        "$ROOT/target/release/tpu-run" create-data --input "$tmp/t.txt" --output "$tmp/o" --quiet
        rm -rf "$tmp"
    fi
    [ -f "$vocab" ] || { echo "prepare: no uncased vocab at $vocab" >&2; exit 1; }
    rm -rf "$CARRY"
    mkdir -p "$CARRY/corpus"
    gzip -9 -c "$ROOT/target/release/tpu-run" > "$CARRY/tpu-run.gz"
    gzip -9 -c "$corpus/nltk_gutenberg_speeches.txt" > "$CARRY/corpus/train.txt.gz"
    gzip -9 -c "$corpus/wikitext2_raw_test.txt" > "$CARRY/corpus/eval.txt.gz"
    cp "$vocab" "$CARRY/vocab.txt"
    local kib
    kib=$(du -sk "$CARRY" | cut -f1)
    [ "$kib" -lt $((60 * 1024)) ] || { echo "prepare: $CARRY is ${kib} KiB, over 60 MiB" >&2; exit 1; }
    echo "prepared $CARRY ($((kib / 1024)) MiB); on the GPU machine: tools/gpu_fp8.sh run GROUP ."
}

run() {
    [ -f "$CARRY/tpu-run.gz" ] || { echo "run: $CARRY/tpu-run.gz is missing; run \`$0 prepare\` and carry .device-carry/fp8" >&2; exit 1; }
    local out=${OUT:-$ROOT/fp8-out} work PY=python3
    work=$(mktemp -d)
    mkdir -p "$out"
    gzip -dc "$CARRY/tpu-run.gz" > "$work/tpu-run"
    chmod +x "$work/tpu-run"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
        | tee -a "$out/$GROUP.txt" || true
    local attention=${ATTENTION:-cudnn} backend=${BACKEND:-cuda}
    local bench=(bench --backend "$backend" --attention "$attention"
                 --repeat "${REPEAT:-2}" --steps "${STEPS:-20}" ${DROPOUT:+--dropout "$DROPOUT"})
    # Each invocation appends its records, so a group cut short keeps what it measured.
    invoke() {
        local tag=$1
        shift
        (cd "$work" && ./tpu-run "$@" --out "$work/part.jsonl") 2>&1 | tee -a "$out/$tag.txt" \
            || echo "== this invocation failed (its records say why)" | tee -a "$out/$tag.txt"
        cat "$work/part.jsonl" >> "$out/$tag.jsonl" 2>/dev/null || true
        rm -f "$work/part.jsonl"
    }
    # One verdict line per record, then fp8 over bf16 per configuration.
    fp8_report() {
        "$PY" - "$1" <<'PY' | tee -a "${1%.jsonl}.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
gemms = {"base": 3 * 6 * 12, "large": 3 * 6 * 24}
speed = {}
for r in rows:
    c = r["config"]
    opt = (r.get("xla") or {}).get("optimized") or {}
    calls = opt.get("custom_calls") or {}
    f8 = sum(n for t, n in calls.items() if "$f8" in t)
    other = opt.get("f8_dots") or 0
    rt = r.get("runtime") or {}
    want = gemms.get(c["model"], 0) if c["precision"] == "fp8" else 0
    verdict = ("ok" if f8 == want else "EXTRA" if f8 > want
               else "TRITON" if f8 + other >= want else "MISSING")
    line = {"key": r["key"], "seq_per_s": rt.get("seq_per_s"), "mfu": rt.get("mfu"),
            "cublaslt_f8_gemms": f8, "expected_f8_gemms": want, "fp8_rewrite": verdict,
            "f8_dots_elsewhere": opt.get("f8_dots"), "f8_values": opt.get("f8_values"),
            "custom_calls": calls}
    if r.get("error") or r.get("skipped"):
        line["error"] = r.get("error") or r.get("skipped")
    print(json.dumps(line))
    if rt.get("seq_per_s"):
        speed.setdefault((c["model"], c["seq"], c["batch"]), {})[c["precision"]] = rt["seq_per_s"]
for (m, s, b), v in sorted(speed.items()):
    if "bf16" in v and "fp8" in v:
        print(json.dumps({"config": f"{m} s{s} b{b}", "bf16_seq_per_s": v["bf16"],
                          "fp8_seq_per_s": v["fp8"], "fp8_over_bf16": v["fp8"] / v["bf16"]}))
PY
    }
    converge() {
        local shards="$work/shards"
        gzip -dc "$CARRY/corpus/train.txt.gz" > "$work/train.txt"
        gzip -dc "$CARRY/corpus/eval.txt.gz" > "$work/eval.txt"
        echo "== create-data (seq 128, 20 predictions, short_seq_prob 0.1)" | tee -a "$out/converge.txt"
        "$work/tpu-run" create-data --input "$work/train.txt" --vocab "$CARRY/vocab.txt" \
            --output "$shards/train" --max-seq-length 128 --max-predictions-per-seq 20 \
            --short-seq-prob 0.1 --dupe-factor 2 --num-shards 4 --quiet 2>&1 | tee -a "$out/converge.txt"
        "$work/tpu-run" create-data --input "$work/eval.txt" --vocab "$CARRY/vocab.txt" \
            --output "$shards/eval" --max-seq-length 128 --max-predictions-per-seq 20 \
            --short-seq-prob 0.1 --dupe-factor 1 --quiet 2>&1 | tee -a "$out/converge.txt"
        local p
        for p in bf16 fp8; do
            echo "== pretrain BERT-${CONVERGE_PRESET:-base} $p, ${CONVERGE_STEPS:-500} steps" \
                | tee -a "$out/converge.txt"
            "$work/tpu-run" pretrain --backend "$backend" --preset "${CONVERGE_PRESET:-base}" \
                --precision "$p" --attention "$attention" --batch-size "${CONVERGE_BATCH:-256}" \
                --seq-len 128 --max-predictions 20 \
                --steps "${CONVERGE_STEPS:-500}" --warmup-steps "${WARMUP:-50}" \
                --learning-rate "${LEARNING_RATE:-2e-4}" --seed 12345 \
                --data "$shards/train/*.tfrecord" --eval-data "$shards/eval/*.tfrecord" \
                --eval-interval 0 --eval-batches 0 --checkpoint-interval 0 --no-resume \
                --log-every 50 --output-dir "$work/run-$p" 2>&1 | tee -a "$out/converge.txt" \
                || echo "== the $p run failed" | tee -a "$out/converge.txt"
            cp "$work/run-$p/metrics.jsonl" "$out/converge-$p.metrics.jsonl" 2>/dev/null || true
        done
        "$PY" - "$out/converge-bf16.metrics.jsonl" "$out/converge-fp8.metrics.jsonl" <<'PY' \
            | tee -a "$out/converge.txt" | tee "$out/converge.jsonl"
import json, sys
def summary(path):
    try:
        rows = [json.loads(l) for l in open(path) if l.strip()]
    except OSError as e:
        return {"error": str(e)}
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    last = train[-50:]
    mean = lambda k: sum(r[k] for r in last if k in r) / max(1, sum(k in r for r in last))
    out = {"steps": train[-1]["step"] if train else 0,
           "train_mlm_loss_last50": mean("mlm_loss") if last else None,
           "train_mlm_accuracy_last50": mean("mlm_accuracy") if last else None}
    if evals:
        out.update({"eval_step": evals[-1]["step"], "eval_mlm_loss": evals[-1].get("mlm_loss"),
                    "eval_mlm_accuracy": evals[-1].get("mlm_accuracy")})
    return out
bf16, fp8 = summary(sys.argv[1]), summary(sys.argv[2])
print(json.dumps({"run": "bf16", **bf16}))
print(json.dumps({"run": "fp8", **fp8}))
v = {"guard": "fp8 eval MLM loss within 1% of bf16's and accuracy within 0.5 points"}
try:
    dl = fp8["eval_mlm_loss"] / bf16["eval_mlm_loss"] - 1.0
    da = 100.0 * (fp8["eval_mlm_accuracy"] - bf16["eval_mlm_accuracy"])
    v.update({"loss_change_percent": 100.0 * dl, "accuracy_change_points": da,
              "verdict": "pass" if abs(dl) <= 0.01 and abs(da) <= 0.5 else "FAIL"})
except (KeyError, TypeError, ZeroDivisionError) as e:
    v["verdict"] = f"incomplete: {e!r}"
print(json.dumps(v))
PY
    }
    case "$GROUP" in
        bench | base128 | large128)
            local models=base,large
            [ "$GROUP" = base128 ] && models=base
            [ "$GROUP" = large128 ] && models=large
            invoke "$GROUP" "${bench[@]}" --precision bf16,fp8 --model "$models" --task pretrain \
                --seq 128 --batch 256
            fp8_report "$out/$GROUP.jsonl"
            ;;
        large512)
            invoke large512 "${bench[@]}" --precision bf16,fp8 --model large --task pretrain \
                --seq 512 --batch 32
            fp8_report "$out/large512.jsonl"
            ;;
        forms)
            local form precision flags=()
            for form in direct direct-bf16 qdq qdq-exact; do
                precision=fp8
                [ "$form" = direct ] && precision=bf16,fp8
                [ "$form" = qdq-exact ] && flags=(--xla-flag xla_allow_excess_precision=false)
                export TPU_RUN_FP8_FORM=${form%-exact}
                invoke "forms-$form" "${bench[@]}" --precision "$precision" "${flags[@]}" \
                    --model base --task pretrain --seq 128 --batch 256
                fp8_report "$out/forms-$form.jsonl"
            done
            unset TPU_RUN_FP8_FORM
            ;;
        converge) converge ;;
        *) echo "run: unknown group $GROUP" >&2; exit 2 ;;
    esac
    rm -rf "$work"
}

if [ "$cmd" = run ] && [ "$GROUP" = all ]; then
    for g in base128 large128 large512 converge; do
        "$0" run "$g" "$ROOT"
    done
    exit 0
fi
"$cmd"
