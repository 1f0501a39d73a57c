#!/usr/bin/env python3
"""The reference trainer of the convergence comparison (issue 17): PyTorch + transformers'
BertForPreTraining, trained the way `tpu-run pretrain` trains, on the same TFRecord shards.

    python3 tools/hf_pretrain_reference.py --init HF_DIR --config RUN.toml [--seed S ...] \
        --output-dir OUT [--device cuda] [--precision bf16]

HF_DIR is a Hugging Face BertForPreTraining directory, normally the weights tpu-run starts from
(`tpu-run export-hf --init --config RUN.toml --seed S --out HF_DIR`). The run settings come from
the same TOML file `tpu-run pretrain --config` reads (tpu-run's defaults for keys it lacks), and
the flags below override them with the meaning `tpu-run pretrain`'s flags of the same names
have, so one argument list can drive both trainers. What is reproduced:

- data: the shards of data.train in tpu-run's exact order: the reader's seeded shard order per
  epoch, `data.cycle_length` shards interleaved round-robin, windows of `data.shuffle_buffer`
  records each permuted by CPython's random.Random (the generator tpu-run reimplements) from the
  same SplitMix64-derived seeds (src/data/shard_stream.rs), batches of `train.batch_size`
  consecutive records. TFRecord framing and tf.train.Example are parsed here (no TensorFlow;
  record lengths are checked, CRCs are not: tpu-run checks them on the same files).
- model: transformers' BertModel and the BertForPreTraining heads, with google-research/bert's
  loss: the MLM head runs on the hidden states at masked_lm_positions only (as tpu-run and
  the original's gather_indexes do; --full-mlm-logits runs HF's forward on every position),
  mlm_loss = sum(w * nll) / (sum(w) + 1e-5), nsp_loss = mean(nll), loss = mlm_loss + nsp_loss.
  Dropout as the directory's config.json says (tpu-run's export writes the run's values).
- optimizer: train.optimizer `adam_weight_decay` (BERT's AdamWeightDecay: no bias correction,
  eps 1e-6, decoupled weight decay `train.weight_decay` on parameters whose name contains none
  of LayerNorm, layer_norm, bias) or `adamw` (with bias correction); beta1 0.9, beta2
  `train.adam_beta2`; global-norm clipping at `train.clip_norm` as tf.clip_by_global_norm
  (grad_norm is logged before clipping); the learning rate of update k (k = updates applied
  before it, 0 first) from train.schedule: linear warmup, then linear (BERT), cosine or constant.
- precision: f32 (TF32 off, as tpu-run's f32 dots at full precision) or bf16 autocast with f32
  master weights and f32 losses.
- evaluation every eval.interval steps and at the end, as tpu-run's evaluator: the eval shards
  read once in order, no dropout, MLM loss and accuracy weighted by masked_lm_weights over the
  whole set, NSP loss and accuracy per example, MLM accuracy at [MASK] inputs.
- output: OUT/metrics.jsonl in tpu-run's format (train records every output.log_every steps and
  at the end, eval records, a summary), `elapsed_s` counted from the model load, after the
  imports and the shard decoding (which tpu-run overlaps with its compile), so the reference's
  clock leaves those out. `tpu-run plot` draws it beside tpu-run's runs.

What cannot match: the dropout masks (torch's generator, not tpu-run's keys) and rounding.
With dropout 0 and f32 the step losses agree with tpu-run's to f32 rounding
(`tools/gpu_convergence.sh parity`).
"""
import argparse
import glob as globmod
import json
import math
import os
import random
import struct
import sys
import time

import numpy as np

MASK64 = (1 << 64) - 1

