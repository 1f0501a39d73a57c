#!/usr/bin/env python3
"""Reference GLUE fine-tuning with PyTorch + Hugging Face transformers, set up like
`tpu-run finetune glue` so the two can be compared on one GPU:

* the same files, read as google-research/bert's run_classifier.py processors do (split at
  every tab, no quoting; MRPC: header skipped, label column 0, texts columns 3 and 4; CoLA and
  SST-2 as well), and the same initial weights (a Hugging Face BERT directory, e.g.
  all-MiniLM-L6-v2; the classifier is initialized by transformers from --seed);
* the same features: [CLS] a [SEP] b [SEP], the pair cut longest-first (run_classifier's
  `_truncate_seq_pair`) to max_seq_length - 3 WordPieces, padded to max_seq_length (128);
* the same model: AutoModelForSequenceClassification, dropout as in the model config (also on
  the pooled output, as run_classifier and tpu-run);
* the same optimization: int(examples / batch x epochs) steps of batch 32 (run_classifier's
  rule) drawn from one shuffled permutation of the examples per epoch, concatenated and cut into
  batches; learning rate 2e-5 with linear warmup over int(0.1 x steps) steps then linear decay
  to 0; weight decay 0.01 except biases and LayerNorm; betas 0.9/0.999, eps 1e-6; global-norm
  clipping at 1.0; bf16 autocast on cuda (f32 on cpu). The optimizer is by default the original
  BERT AdamWeightDecay without bias correction (as run_classifier and tpu-run; see
  hf_squad_finetune.py), `--optimizer adamw` torch's AdamW;
* the same scores: dev accuracy and F1 of class 1 (GLUE's / sklearn's), eval-mode forward in
  batches;
* the same throughput measure: the clock starts at the launch of step 2 (step 1 carries
  warm-up costs) and stops once the last step's loss is read; seq/s = (steps - 1) x batch / s.

Prints one JSON line on stdout; messages go to stderr.

    python tools/hf_glue_finetune.py --model DIR --data-dir glue/MRPC --task mrpc --seed 1
"""
import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

# task: (header line, label column, text_a column, text_b column or None, labels)
TASKS = {
    "mrpc": (True, 0, 3, 4, ["0", "1"]),
    "cola": (False, 1, 3, None, ["0", "1"]),
    "sst-2": (True, 1, 0, None, ["0", "1"]),
}


