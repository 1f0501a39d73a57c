#!/usr/bin/env python3
"""Known-good TFRecord bytes for tests/data_tfrecord.rs, written by TensorFlow itself.

    /tmp/goldenv/bin/pip install tensorflow-cpu
    /tmp/goldenv/bin/python tools/tfrecord_golden.py > tests/fixtures/tfrecord_golden.json

Three records go through tf.io.TFRecordWriter into one file: a BERT pretraining tf.train.Example
(the features google-research/bert writes, serialized with deterministic=True so map keys are
sorted), an empty record and 300 arbitrary bytes. The JSON holds the example's feature values,
each record's payload, and the whole file's bytes (hex).
"""
import json
import os
import random
import sys
import tempfile

import tensorflow as tf


def main():
    rng = random.Random(20261125)
    seq, preds = 8, 3
    n_real = 6
    values = {
        "input_ids": [101] + [rng.randint(1000, 30521) for _ in range(n_real - 2)] + [102] + [0] * (seq - n_real),
        "input_mask": [1] * n_real + [0] * (seq - n_real),
        "segment_ids": [0, 0, 0, 1, 1, 1, 0, 0],
        "masked_lm_positions": [2, 4, 0],
        "masked_lm_ids": [rng.randint(1000, 30521), rng.randint(1000, 30521), 0],
        "masked_lm_weights": [1.0, 1.0, 0.0],
        "next_sentence_labels": [1],
    }
    feats = {}
    for k, v in values.items():
        if k == "masked_lm_weights":
            feats[k] = tf.train.Feature(float_list=tf.train.FloatList(value=v))
        else:
            feats[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=v))
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    payloads = [
        example.SerializeToString(deterministic=True),
        b"",
        bytes(rng.randrange(256) for _ in range(300)),
    ]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "golden.tfrecord")
        with tf.io.TFRecordWriter(path) as w:
            for p in payloads:
                w.write(p)
        file_bytes = open(path, "rb").read()
        # TensorFlow reads it back (CRC checked).
        back = [r.numpy() for r in tf.data.TFRecordDataset(path)]
        assert back == payloads
    json.dump({
        "writer": "tf.io.TFRecordWriter, TensorFlow " + tf.__version__,
        "seq_len": seq,
        "max_predictions": preds,
        "example_values": values,
        "payloads_hex": [p.hex() for p in payloads],
        "file_hex": file_bytes.hex(),
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