# tpu-run's defaults (src/pretrain/config.rs) for the settings used here.
DEFAULTS = {
    "data": {"train": None, "eval": None, "seq_len": 128, "max_predictions": 20,
             "shuffle_buffer": 10_000, "cycle_length": 4, "synthetic": False, "pack": False},
    "train": {"batch_size": 32, "steps": 1000, "warmup_steps": 100, "learning_rate": 1e-4,
              "end_learning_rate": 0.0, "schedule": "linear", "optimizer": "adam_weight_decay",
              "weight_decay": 0.01, "clip_norm": 1.0, "adam_beta2": 0.999, "precision": "f32",
              "accumulation_steps": 1, "seed": 12345},
    "eval": {"interval": 0, "batches": 0, "batch_size": None, "mask_token_id": 103},
    "output": {"dir": "runs/pretrain", "log_every": 10},
}
ALIASES = {"bert": "linear", "float32": "f32", "bfloat16": "bf16"}


# ---------------------------------------------------------------- tpu-run's record order

def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def epoch_order(n, seed, epoch, shuffle):
    order = list(range(n))
    if shuffle:
        random.Random(splitmix64(seed ^ splitmix64(epoch))).shuffle(order)
    return order


def window_rng(seed, epoch, window):
    return random.Random(splitmix64(
        splitmix64(seed ^ splitmix64(epoch)) ^ splitmix64((window + 0x5157) & MASK64)))


def interleave(order, counts, base, k):
    """Round-robin over k slots; an emptied slot takes the epoch's next shard at once."""
    slots = [None] * k
    next_shard = rr = 0
    while True:
        s = rr
        if slots[s] is None:
            if next_shard < len(order):
                slots[s] = [order[next_shard], 0]
                next_shard += 1
            elif all(x is None for x in slots):
                return
            else:
                rr = (s + 1) % k
                continue
        f, r = slots[s]
        if r < counts[f]:
            slots[s][1] += 1
            rr = (s + 1) % k
            yield base[f] + r
        else:
            slots[s] = None


def record_stream(counts, seed, shuffle, shuffle_buffer, cycle_length, epochs=None):
    """Global record indices (shard base + record) in the order tpu-run's reader yields them."""
    n = len(counts)
    base = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist() if n else []
    k = min(max(cycle_length, 1), max(n, 1))
    size = max(shuffle_buffer, 1)
    epoch = 0
    while epochs is None or epoch < epochs:
        it = interleave(epoch_order(n, seed, epoch, shuffle), counts, base, k)
        window, epoch_records = 0, 0
        while True:
            records = [r for _, r in zip(range(size), it)]
            if shuffle:
                window_rng(seed, epoch, window).shuffle(records)
            epoch_records += len(records)
            yield from records
            if len(records) < size:
                break
            window += 1
        if epoch_records == 0:
            raise SystemExit(f"the {n} shard(s) hold no records")
        epoch += 1


# ---------------------------------------------------------------- TFRecords, tf.train.Example

def varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def fields(buf, start, end):
    """(field number, wire type, value or (payload start, end)) of a protobuf message."""
    pos = start
    while pos < end:
        key, pos = varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, pos = varint(buf, pos)
            yield num, wire, v
        elif wire == 2:
            n, pos = varint(buf, pos)
            yield num, wire, (pos, pos + n)
            pos += n
        elif wire == 5:
            yield num, wire, (pos, pos + 4)
            pos += 4
        elif wire == 1:
            yield num, wire, (pos, pos + 8)
            pos += 8
        else:
            raise ValueError(f"protobuf wire type {wire}")
    if pos != end:
        raise ValueError("a protobuf field runs past its message")