def read_tsv(path):
    """csv.reader(f, delimiter="\\t", quotechar=None): every line split at every tab."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    if text.endswith("\n"):
        text = text[:-1]
    return [line[:-1].split("\t") if line.endswith("\r") else line.split("\t")
            for line in text.split("\n")] if text else []


def read_examples(task, path):
    """(text_a, text_b or None, label index) of every example of a train or dev file."""
    header, label_col, a_col, b_col, labels = TASKS[task]
    rows = read_tsv(path)
    if header:
        rows = rows[1:]
    index = {l: i for i, l in enumerate(labels)}
    return [(r[a_col], r[b_col] if b_col is not None else None, index[r[label_col]])
            for r in rows]


def featurize(tok, examples, max_seq_length):
    """run_classifier's convert_single_example for every example: ids, mask, segments, labels,
    and how many were cut."""
    pairs = any(b is not None for _, b, _ in examples)
    ids_a = tok([a for a, _, _ in examples], add_special_tokens=False)["input_ids"]
    ids_b = (tok([b or "" for _, b, _ in examples], add_special_tokens=False)["input_ids"]
             if pairs else [[] for _ in examples])
    cls, sep = tok.convert_tokens_to_ids("[CLS]"), tok.convert_tokens_to_ids("[SEP]")
    out = {"input_ids": [], "attention_mask": [], "token_type_ids": [], "labels": []}
    truncated = 0
    for a, b, (_, _, label) in zip(ids_a, ids_b, examples):
        a, b = list(a), list(b)
        budget = max_seq_length - (3 if pairs else 2)
        if len(a) + len(b) > budget:
            truncated += 1
        while len(a) + len(b) > budget:  # _truncate_seq_pair: the longer loses (b if equal)
            (a if len(a) > len(b) else b).pop()
        ids = [cls] + a + [sep] + (b + [sep] if pairs else [])
        seg = [0] * (len(a) + 2) + ([1] * (len(b) + 1) if pairs else [])
        pad = max_seq_length - len(ids)
        out["input_ids"].append(ids + [0] * pad)
        out["attention_mask"].append([1] * len(ids) + [0] * pad)
        out["token_type_ids"].append(seg + [0] * pad)
        out["labels"].append(label)
    return out, truncated


def adam_weight_decay(torch):
    """google-research/bert optimization.py's AdamWeightDecayOptimizer (no bias correction),
    as in hf_squad_finetune.py."""

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


def scores(pred, gold):
    """Accuracy and F1 of class 1 (sklearn's f1_score; 0 when it has no true positives)."""
    tp = sum(1 for p, g in zip(pred, gold) if p == 1 and g == 1)
    fp = sum(1 for p, g in zip(pred, gold) if p == 1 and g != 1)
    fn = sum(1 for p, g in zip(pred, gold) if p != 1 and g == 1)
    acc = sum(1 for p, g in zip(pred, gold) if p == g) / len(gold)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"accuracy": acc, "f1": f1, "examples": len(gold)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir", required=True, help="the task's folder: train.tsv, dev.tsv")
    ap.add_argument("--task", choices=sorted(TASKS), default="mrpc")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-batch-size", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=2e-5)
    ap.add_argument("--warmup-proportion", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--optimizer", choices=["adam-weight-decay", "adamw"],
                    default="adam-weight-decay",
                    help="BERT's AdamWeightDecay (no bias correction, as tpu-run) or torch AdamW")
    ap.add_argument("--precision", choices=["bf16", "f32"], default="bf16",
                    help="autocast dtype on cuda (cpu always runs f32)")
    ap.add_argument("--device", default=None, help="cuda if available, else cpu")
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import_s = time.perf_counter() - T_START
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.startswith("cuda")
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    t = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args.model)
    train_ex = read_examples(args.task, os.path.join(args.data_dir, "train.tsv"))
    dev_ex = read_examples(args.task, os.path.join(args.data_dir, "dev.tsv"))
    tf, train_cut = featurize(tok, train_ex, args.max_seq_length)
    df, dev_cut = featurize(tok, dev_ex, args.max_seq_length)
    featurize_s = time.perf_counter() - t
    say(f"{args.task}: {len(train_ex)} train examples ({train_cut} cut), {len(dev_ex)} dev "
        f"({dev_cut} cut) in {featurize_s:.1f}s")

    t = time.perf_counter()
    torch.manual_seed(args.seed)
    num_labels = len(TASKS[args.task][4])
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=num_labels).to(dev)
    model.train()
    cols = ["input_ids", "attention_mask", "token_type_ids", "labels"]
    train_t = {c: torch.tensor(tf[c], dtype=torch.long, device=dev) for c in cols}
    if cuda:
        torch.cuda.synchronize()
    load_s = time.perf_counter() - t

    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    groups = [
        {"params": [p for name, p in model.named_parameters() if not name.endswith(no_decay)],
         "weight_decay": args.weight_decay},
        {"params": [p for name, p in model.named_parameters() if name.endswith(no_decay)],
         "weight_decay": 0.0},
    ]
    if args.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.999), eps=1e-6,
                                fused=cuda)
    else:
        opt = adam_weight_decay(torch)(groups, lr=args.learning_rate, betas=(0.9, 0.999),
                                       eps=1e-6)
    n = len(train_ex)
    if n < args.batch_size:
        sys.exit(f"{n} training examples, fewer than one batch of {args.batch_size}")
    steps = max(1, int(n / args.batch_size * args.epochs))
    if args.max_steps:
        steps = min(steps, args.max_steps)
    warmup = int(steps * args.warmup_proportion)

    def lr_factor(step):  # step = updates applied so far, as BERT's schedule
        if step < warmup:
            return step / warmup
        return max(0.0, 1.0 - step / steps)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    gen = torch.Generator().manual_seed(args.seed)
    order = []
    while len(order) < steps * args.batch_size:
        order.extend(torch.randperm(n, generator=gen).tolist())
    order = torch.tensor(order[:steps * args.batch_size], device=dev).view(steps, args.batch_size)
    amp = dict(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16,
               enabled=cuda and args.precision == "bf16")
    say(f"training {args.task}: {steps} steps of batch {args.batch_size} (warmup {warmup}) on "
        f"{dev}, {'bf16 autocast' if amp['enabled'] else 'f32'}, {args.optimizer}")

    if cuda:
        torch.cuda.synchronize()
    t_train = time.perf_counter()
    t_clock = None
    first_loss = None
    for step in range(steps):
        if step == 1:
            t_clock = time.perf_counter()  # step 1's loss was read: step 2 launches now
        idx = order[step]
        batch = {c: train_t[c][idx] for c in cols}
        with torch.autocast(**amp):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step == 0:
            first_loss = loss.item()  # synchronizes once
        if args.log_every and (step + 1) % args.log_every == 0:
            say(f"step {step + 1}/{steps}: loss {loss.item():.4f}")
    last_loss = loss.item()
    if cuda:
        torch.cuda.synchronize()
    t_end = time.perf_counter()
    train_s = t_end - t_train
    seq_per_s = (steps - 1) * args.batch_size / (t_end - t_clock) if steps > 1 else 0.0

    t = time.perf_counter()
    model.eval()
    dt = {c: torch.tensor(df[c], dtype=torch.long) for c in cols[:3]}
    logits = []
    with torch.no_grad(), torch.autocast(**amp):
        for i in range(0, len(dev_ex), args.eval_batch_size):
            out = model(**{c: dt[c][i:i + args.eval_batch_size].to(dev) for c in dt})
            logits.append(out.logits.float().cpu())
    logits = torch.cat(logits)
    gold = df["labels"]
    dev_scores = scores(logits.argmax(-1).tolist(), gold)
    dev_scores["loss"] = round(float(torch.nn.functional.cross_entropy(
        logits.double(), torch.tensor(gold))), 3)
    eval_s = time.perf_counter() - t
    say(f"{args.task} dev: accuracy {100 * dev_scores['accuracy']:.2f} "
        f"f1 {100 * dev_scores['f1']:.2f}; train {train_s:.1f}s ({seq_per_s:.1f} seq/s)")
    r = lambda x: round(x, 3)  # noqa: E731
    print(json.dumps({
        "run": "hf_glue_finetune.py",
        "task": args.task.upper(),
        "seed": args.seed,
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "precision": "bf16" if amp["enabled"] else "f32",
        "optimizer": args.optimizer,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "epochs": args.epochs,
        "train_examples": n,
        "steps": steps,
        "warmup_steps": warmup,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "import_s": r(import_s),
        "featurize_s": r(featurize_s),
        "load_s": r(load_s),
        "train_s": r(train_s),
        "train_seq_per_s": r(seq_per_s),
        "eval_s": r(eval_s),
        "eval": {"dev": dev_scores},
        "total_s": r(time.perf_counter() - T_START),
    }), flush=True)


if __name__ == "__main__":
    main()
