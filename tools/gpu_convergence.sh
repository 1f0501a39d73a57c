#!/usr/bin/env bash
# Convergence parity with a reference trainer on one GPU (issue 17): BERT-small (L4/H512)
# pretrained by tpu-run and by PyTorch + transformers' BertForPreTraining
# (tools/hf_pretrain_reference.py) from the same initial weights (`tpu-run export-hf --init`),
# on the same TFRecord shards in the same record order, with the same optimizer (BERT's
# AdamWeightDecay), schedule, clipping, batch, dropout and precision, for two seeds each.
#
#   tools/gpu_convergence.sh prepare [REPO_ROOT]   here: release binary + shards made by
#                           `tpu-run create-data` from ../shared/data/corpus at seq 128 (train:
#                           the Gutenberg and speeches text; held-out eval: WikiText-2's test
#                           split) + the reference script -> REPO_ROOT/.device-carry/convergence
#                           (git-ignored, under 40 MiB)
#   tools/gpu_convergence.sh run [REPO_ROOT]       on the GPU machine (no network needed): per
#                           seed, export the step-0 weights, train tpu-run, train the reference
#                           from them; then `report`
#   tools/gpu_convergence.sh report DIR...         the verdict and the charts of runs already
#                           made (each DIR holds tpu-run-seed*/ and hf-seed*/ metrics.jsonl
#                           files, e.g. the $OUT of `run` calls that split the seeds)
#   tools/gpu_convergence.sh parity [REPO_ROOT]    the setup check: dropout 0, a few steps on the
#                           carried shards, both trainers from the same weights; the step losses
#                           must agree (f32: step 1 within 1e-4 relative). CPU by default.
#
# `run` writes into $OUT (./convergence-out without it), as the runs finish: one directory per
# run with its metrics.jsonl (tpu-run-seedS/, hf-seedS/) and its log (tpu-run-seedS.log, ...),
# run.toml (the settings both trainers read), then convergence.svg (every metric against the
# step), convergence_time.svg (against wall time) and convergence.jsonl, whose lines `report`
# also prints: each run's final held-out MLM/NSP loss and accuracy and throughput; per metric
# the two trainers' means over the seeds at the last evaluation, the seed-to-seed spread (the
# larger of the two trainers' max - min over seeds), whether the difference of the means is
# within it, and at how many evaluations it is; the wall time of each run to a held-out loss
# every run reached (the highest final one), from the start of the run: tpu-run's includes its
# compiles (no compile cache), the reference's leaves out its imports and shard decoding.
#
# Settings (environment): SEEDS ("1 2"), STEPS (2000), BATCH (256: BERT's batch at seq 128),
# LEARNING_RATE (5e-4), WARMUP (200), EVAL_INTERVAL (100), EVAL_BATCHES (0: the whole held-out
# set), LOG_EVERY (20), PRESET (small), PRECISION (bf16), BACKEND (cuda), DEVICE (cuda: the
# reference's torch device), ATTENTION (auto), PY (/opt/torch/.venv/bin/python, else python3),
# REF_ARGS (extra reference flags, e.g. --compile); for prepare: DUPE (5), SHARDS (8).
# A CPU smoke test of run: BACKEND=cpu DEVICE=cpu PRESET=tiny PRECISION=f32 STEPS=40 BATCH=16 WARMUP=5
# LEARNING_RATE=1e-3 EVAL_INTERVAL=10 EVAL_BATCHES=8 LOG_EVERY=5 tools/gpu_convergence.sh run .
set -euo pipefail

cmd=${1:-}
case "$cmd" in
    report) shift ;;
    prepare | run | parity) ROOT=$(cd "${2:-.}" && pwd) ;;
    *) echo "usage: $0 prepare|run|parity [REPO_ROOT] | report DIR..." >&2; exit 2 ;;