def example_features(buf, start, end):
    """name -> (kind, packed payload (start, end) or unpacked values): kind 'int' or 'float'."""
    out = {}
    for num, wire, v in fields(buf, start, end):  # Example
        if num != 1 or wire != 2:
            continue
        for fnum, fwire, entry in fields(buf, *v):  # Features: map<string, Feature>
            if fnum != 1 or fwire != 2:
                continue
            name, feature = None, None
            for enum_, ewire, ev in fields(buf, *entry):
                if enum_ == 1 and ewire == 2:
                    name = bytes(buf[ev[0]:ev[1]]).decode()
                elif enum_ == 2 and ewire == 2:
                    feature = ev
            if name is None or feature is None:
                continue
            for knum, kwire, kv in fields(buf, *feature):  # Feature: oneof kind
                if kwire != 2 or knum not in (2, 3):
                    continue
                kind = "float" if knum == 2 else "int"
                packed, loose = [], []
                for vnum, vwire, vv in fields(buf, *kv):  # Int64List / FloatList
                    if vnum != 1:
                        continue
                    if vwire == 2:
                        packed.append(vv)
                    elif kind == "int" and vwire == 0:
                        loose.append(vv)
                    elif kind == "float" and vwire == 5:
                        loose.append(struct.unpack_from("<f", buf, vv[0])[0])
                out[name] = (kind, packed, loose)
    return out


def decode_varints(a):
    """Every varint of the byte array `a`, vectorized (values as int64, two's complement)."""
    if a.size == 0:
        return np.zeros(0, np.int64)
    ends = np.flatnonzero(a < 0x80)
    if ends.size == 0 or ends[-1] != a.size - 1:
        raise ValueError("a varint is cut short")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lens = ends - starts + 1
    out = np.zeros(ends.size, np.uint64)
    for k in range(int(lens.max())):
        sel = lens > k
        out[sel] |= (a[starts[sel] + k].astype(np.uint64) & np.uint64(0x7F)) << np.uint64(7 * k)
    return out.view(np.int64)


FEATURES = [  # name, kind, length key
    ("input_ids", "int", "seq"), ("input_mask", "int", "seq"), ("segment_ids", "int", "seq"),
    ("masked_lm_positions", "int", "pred"), ("masked_lm_ids", "int", "pred"),
    ("masked_lm_weights", "float", "pred"), ("next_sentence_labels", "int", "one"),
]


def read_shard(path, seq_len, max_predictions, vocab_size):
    """Every pretraining example of one shard as arrays [records, len] (one pass, vectorized)."""
    with open(path, "rb") as f:
        data = f.read()
    buf = memoryview(data)
    arr = np.frombuffer(data, np.uint8)
    want = {"seq": seq_len, "pred": max_predictions, "one": 1}
    parts = {name: [] for name, _, _ in FEATURES}
    pos, n = 0, 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise SystemExit(f"{path}: truncated record header at byte {pos}")
        (length,) = struct.unpack_from("<Q", data, pos)
        start, end = pos + 12, pos + 12 + length
        if end + 4 > len(data):
            raise SystemExit(f"{path}: record at byte {pos} runs past the end of the file")
        try:
            feats = example_features(buf, start, end)
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            raise SystemExit(f"{path}: record at byte {pos} is not a tf.train.Example: {e}")
        for name, kind, _ in FEATURES:
            got = feats.get(name)
            if got is None or got[0] != kind:
                raise SystemExit(f"{path}: record at byte {pos}: feature {name} is missing or "
                                 f"not a {kind} list")
            _, packed, loose = got
            if loose:  # unpacked values (TF never writes these, but they are legal)
                enc = (np.array(loose, np.float32).tobytes() if kind == "float" else
                       b"".join(_varint_bytes(v) for v in loose))
                parts[name].append(np.frombuffer(enc, np.uint8))
            parts[name].extend(arr[s:e] for s, e in packed)
        pos, n = end + 4, n + 1
    out = {}
    for name, kind, key in FEATURES:
        blob = np.concatenate(parts[name]) if parts[name] else np.zeros(0, np.uint8)
        if kind == "float":
            values = blob.view("<f4").astype(np.float32)
        else:
            try:
                values = decode_varints(blob)
            except ValueError as e:
                raise SystemExit(f"{path}: feature {name}: {e}")
        if values.size != n * want[key]:
            raise SystemExit(f"{path}: feature {name} holds {values.size} values over {n} records, "
                             f"expected {want[key]} each (check --seq-len / --max-predictions)")
        out[name] = values.reshape(n, want[key])
    ids_ok = lambda v: v.size == 0 or (v.min() >= 0 and v.max() < vocab_size)
    checks = [
        (ids_ok(out["input_ids"]) and ids_ok(out["masked_lm_ids"]),
         f"token ids outside the model's vocab of {vocab_size}"),
        (np.isin(out["input_mask"], (0, 1)).all() and np.isin(out["segment_ids"], (0, 1)).all(),
         "input_mask / segment_ids other than 0 and 1"),
        ((out["masked_lm_positions"] >= 0).all() and (out["masked_lm_positions"] < seq_len).all(),
         "masked_lm_positions outside the sequence"),
        (np.isin(out["next_sentence_labels"], (0, 1)).all(), "next_sentence_labels not 0 or 1"),
        (np.isfinite(out["masked_lm_weights"]).all() and (out["masked_lm_weights"] >= 0).all(),
         "masked_lm_weights negative or not finite"),
    ]
    for ok, what in checks:
        if not ok:
            raise SystemExit(f"{path}: {what}")
    return {k: (v.astype(np.float32) if k == "masked_lm_weights" else v.astype(np.int32))
            for k, v in out.items()}


