#!/usr/bin/env python3
"""Reference SQuAD v1.1 fine-tuning with PyTorch + Hugging Face transformers, set up like
`tpu-run finetune squad` so the two can be compared on one GPU:

* the same files (an article-level split made by `tpu-run squad-split`), the same initial
  weights (a Hugging Face BERT directory, e.g. all-MiniLM-L6-v2; the QA head `qa_outputs` is
  initialized by transformers from --seed);
* the same features: max_seq_length 384, at most 64 question tokens, context windows starting
  doc_stride (128) tokens apart as run_squad does (Hugging Face's `stride` is the *overlap* of
  windows, so it is set per question to window length - doc_stride);
* the same optimization: 2 epochs as ceil(epochs x features / batch) steps of batch 32 drawn
  from one shuffled permutation of the features per epoch, learning rate 3e-5 with linear warmup
  over 10% of the steps then linear decay to 0, weight decay 0.01 except biases and LayerNorm,
  betas 0.9/0.999, eps 1e-6, global-norm clipping at 1.0, dropout as in the model config,
  bf16 autocast. The optimizer is by default the original BERT AdamWeightDecay (as
  google-research/bert's run_squad and tpu-run use; also pytorch-pretrained-bert's BertAdam),
  which has NO bias correction: early updates are m/sqrt(v) with m and v still near their zero
  start, (1 - 0.9^t) / sqrt(1 - 0.999^t) times Adam's, i.e. 3.2x at step 1, 5.5x at step 30,
  3.2x at 100, 1.9x at 300. Over a short fine-tuning (a few hundred steps) that is a several
  times larger effective learning rate, so `--optimizer adamw` (torch's AdamW, fused on cuda,
  with bias correction) learns much more slowly at the same --learning-rate;
* Hugging Face's own post-processing (run_qa's `postprocess_qa_predictions`: n-best 20, max
  answer length 30, spans mapped back through the offsets) and the official v1.1 scoring
  (evaluate-v1.1.py's rules, written out below).

Prints one JSON line: wall times, training throughput, EM and F1. Writes predictions.json into
--output-dir (score it with `tpu-run squad-eval` too).

    python tools/hf_squad_finetune.py --model DIR --train train.json --predict val.json
"""
import argparse
import collections
import json
import math
import os
import re
import string
import sys
import time

import numpy as np


# --- data ---------------------------------------------------------------------------------

def read_squad(path):
    """Every question of a SQuAD v1.1 file: id, question, context, answers (texts and starts)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)["data"]
    out = []
    for article in data:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                out.append({
                    "id": qa["id"],
                    "question": qa["question"].lstrip(),
                    "context": p["context"],
                    "answers": [a["text"] for a in qa["answers"]],
                    "starts": [a["answer_start"] for a in qa["answers"]],
                })
    return out, data


def truncate_question(tok, question, max_query_length):
    """The question cut after its first max_query_length WordPieces (run_squad truncates the
    question tokens; Hugging Face only truncates the context, so it is done on the text)."""
    enc = tok(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_query_length:
        return question, len(enc["input_ids"])
    end = enc["offset_mapping"][max_query_length - 1][1]
    return question[:end], max_query_length


def featurize(tok, examples, args, training):
    """Hugging Face run_qa's prepare_{train,validation}_features, one question at a time so
    that each question's windows start doc_stride tokens apart."""
    feats = collections.defaultdict(list)
    for ei, ex in enumerate(examples):
        question, q_len = truncate_question(tok, ex["question"], args.max_query_length)
        budget = args.max_seq_length - q_len - 3
        overlap = max(0, budget - args.doc_stride)
        enc = tok(question, ex["context"], truncation="only_second",
                  max_length=args.max_seq_length, stride=overlap,
                  return_overflowing_tokens=True, return_offsets_mapping=True,
                  padding="max_length")
        for i in range(len(enc["input_ids"])):
            ids = enc["input_ids"][i]
            seq_ids = enc.sequence_ids(i)
            offsets = enc["offset_mapping"][i]
            feats["input_ids"].append(ids)
            feats["attention_mask"].append(enc["attention_mask"][i])
            feats["token_type_ids"].append(enc["token_type_ids"][i])
            feats["example"].append(ei)
            feats["offsets"].append([o if seq_ids[k] == 1 else None for k, o in enumerate(offsets)])
            if not training:
                continue
            # The first answer, as run_squad trains on; the CLS position when this window
            # does not contain all of it.
            start_char = ex["starts"][0]
            end_char = start_char + len(ex["answers"][0])
            ctx_start = seq_ids.index(1)
            ctx_end = len(seq_ids) - 1 - seq_ids[::-1].index(1)
            if not (offsets[ctx_start][0] <= start_char and offsets[ctx_end][1] >= end_char):
                feats["start_positions"].append(0)
                feats["end_positions"].append(0)
                continue
            s = ctx_start
            while s <= ctx_end and offsets[s][0] <= start_char:
                s += 1
            e = ctx_end
            while e >= ctx_start and offsets[e][1] >= end_char:
                e -= 1
            feats["start_positions"].append(s - 1)
            feats["end_positions"].append(e + 1)
    return feats