esac
ROOT=${ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
CARRY="$ROOT/.device-carry/convergence"
SEQ=128
PREDS=20
PY=${PY:-}
if [ -z "$PY" ]; then
    PY=python3
    [ -x /opt/torch/.venv/bin/python ] && PY=/opt/torch/.venv/bin/python
fi

prepare() {
    local corpus="$ROOT/../shared/data/corpus" bin="$ROOT/target/release/tpu-run"
    for f in nltk_gutenberg_speeches.txt wikitext2_raw_test.txt; do
        [ -f "$corpus/$f" ] || { echo "prepare: $corpus/$f is absent" >&2; exit 1; }
    done
    (cd "$ROOT" && cargo build --release --bin tpu-run)
    rm -rf "$CARRY"
    mkdir -p "$CARRY/shards/train" "$CARRY/shards/eval"
    gzip -9 -c "$bin" > "$CARRY/tpu-run.gz"
    cp "$ROOT/tools/hf_pretrain_reference.py" "$CARRY/"
    local work
    work=$(mktemp -d)
    "$bin" create-data --quiet --input "$corpus/nltk_gutenberg_speeches.txt" \
        --output "$work/train" --max-seq-length "$SEQ" --max-predictions-per-seq "$PREDS" \
        --dupe-factor "${DUPE:-5}" --num-shards "${SHARDS:-8}"
    "$bin" create-data --quiet --input "$corpus/wikitext2_raw_test.txt" \
        --output "$work/eval" --max-seq-length "$SEQ" --max-predictions-per-seq "$PREDS" \
        --dupe-factor 1
    for part in train eval; do
        for f in "$work/$part"/*.tfrecord; do
            gzip -6 -c "$f" > "$CARRY/shards/$part/$(basename "$f").gz"
        done
    done
    rm -rf "$work"
    local mib
    mib=$(du -sm "$CARRY" | cut -f1)
    [ "$mib" -le 40 ] || { echo "prepare: $CARRY is $mib MiB, over 40: lower DUPE" >&2; exit 1; }
    echo "prepared $CARRY ($mib MiB); on the GPU machine: tools/gpu_convergence.sh run ."
}

# Unpacks the carried binary and shards into $WORK (once per call).
unpack() {
    [ -f "$CARRY/tpu-run.gz" ] || { echo "$cmd: $CARRY/tpu-run.gz is missing; run \`$0 prepare\` and carry .device-carry/convergence" >&2; exit 1; }
    WORK=${WORK:-/tmp/gpu_convergence}
    BIN="$WORK/tpu-run"
    # The tree's reference script (the device gets the working tree), else the carried copy.
    REF="$ROOT/tools/hf_pretrain_reference.py"
    [ -f "$REF" ] || REF="$CARRY/hf_pretrain_reference.py"
    rm -rf "$WORK"
    mkdir -p "$WORK/shards/train" "$WORK/shards/eval"
    gzip -dc "$CARRY/tpu-run.gz" > "$BIN"
    chmod +x "$BIN"
    local part f
    for part in train eval; do
        for f in "$CARRY/shards/$part"/*.gz; do
            gzip -dc "$f" > "$WORK/shards/$part/$(basename "$f" .gz)"
        done
    done
}

# The run settings both trainers read (the reference reads the same TOML).
write_config() {
    local file=$1
    shift
    {
        echo "[model]"
        echo "preset = \"$PRESET\""
        for line in "$@"; do echo "$line"; done
        cat <<EOF

[data]
train = "$WORK/shards/train/*.tfrecord"
eval = "$WORK/shards/eval/*.tfrecord"
seq_len = $SEQ
max_predictions = $PREDS

[train]
batch_size = $BATCH
steps = $STEPS
warmup_steps = $WARMUP
learning_rate = $LEARNING_RATE
precision = "$PRECISION"

[eval]
interval = $EVAL_INTERVAL
batches = $EVAL_BATCHES

[checkpoint]
interval = 0
keep_last = 1

[device]
backend = "$BACKEND"
attention = "${ATTENTION:-auto}"

[output]
log_every = $LOG_EVERY
tensorboard = false
progress = false
EOF
    } > "$file"
}

run() {
    SEEDS=${SEEDS:-1 2} STEPS=${STEPS:-2000} BATCH=${BATCH:-256}
    LEARNING_RATE=${LEARNING_RATE:-5e-4} WARMUP=${WARMUP:-200}
    EVAL_INTERVAL=${EVAL_INTERVAL:-100} EVAL_BATCHES=${EVAL_BATCHES:-0} LOG_EVERY=${LOG_EVERY:-20}
    PRESET=${PRESET:-small} PRECISION=${PRECISION:-bf16} BACKEND=${BACKEND:-cuda}
    local device=${DEVICE:-cuda} out=${OUT:-$ROOT/convergence-out}
    unpack
    mkdir -p "$out"
    write_config "$WORK/run.toml"
    cp "$WORK/run.toml" "$out/run.toml"
    {
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
            || echo "no nvidia-smi"
        "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' \
            2>&1 || true
    } | tee "$out/environment.txt"
    local seed
    for seed in $SEEDS; do
        local init="$WORK/init-seed$seed" ours="$out/tpu-run-seed$seed" ref="$out/hf-seed$seed"
        echo "== seed $seed: step-0 weights, tpu-run, reference ($STEPS steps, batch $BATCH)"
        rm -rf "$ours" "$ref"
        "$BIN" export-hf --init --config "$WORK/run.toml" --seed "$seed" --out "$init"
        # Every run compiles its programs (no compile cache), so seeds time alike.
        "$BIN" pretrain --config "$WORK/run.toml" --seed "$seed" --output-dir "$ours" \
            --no-resume --no-compile-cache > "$ours.log" 2>&1 \
            || echo "== tpu-run seed $seed failed (see $ours.log)"
        tail -n 12 "$ours.log"
        rm -rf "$ours/checkpoints"
        # shellcheck disable=SC2086
        "$PY" "$REF" --init "$init" --config "$WORK/run.toml" --seed "$seed" \
            --device "$device" --output-dir "$ref" ${REF_ARGS:-} > "$ref.log" 2>&1 \
            || echo "== reference seed $seed failed (see $ref.log)"
        tail -n 4 "$ref.log"
        rm -rf "$init"
    done
    report "$out"
}

# The verdict lines of every run found in the directories given, then the charts.
report() {
    [ $# -gt 0 ] || { echo "report: give the directories holding the runs' metrics" >&2; exit 2; }
    local bin=${BIN:-$ROOT/target/release/tpu-run} dest=$1
    "$PY" - "$@" <<'PY' | tee "$dest/convergence.jsonl"
import glob, json, os, re, sys

runs = {}  # (trainer, seed) -> records
for d in sys.argv[1:]:
    for path in sorted(glob.glob(os.path.join(d, "*", "metrics.jsonl"))):
        m = re.match(r"(tpu-run|hf)-seed(\d+)$", os.path.basename(os.path.dirname(path)))
        if m:
            rows = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
            runs[(m.group(1), int(m.group(2)))] = rows
METRICS = ["mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy", "mlm_accuracy_at_mask", "loss"]
evals = {k: [r for r in rows if r.get("kind") == "eval"] for k, rows in runs.items()}
summary = {k: next((r for r in rows if r.get("kind") == "summary"), {}) for k, rows in runs.items()}
for (trainer, seed), ev in sorted(evals.items()):
    last = ev[-1] if ev else {}
    print(json.dumps({"run": f"{trainer}-seed{seed}", "final_eval_step": last.get("step"),
                      **{k: last.get(k) for k in METRICS},
                      "elapsed_s": last.get("elapsed_s"),
                      "wall_time_s": summary[(trainer, seed)].get("wall_time_s"),
                      "seq_per_s": summary[(trainer, seed)].get("seq_per_s"),
                      "steady_seq_per_s": summary[(trainer, seed)].get("steady_seq_per_s")}))
seeds = sorted({s for t, s in evals if (("tpu-run", s) in evals and ("hf", s) in evals)})
if not seeds:
    print(json.dumps({"verdict": "incomplete: no seed has both runs"}))
    sys.exit(0)
by_step = lambda t, s: {r["step"]: r for r in evals[(t, s)]}
steps = sorted(set.intersection(*[set(by_step(t, s)) for s in seeds for t in ("tpu-run", "hf")]))
mean = lambda v: sum(v) / len(v)
def compare(step, metric):
    vals = {t: [by_step(t, s)[step][metric] for s in seeds] for t in ("tpu-run", "hf")}
    spread = max(max(v) - min(v) for v in vals.values())
    diff = mean(vals["tpu-run"]) - mean(vals["hf"])
    return {"tpu_run_mean": mean(vals["tpu-run"]), "hf_mean": mean(vals["hf"]),
            "difference": diff, "seed_spread": spread, "within_spread": abs(diff) <= spread}
agree = {}
if steps:
    final = steps[-1]
    for metric in METRICS[:4]:
        last = compare(final, metric)
        points = [compare(s, metric)["within_spread"] for s in steps]
        agree[metric] = last["within_spread"]
        print(json.dumps({"metric": metric, "step": final, "seeds": seeds, **last,
                          "eval_points_within_spread": f"{sum(points)}/{len(points)}"}))
# Wall time to a held-out loss every run reached: the highest final loss of the runs (linear
# between evaluations; elapsed_s from each run's start).
def time_to(ev, target):
    prev = None
    for r in ev:
        if r["loss"] <= target:
            if prev is None or prev["loss"] == r["loss"]:
                return r["elapsed_s"]
            f = (prev["loss"] - target) / (prev["loss"] - r["loss"])
            return prev["elapsed_s"] + f * (r["elapsed_s"] - prev["elapsed_s"])
        prev = r
    return None
target = max(evals[(t, s)][-1]["loss"] for s in seeds for t in ("tpu-run", "hf"))
times = {t: [time_to(evals[(t, s)], target) for s in seeds] for t in ("tpu-run", "hf")}
speedup = mean(times["hf"]) / mean(times["tpu-run"])
print(json.dumps({"time_to_held_out_loss": target, "seeds": seeds,
                  "tpu_run_s": times["tpu-run"], "hf_s": times["hf"],
                  "tpu_run_mean_s": mean(times["tpu-run"]), "hf_mean_s": mean(times["hf"]),
                  "speedup": speedup}))
print(json.dumps({
    "verdict": "AGREE" if agree and all(agree.values()) else "DIFFER",
    "final_metrics_within_seed_spread": agree,
    "tpu_run_faster_to_the_same_loss": speedup > 1.0,
    "note": f"spread: max - min over {len(seeds)} seed(s) of each trainer, the larger of the "
            "two; the loss: the highest final held-out loss (MLM + NSP) of the runs",
}))
PY
    local runs=() f
    for f in "$dest"/tpu-run-seed*/metrics.jsonl "$dest"/hf-seed*/metrics.jsonl; do
        [ -f "$f" ] && runs+=("$(dirname "$f")")
    done
    if [ -x "$bin" ] && [ ${#runs[@]} -gt 0 ]; then
        "$bin" plot "${runs[@]}" --out "$dest/convergence.svg" \
            --title "BERT pretraining: tpu-run vs transformers (held-out: markers)" > /dev/null
        "$bin" plot "${runs[@]}" --x time --out "$dest/convergence_time.svg" \
            --metrics loss,mlm_loss,mlm_accuracy,nsp_loss,nsp_accuracy \
            --title "against wall time" > /dev/null
        echo "charts: $dest/convergence.svg, $dest/convergence_time.svg"
    fi
}

# Dropout 0, the same first batches: the two trainers' step losses from the same weights.
parity() {
    STEPS=${STEPS:-20} BATCH=${BATCH:-8} LEARNING_RATE=${LEARNING_RATE:-1e-3} WARMUP=${WARMUP:-5}
    EVAL_INTERVAL=${EVAL_INTERVAL:-10} EVAL_BATCHES=${EVAL_BATCHES:-4} LOG_EVERY=1
    PRESET=${PRESET:-tiny} PRECISION=${PRECISION:-f32} BACKEND=${BACKEND:-cpu}
    local device=${DEVICE:-cpu} out=${OUT:-$ROOT/convergence-out} seed=${SEED:-1}
    unpack
    mkdir -p "$out"
    write_config "$WORK/parity.toml" "hidden_dropout_prob = 0.0" \
        "attention_probs_dropout_prob = 0.0"
    "$BIN" export-hf --init --config "$WORK/parity.toml" --seed "$seed" --out "$WORK/init"
    "$BIN" pretrain --config "$WORK/parity.toml" --seed "$seed" --output-dir "$WORK/ours" \
        --no-resume > "$out/parity-tpu-run.log" 2>&1 || { tail "$out/parity-tpu-run.log"; exit 1; }
    "$PY" "$REF" --init "$WORK/init" --config "$WORK/parity.toml" --seed "$seed" \
        --device "$device" --output-dir "$WORK/ref" > "$out/parity-hf.log" 2>&1 \
        || { tail "$out/parity-hf.log"; exit 1; }
    cp "$WORK/ours/metrics.jsonl" "$out/parity-tpu-run.metrics.jsonl"
    cp "$WORK/ref/metrics.jsonl" "$out/parity-hf.metrics.jsonl"
    "$PY" - "$WORK/ours/metrics.jsonl" "$WORK/ref/metrics.jsonl" "$PRECISION" <<'PY' \
        | tee "$out/parity.jsonl"
import json, sys
def load(p):
    rows = [json.loads(l) for l in open(p) if l.strip()]
    return ({r["step"]: r for r in rows if r["kind"] == "train"},
            {r["step"]: r for r in rows if r["kind"] == "eval"})
(a, ae), (b, be) = load(sys.argv[1]), load(sys.argv[2])
rel = lambda x, y: abs(x - y) / max(abs(x), 1e-12)
steps = sorted(set(a) & set(b))
for s in steps:
    print(json.dumps({"step": s, "tpu_run_loss": a[s]["loss"], "hf_loss": b[s]["loss"],
                      "relative": rel(a[s]["loss"], b[s]["loss"]),
                      "tpu_run_grad_norm": a[s]["grad_norm"], "hf_grad_norm": b[s]["grad_norm"]}))
for s in sorted(set(ae) & set(be)):
    print(json.dumps({"eval_step": s, **{f"{k}_relative": rel(ae[s][k], be[s][k])
                      for k in ("mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy")}}))
tol = 1e-4 if sys.argv[3] == "f32" else 2e-2
first = rel(a[1]["loss"], b[1]["loss"]) if 1 in a and 1 in b else float("inf")
print(json.dumps({"parity": "step-1 loss of both trainers from the same weights, dropout 0",
                  "step1_relative": first, "tolerance": tol,
                  "max_relative_over_steps": max((rel(a[s]["loss"], b[s]["loss"]) for s in steps),
                                                 default=None),
                  "steps": len(steps), "verdict": "MATCH" if first <= tol else "MISMATCH"}))
PY
}

case "$cmd" in
    prepare) prepare ;;
    run) run ;;
    parity) parity ;;
    report) report "$@" ;;
esac