def _varint_bytes(v):
    v &= MASK64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def shard_files(patterns, what):
    files = []
    for p in (p.strip() for p in patterns.split(",")):
        if not p:
            continue
        if "://" in p:
            raise SystemExit(f"{what} {p!r}: only local shards are read here")
        matched = [f for f in globmod.glob(p) if os.path.isfile(f)]
        if not matched:
            raise SystemExit(f"{what} pattern {p!r} matches no file")
        files.extend(matched)
    return sorted(set(files))


def load_shards(files, seq_len, max_predictions, vocab_size):
    shards = [read_shard(f, seq_len, max_predictions, vocab_size) for f in files]
    counts = [len(s["next_sentence_labels"]) for s in shards]
    data = {name: np.concatenate([s[name] for s in shards]) for name, _, _ in FEATURES}
    data["next_sentence_labels"] = data["next_sentence_labels"].reshape(-1)
    return data, counts


# ---------------------------------------------------------------- settings

def settings(args):
    cfg = {s: dict(v) for s, v in DEFAULTS.items()}
    model_section = {}
    if args.config:
        import tomllib
        with open(args.config, "rb") as f:
            toml = tomllib.load(f)
        for section, values in toml.items():
            if section == "model":
                model_section = values
            elif section in cfg:
                cfg[section].update({k: v for k, v in values.items() if k in cfg[section]})
    flags = {
        ("data", "train"): args.data, ("data", "eval"): args.eval_data,
        ("data", "seq_len"): args.seq_len, ("data", "max_predictions"): args.max_predictions,
        ("train", "batch_size"): args.batch_size, ("train", "steps"): args.steps,
        ("train", "warmup_steps"): args.warmup_steps,
        ("train", "learning_rate"): args.learning_rate,
        ("train", "optimizer"): args.optimizer, ("train", "precision"): args.precision,
        ("train", "seed"): args.seed, ("eval", "interval"): args.eval_interval,
        ("eval", "batches"): args.eval_batches, ("output", "dir"): args.output_dir,
        ("output", "log_every"): args.log_every,
    }
    for (section, key), value in flags.items():
        if value is not None:
            cfg[section][key] = value
    t, d = cfg["train"], cfg["data"]
    for key in ("schedule", "precision"):
        t[key] = ALIASES.get(t[key], t[key])
    refuse = [
        (t["optimizer"] not in ("adam_weight_decay", "adamw"),
         f"train.optimizer {t['optimizer']!r}: the reference implements adam_weight_decay and adamw"),
        (t["schedule"] not in ("linear", "cosine", "constant"),
         f"train.schedule {t['schedule']!r} is not linear, cosine or constant"),
        (t["precision"] not in ("f32", "bf16"),
         f"train.precision {t['precision']!r}: the reference runs f32 or bf16"),
        (t["accumulation_steps"] != 1, "train.accumulation_steps > 1 is not implemented here"),
        (d["pack"], "data.pack is not implemented here"),
        (d["synthetic"], "data.synthetic: the reference trains on shards"),
        (not d["train"], "no training shards: set data.train or pass --data"),
        (t["steps"] < 1 or t["batch_size"] < 1, "train.steps and train.batch_size must be >= 1"),
        (t["schedule"] == "cosine" and t["steps"] <= t["warmup_steps"],
         "the cosine schedule needs train.steps > train.warmup_steps"),
    ]
    for bad, msg in refuse:
        if bad:
            raise SystemExit(f"hf_pretrain_reference: {msg}")
    return cfg, model_section