def postprocess(examples, feats, start_logits, end_logits, n_best_size, max_answer_length):
    """Hugging Face run_qa's postprocess_qa_predictions for SQuAD v1.1 (no null answer)."""
    by_example = collections.defaultdict(list)
    for fi, ei in enumerate(feats["example"]):
        by_example[ei].append(fi)
    preds = collections.OrderedDict()
    for ei, ex in enumerate(examples):
        candidates = []
        for fi in by_example[ei]:
            sl, el, offsets = start_logits[fi], end_logits[fi], feats["offsets"][fi]
            starts = np.argsort(sl)[-1:-n_best_size - 1:-1].tolist()
            ends = np.argsort(el)[-1:-n_best_size - 1:-1].tolist()
            for s in starts:
                for e in ends:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None \
                            or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    candidates.append((float(sl[s] + el[e]), offsets[s][0], offsets[e][1]))
        candidates.sort(key=lambda c: c[0], reverse=True)
        best = candidates[0] if candidates else None
        preds[ex["id"]] = ex["context"][best[1]:best[2]] if best else ""
    return preds


# --- the official v1.1 evaluation (evaluate-v1.1.py) --------------------------------------

def normalize_answer(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction, ground_truth):
    p, g = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def evaluate(dataset, predictions):
    f1 = em = total = 0
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                truths = [a["text"] for a in qa["answers"]]
                pred = predictions[qa["id"]]
                em += max(float(normalize_answer(pred) == normalize_answer(t)) for t in truths)
                f1 += max(f1_score(pred, t) for t in truths)
    return {"exact_match": 100.0 * em / total, "f1": 100.0 * f1 / total}


# --- training and prediction --------------------------------------------------------------

def adam_weight_decay(torch):
    """google-research/bert optimization.py's AdamWeightDecayOptimizer in torch:
    m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m / (sqrt(v) + eps) + wd p), with no
    bias correction. Weight decay comes from each param group, as in torch's optimizers."""

    class AdamWeightDecay(torch.optim.Optimizer):
        def __init__(self, params, lr, betas, eps, weight_decay=0.0):
            super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                if not params:
                    continue
                grads = [p.grad for p in params]
                for p in params:
                    if not self.state[p]:
                        self.state[p]["m"] = torch.zeros_like(p)
                        self.state[p]["v"] = torch.zeros_like(p)
                ms = [self.state[p]["m"] for p in params]
                vs = [self.state[p]["v"] for p in params]
                b1, b2 = group["betas"]
                torch._foreach_lerp_(ms, grads, 1 - b1)
                torch._foreach_mul_(vs, b2)
                torch._foreach_addcmul_(vs, grads, grads, value=1 - b2)
                denom = torch._foreach_sqrt(vs)
                torch._foreach_add_(denom, group["eps"])
                update = torch._foreach_div(ms, denom)
                if group["weight_decay"]:
                    torch._foreach_add_(update, params, alpha=group["weight_decay"])
                torch._foreach_add_(params, update, alpha=-group["lr"])

    return AdamWeightDecay


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--predict", required=True)
    ap.add_argument("--output-dir", default="hf_squad_output")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--predict-batch-size", type=int, default=None)
    ap.add_argument("--learning-rate", type=float, default=3e-5)
    ap.add_argument("--warmup-proportion", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--optimizer", choices=["adam-weight-decay", "adamw"],
                    default="adam-weight-decay",
                    help="BERT's AdamWeightDecay (no bias correction, as tpu-run) or torch AdamW")
    ap.add_argument("--max-seq-length", type=int, default=384)
    ap.add_argument("--doc-stride", type=int, default=128)
    ap.add_argument("--max-query-length", type=int, default=64)
    ap.add_argument("--n-best-size", type=int, default=20)
    ap.add_argument("--max-answer-length", type=int, default=30)
    ap.add_argument("--precision", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--log-every", type=int, default=100)
    args = ap.parse_args()
    import torch
    import transformers
    from transformers import AutoTokenizer, BertForQuestionAnswering

    pbs = args.predict_batch_size or args.batch_size
    t_start = time.perf_counter()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    tok = AutoTokenizer.from_pretrained(args.model)
    train_ex, _ = read_squad(args.train)
    pred_ex, pred_data = read_squad(args.predict)
    t_feat = time.perf_counter()
    tf = featurize(tok, train_ex, args, training=True)
    pf = featurize(tok, pred_ex, args, training=False)
    feat_s = time.perf_counter() - t_feat
    n = len(tf["input_ids"])
    cols = ["input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"]
    train_t = {c: torch.tensor(tf[c], dtype=torch.long).pin_memory() if dev == "cuda"
               else torch.tensor(tf[c], dtype=torch.long) for c in cols}

    model = BertForQuestionAnswering.from_pretrained(args.model).to(dev)
    model.train()
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    groups = [
        {"params": [p for name, p in model.named_parameters() if not name.endswith(no_decay)],
         "weight_decay": args.weight_decay},
        {"params": [p for name, p in model.named_parameters() if name.endswith(no_decay)],
         "weight_decay": 0.0},
    ]
    if args.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.999), eps=1e-6,
                                fused=dev == "cuda")
    else:
        opt = adam_weight_decay(torch)(groups, lr=args.learning_rate, betas=(0.9, 0.999),
                                       eps=1e-6)
    steps = math.ceil(args.epochs * n / args.batch_size)
    if args.max_steps:
        steps = min(steps, args.max_steps)
    warmup = int(steps * args.warmup_proportion)

    def lr_factor(step):  # step = updates applied so far, as BERT's schedule
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, 1.0 - step / steps)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    gen = torch.Generator().manual_seed(args.seed)
    order = []
    while len(order) < steps * args.batch_size:
        order.extend(torch.randperm(n, generator=gen).tolist())
    order = torch.tensor(order[:steps * args.batch_size]).view(steps, args.batch_size)
    amp = dict(device_type="cuda", dtype=torch.bfloat16, enabled=(args.precision == "bf16"
                                                                   and dev == "cuda"))
    first_loss = last_loss = None
    if dev == "cuda":
        torch.cuda.synchronize()
    t_train = time.perf_counter()
    t_after_first = None
    for step in range(steps):
        idx = order[step]
        batch = {c: train_t[c][idx].to(dev, non_blocking=True) for c in cols}
        with torch.autocast(**amp):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        lr_used = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step == 0:
            first_loss = float(loss)  # synchronizes once
            t_after_first = time.perf_counter()
        if args.log_every and (step + 1) % args.log_every == 0:
            print(f"step {step + 1}/{steps}: loss {float(loss):.4f} lr {lr_used:.3e}",
                  file=sys.stderr, flush=True)
    last_loss = float(loss)
    if dev == "cuda":
        torch.cuda.synchronize()
    t_end = time.perf_counter()
    train_s = t_end - t_train
    seq_per_s = (steps - 1) * args.batch_size / (t_end - t_after_first) if steps > 1 else 0.0

    t_pred = time.perf_counter()
    model.eval()
    pcols = ["input_ids", "attention_mask", "token_type_ids"]
    pt = {c: torch.tensor(pf[c], dtype=torch.long) for c in pcols}
    starts, ends = [], []
    with torch.no_grad(), torch.autocast(**amp):
        for i in range(0, len(pf["input_ids"]), pbs):
            out = model(**{c: pt[c][i:i + pbs].to(dev) for c in pcols})
            starts.append(out.start_logits.float().cpu().numpy())
            ends.append(out.end_logits.float().cpu().numpy())
    start_logits, end_logits = np.concatenate(starts), np.concatenate(ends)
    preds = postprocess(pred_ex, pf, start_logits, end_logits, args.n_best_size,
                        args.max_answer_length)
    predict_s = time.perf_counter() - t_pred
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "predictions.json"), "w", encoding="utf-8") as f:
        json.dump(preds, f, indent=4)
    scores = evaluate(pred_data, preds)
    print(json.dumps({
        "run": "hf transformers",
        "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "precision": args.precision,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "optimizer": args.optimizer,
        "epochs": args.epochs,
        "train_examples": len(train_ex),
        "train_features": n,
        "predict_examples": len(pred_ex),
        "predict_features": len(pf["input_ids"]),
        "steps": steps,
        "warmup_steps": warmup,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "featurize_s": round(feat_s, 3),
        "train_s": round(train_s, 3),
        "predict_s": round(predict_s, 3),
        "total_s": round(time.perf_counter() - t_start, 3),
        "train_seq_per_s": round(seq_per_s, 3),
        "exact_match": scores["exact_match"],
        "f1": scores["f1"],
    }), flush=True)


if __name__ == "__main__":
    main()