def learning_rate(t, step):
    """tpu-run's schedule (src/train/schedule.rs) at `step` updates applied before this one."""
    init, end, warm, total = t["learning_rate"], t["end_learning_rate"], t["warmup_steps"], t["steps"]
    if t["schedule"] == "constant":
        return init
    if t["schedule"] == "linear":
        lr = (total - min(step, total)) / total * (init - end) + end
    else:
        p = min(max((step - warm) / (total - warm), 0.0), 1.0)
        lr = (math.cos(math.pi * p) + 1) * 0.5 * (init - end) + end
    if warm > 0 and step < warm:
        return step / warm * init
    return lr


# ---------------------------------------------------------------- training

def main():
    t_import = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True,
                    help="Hugging Face BertForPreTraining directory to start from "
                         "(tpu-run export-hf --init ...)")
    ap.add_argument("--config", help="tpu-run run settings (TOML), as pretrain --config")
    ap.add_argument("--output-dir", help="where metrics.jsonl goes (output.dir)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--precision", choices=["f32", "bf16"], help="train.precision")
    for flag, typ, key in [("--data", str, "data.train"), ("--eval-data", str, "data.eval"),
                           ("--seq-len", int, "data.seq_len"),
                           ("--max-predictions", int, "data.max_predictions"),
                           ("--batch-size", int, "train.batch_size"),
                           ("--steps", int, "train.steps"),
                           ("--warmup-steps", int, "train.warmup_steps"),
                           ("--learning-rate", float, "train.learning_rate"),
                           ("--optimizer", str, "train.optimizer"),
                           ("--seed", int, "train.seed"),
                           ("--eval-interval", int, "eval.interval"),
                           ("--eval-batches", int, "eval.batches"),
                           ("--log-every", int, "output.log_every")]:
        ap.add_argument(flag, type=typ, help=f"as tpu-run pretrain {flag} ({key})")
    ap.add_argument("--stop-after", type=int, help="stop after N steps (the schedule still "
                    "spans train.steps), as pretrain --stop-after")
    ap.add_argument("--full-mlm-logits", action="store_true",
                    help="run HF's BertForPreTraining forward (MLM logits at every position) "
                         "and pick the masked positions from it")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = ap.parse_args()
    cfg, model_section = settings(args)
    t, d, ev, out = cfg["train"], cfg["data"], cfg["eval"], cfg["output"]

    import torch
    import torch.nn.functional as F
    from transformers import BertForPreTraining
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bf16 = t["precision"] == "bf16"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(t["seed"])
    import_s = time.perf_counter() - t_import

    with open(os.path.join(args.init, "config.json")) as f:
        hf_config = json.load(f)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "vocab_size",
                "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        if key in model_section and model_section[key] != hf_config.get(key):
            raise SystemExit(f"the run config's [model] {key} = {model_section[key]} but "
                             f"{args.init}/config.json has {hf_config.get(key)}: export the "
                             "initial weights from the same config")
    vocab = hf_config["vocab_size"]

    t_data = time.perf_counter()
    train_files = shard_files(d["train"], "data.train")
    train, counts = load_shards(train_files, d["seq_len"], d["max_predictions"], vocab)
    eval_files = shard_files(d["eval"], "data.eval") if d["eval"] else []
    if eval_files:
        evald, ecounts = load_shards(eval_files, d["seq_len"], d["max_predictions"], vocab)
    end_step = min(t["steps"], args.stop_after) if args.stop_after else t["steps"]
    b = t["batch_size"]
    stream = record_stream(counts, t["seed"], True, d["shuffle_buffer"], d["cycle_length"])
    order = np.fromiter(stream, np.int64, count=end_step * b)
    if eval_files:
        eb = ev["batch_size"] or b
        eorder = np.fromiter(record_stream(ecounts, t["seed"], False, d["shuffle_buffer"],
                                           d["cycle_length"], epochs=1), np.int64)
        if ev["batches"]:
            eorder = eorder[: ev["batches"] * eb]
    data_s = time.perf_counter() - t_data
    print(f"data: {len(train_files)} train shard(s), {sum(counts)} records"
          + (f"; {len(eval_files)} eval shard(s), {len(eorder)} examples evaluated"
             if eval_files else "; no eval data") + f" ({data_s:.1f} s)", file=sys.stderr)

    # The clock of elapsed_s starts here: model load, transfers, steps and evaluations.
    t0 = time.perf_counter()
    model = BertForPreTraining.from_pretrained(args.init, dtype=torch.float32)
    model.to(device).train()
    on_dev = lambda a: torch.from_numpy(a).to(device)
    tr = {k: on_dev(v) for k, v in train.items()}
    order_t = on_dev(order)
    if eval_files:
        es = {k: on_dev(v) for k, v in evald.items()}
        eorder_t = on_dev(eorder)
    seq, preds = d["seq_len"], d["max_predictions"]

    def forward(batch):
        ids, mask, seg = batch["input_ids"], batch["input_mask"], batch["segment_ids"]
        pos, labels = batch["masked_lm_positions"], batch["masked_lm_ids"]
        rows = ids.shape[0]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            if args.full_mlm_logits:
                o = model(input_ids=ids, attention_mask=mask, token_type_ids=seg)
                scores = o.prediction_logits.reshape(rows * seq, -1)
                flat = (pos + torch.arange(rows, device=device)[:, None] * seq).reshape(-1)
                mlm = scores.index_select(0, flat)
                nsp = o.seq_relationship_logits
            else:
                o = model.bert(input_ids=ids, attention_mask=mask, token_type_ids=seg)
                hidden = o.last_hidden_state
                flat = (pos + torch.arange(rows, device=device)[:, None] * seq).reshape(-1)
                picked = hidden.reshape(rows * seq, -1).index_select(0, flat)
                mlm = model.cls.predictions(picked)
                nsp = model.cls.seq_relationship(o.pooler_output)
        mlm, nsp = mlm.float(), nsp.float()
        w = batch["masked_lm_weights"].reshape(-1)
        mlm_nll = F.cross_entropy(mlm, labels.reshape(-1).long(), reduction="none")
        nsp_nll = F.cross_entropy(nsp, batch["next_sentence_labels"].long(), reduction="none")
        mlm_ok = (mlm.argmax(-1) == labels.reshape(-1)).float()
        nsp_ok = (nsp.argmax(-1) == batch["next_sentence_labels"]).float()
        return w, mlm_nll, nsp_nll, mlm_ok, nsp_ok

    def loss_and_metrics(batch):
        w, mlm_nll, nsp_nll, mlm_ok, nsp_ok = forward(batch)
        wsum = w.sum()
        mlm_loss = (w * mlm_nll).sum() / (wsum + 1e-5)
        nsp_loss = nsp_nll.mean()
        mlm_acc = (w * mlm_ok).sum() / torch.clamp(wsum, min=torch.finfo(torch.float32).tiny)
        return mlm_loss + nsp_loss, torch.stack([mlm_loss, nsp_loss, mlm_acc, nsp_ok.mean()])

    if args.compile:
        loss_and_metrics = torch.compile(loss_and_metrics)

    # The optimizer over the model's parameters (the tied decoder weight once, as the word
    # embeddings), decayed by name as tpu-run's WeightDecay::bert.
    named = list(model.named_parameters())
    params = [p for _, p in named]
    decayed = [p for n, p in named if not any(x in n for x in ("LayerNorm", "layer_norm", "bias"))]
    plain = [p for n, p in named if any(x in n for x in ("LayerNorm", "layer_norm", "bias"))]
    m_of = {p: torch.zeros_like(p) for p in params}
    v_of = {p: torch.zeros_like(p) for p in params}
    beta1, beta2, eps = 0.9, t["adam_beta2"], 1e-6
    correct_bias = t["optimizer"] == "adamw"

    @torch.no_grad()
    def update(step, lr):
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        # Accumulated in f64: torch's f32 foreach norm on CPU is off by ~4e-4 relative on the
        # word embeddings' gradient (30522 x H values); tpu-run's matches the f64 sum.
        norm = torch.linalg.vector_norm(
            torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float64))).float()
        if t["clip_norm"] > 0:
            c = t["clip_norm"]
            scale = c * torch.minimum(1.0 / norm, torch.tensor(1.0 / c, device=device))
            torch._foreach_mul_(grads, scale + (norm - norm))
        for group, decay in ((decayed, t["weight_decay"]), (plain, 0.0)):
            if not group:
                continue
            g = [p.grad for p in group]
            m = [m_of[p] for p in group]
            v = [v_of[p] for p in group]
            torch._foreach_mul_(m, beta1)
            torch._foreach_add_(m, g, alpha=1.0 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, g, g, value=1.0 - beta2)
            if correct_bias:
                bc1, bc2 = 1.0 - beta1 ** (step + 1), 1.0 - beta2 ** (step + 1)
                mh = torch._foreach_div(m, bc1)
                den = torch._foreach_div(v, bc2)
                torch._foreach_sqrt_(den)
            else:
                mh = m
                den = torch._foreach_sqrt(v)
            torch._foreach_add_(den, eps)
            upd = torch._foreach_div(mh, den)
            if decay:
                torch._foreach_add_(upd, group, alpha=decay)
            torch._foreach_add_(group, upd, alpha=-lr)
        return norm

    os.makedirs(out["dir"], exist_ok=True)
    metrics_path = os.path.join(out["dir"], "metrics.jsonl")
    sink = open(metrics_path, "w")

    def record(kind, step, values):
        sink.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        sink.flush()

    @torch.no_grad()
    def evaluate():
        te = time.perf_counter()
        model.eval()
        sums = torch.zeros(8, dtype=torch.float64, device=device)
        eb = ev["batch_size"] or b
        for i in range(0, len(eorder), eb):
            idx = eorder_t[i:i + eb]
            batch = {k: v.index_select(0, idx) for k, v in es.items()}
            w, mlm_nll, nsp_nll, mlm_ok, nsp_ok = forward(batch)
            rows = idx.shape[0]
            shown = batch["input_ids"].reshape(-1).index_select(
                0, (batch["masked_lm_positions"]
                    + torch.arange(rows, device=device)[:, None] * seq).reshape(-1))
            at_mask = w * (shown == ev["mask_token_id"]).float()
            sums += torch.stack([(w * mlm_nll).sum(), w.sum(), (w * mlm_ok).sum(), nsp_nll.sum(),
                                 nsp_ok.sum(), torch.tensor(float(rows), device=device),
                                 at_mask.sum(), (at_mask * mlm_ok).sum()]).double()
        model.train()
        mlm_nll, mlm_w, mlm_ok, nsp_nll, nsp_ok, n, mask_w, mask_ok = sums.tolist()
        r = {"mlm_loss": mlm_nll / max(mlm_w, 1e-9), "mlm_accuracy": mlm_ok / max(mlm_w, 1e-9),
             "nsp_loss": nsp_nll / n, "nsp_accuracy": nsp_ok / n,
             "mlm_accuracy_at_mask": mask_ok / max(mask_w, 1e-9)}
        r["loss"] = r["mlm_loss"] + r["nsp_loss"]
        r.update(examples=round(n), predictions=round(mlm_w),
                 seconds=time.perf_counter() - te)
        return r

    first_done = window_start = None
    window_seqs = 0
    history = []
    for step in range(end_step):
        done = step + 1
        idx = order_t[step * b:(step + 1) * b]
        batch = {k: v.index_select(0, idx) for k, v in tr.items()}
        lr = learning_rate(t, step)
        loss, mets = loss_and_metrics(batch)
        loss.backward()
        norm = update(step, lr)
        for p in params:
            p.grad = None
        if first_done is None:
            loss.item()  # the first step's end, as tpu-run's clock has it
            first_done = window_start = time.perf_counter()
            time_to_first_step = first_done - t0
        else:
            window_seqs += b
        if done % out["log_every"] == 0 or done == end_step:
            vals = torch.cat([loss.detach().reshape(1), mets.detach(), norm.reshape(1)]).tolist()
            if not math.isfinite(vals[0]):
                raise SystemExit(f"step {done}: the loss is {vals[0]} (diverged)")
            secs = time.perf_counter() - window_start
            rec = {"loss": vals[0], "mlm_loss": vals[1], "nsp_loss": vals[2],
                   "mlm_accuracy": vals[3], "nsp_accuracy": vals[4], "learning_rate": lr,
                   "grad_norm": vals[5], "seq_per_s": window_seqs / secs if secs > 0 else 0.0,
                   "examples_seen": done * b, "elapsed_s": time.perf_counter() - t0}
            record("train", done, rec)
            history.append((done, vals[0]))
            print(f"step {done}: loss {vals[0]:.4f} mlm_acc {vals[3]:.3f} nsp_acc {vals[4]:.3f} "
                  f"lr {lr:.3e} {rec['seq_per_s']:.1f} seq/s", file=sys.stderr, flush=True)
        last = done == end_step
        if eval_files and ((ev["interval"] > 0 and done % ev["interval"] == 0)
                           or (last and done == t["steps"])):
            r = evaluate()
            r["elapsed_s"] = time.perf_counter() - t0
            record("eval", done, r)
            print(f"eval at step {done}: mlm_loss {r['mlm_loss']:.4f} mlm_acc "
                  f"{r['mlm_accuracy']:.4f} (at [MASK] {r['mlm_accuracy_at_mask']:.4f}) nsp_loss "
                  f"{r['nsp_loss']:.4f} nsp_acc {r['nsp_accuracy']:.4f} ({r['examples']} examples, "
                  f"{r['seconds']:.1f}s)", file=sys.stderr, flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    secs = time.perf_counter() - first_done
    summary = {"trainer": "transformers BertForPreTraining (tools/hf_pretrain_reference.py)",
               "torch": torch.__version__, "device": str(device),
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "precision": t["precision"], "start_step": 0, "steps_run": end_step,
               "wall_time_s": wall, "time_to_first_step_s": time_to_first_step,
               "seq_per_s": window_seqs / secs if secs > 0 else 0.0,
               "import_s": import_s, "data_s": data_s, "loss": history[-1][1] if history else None}
    record("summary", end_step, summary)
    sink.close()
    print(f"== reference summary: {end_step} steps in {wall:.1f} s (+ imports {import_s:.1f} s, "
          f"shards {data_s:.1f} s), {summary['seq_per_s']:.1f} seq/s; metrics: {metrics_path}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
