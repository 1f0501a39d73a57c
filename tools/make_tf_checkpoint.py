#!/usr/bin/env python3
"""Writes the tiny google-research/bert-shaped TF checkpoint in tests/fixtures/tf_ckpt/.

Real TensorFlow writes it (tf.compat.v1 variables and Saver, as google-research/bert's
run_pretraining.py does), so the Rust tensor-bundle reader is tested against TF's own writer:

    bert_config.json  vocab.txt  bert_model.ckpt.index  bert_model.ckpt.data-00000-of-00001
    expected.json     every tensor's dtype, shape, values and sum; global_step; and the
                      sequence/pooled output of modeling.py's forward pass (written out below
                      with TF ops) on a fixed batch, for an end-to-end check of the import.

The checkpoint also holds AdamWeightDecayOptimizer's slots (`<var>/adam_m`, `<var>/adam_v`,
random values so they differ from the weights) and `global_step`, which an importer must skip.

Usage (TensorFlow from PyPI):  pip install tensorflow-cpu && python3 tools/make_tf_checkpoint.py
"""
import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
import tensorflow as tf  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tf_ckpt")

# Small, with every size distinct where a mix-up would otherwise go unnoticed.
CONFIG = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",  # google-research's gelu: the tanh approximation
    "hidden_dropout_prob": 0.1,
    "hidden_size": 8,
    "initializer_range": 0.02,
    "intermediate_size": 12,
    "max_position_embeddings": 20,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "type_vocab_size": 2,
    "vocab_size": 30,
}
GLOBAL_STEP = 12345
SEED = 20240611

INPUT_IDS = [[2, 7, 11, 29, 5, 3, 0, 0, 0], [2, 13, 17, 3, 19, 23, 1, 3, 0]]
INPUT_MASK = [[1, 1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 0]]
SEGMENT_IDS = [[0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1, 0]]


def variable_specs(cfg):
    """(name, shape, kind) in modeling.py's names; kind picks the random values."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    out = [
        ("bert/embeddings/word_embeddings", [v, h], "table"),
        ("bert/embeddings/token_type_embeddings", [cfg["type_vocab_size"], h], "table"),
        ("bert/embeddings/position_embeddings", [cfg["max_position_embeddings"], h], "table"),
        ("bert/embeddings/LayerNorm/beta", [h], "bias"),
        ("bert/embeddings/LayerNorm/gamma", [h], "gamma"),
    ]

    def dense(prefix, n_in, n_out):
        out.append((prefix + "/kernel", [n_in, n_out], "kernel"))
        out.append((prefix + "/bias", [n_out], "bias"))

    def layer_norm(prefix):
        out.append((prefix + "/beta", [h], "bias"))
        out.append((prefix + "/gamma", [h], "gamma"))

    for layer in range(cfg["num_hidden_layers"]):
        p = "bert/encoder/layer_%d" % layer
        for part in ("query", "key", "value"):
            dense(p + "/attention/self/" + part, h, h)
        dense(p + "/attention/output/dense", h, h)
        layer_norm(p + "/attention/output/LayerNorm")
        dense(p + "/intermediate/dense", h, i)
        dense(p + "/output/dense", i, h)
        layer_norm(p + "/output/LayerNorm")
    dense("bert/pooler/dense", h, h)
    dense("cls/predictions/transform/dense", h, h)
    layer_norm("cls/predictions/transform/LayerNorm")
    out.append(("cls/predictions/output_bias", [v], "bias"))
    out.append(("cls/seq_relationship/output_weights", [2, h], "kernel"))
    out.append(("cls/seq_relationship/output_bias", [2], "bias"))
    return out


def random_value(rng, shape, kind):
    """Values large enough that every parameter moves the forward pass (not BERT's 0.02 init)."""
    z = rng.standard_normal(shape)
    scale, offset = {"table": (0.5, 0.0), "kernel": (0.3, 0.0), "bias": (0.1, 0.0), "gamma": (0.2, 1.0)}[kind]
    return (offset + scale * z).astype(np.float32)


def gelu_tanh(x):
    """modeling.py's gelu."""
    cdf = 0.5 * (1.0 + tf.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * tf.pow(x, 3))))
    return x * cdf


def layer_norm(x, prefix, var):
    """tf.contrib.layers.layer_norm over the last axis (variance_epsilon 1e-12)."""
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return tf.nn.batch_normalization(x, mean, variance, var[prefix + "/beta"], var[prefix + "/gamma"], 1e-12)


def dense(x, prefix, var):
    return tf.matmul(x, var[prefix + "/kernel"]) + var[prefix + "/bias"]


def forward(cfg, var):
    """modeling.py's BertModel (is_training=False) on the fixed batch: sequence and pooled output."""
    ids = tf.constant(INPUT_IDS, tf.int32)
    mask = tf.constant(INPUT_MASK, tf.float32)
    seg = tf.constant(SEGMENT_IDS, tf.int32)
    batch, seq = len(INPUT_IDS), len(INPUT_IDS[0])
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    d = h // heads
    x = tf.gather(var["bert/embeddings/word_embeddings"], ids)
    x += tf.gather(var["bert/embeddings/token_type_embeddings"], seg)
    x += var["bert/embeddings/position_embeddings"][:seq][None]
    x = layer_norm(x, "bert/embeddings/LayerNorm", var)
    adder = (1.0 - mask[:, None, None, :]) * -10000.0
    x = tf.reshape(x, [batch * seq, h])
    for layer in range(cfg["num_hidden_layers"]):
        p = "bert/encoder/layer_%d" % layer

        def heads_of(t):
            return tf.transpose(tf.reshape(t, [batch, seq, heads, d]), [0, 2, 1, 3])

        q = heads_of(dense(x, p + "/attention/self/query", var))
        k = heads_of(dense(x, p + "/attention/self/key", var))
        v = heads_of(dense(x, p + "/attention/self/value", var))
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / np.sqrt(d)) + adder
        ctx = tf.matmul(tf.nn.softmax(scores), v)
        ctx = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [batch * seq, h])
        a = layer_norm(dense(ctx, p + "/attention/output/dense", var) + x, p + "/attention/output/LayerNorm", var)
        inter = gelu_tanh(dense(a, p + "/intermediate/dense", var))
        x = layer_norm(dense(inter, p + "/output/dense", var) + a, p + "/output/LayerNorm", var)
    sequence = tf.reshape(x, [batch, seq, h])
    pooled = tf.tanh(dense(sequence[:, 0], "bert/pooler/dense", var))
    return sequence, pooled


def floats(a):
    # float(np.float32) is the exact value as a double; repr prints it so it parses back exactly.
    return [float(x) for x in np.asarray(a).reshape(-1)]


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    specs = variable_specs(CONFIG)
    values = {name: random_value(rng, shape, kind) for name, shape, kind in specs}
    slots = {}
    for name, shape, _ in specs:
        slots[name + "/adam_m"] = (0.01 * rng.standard_normal(shape)).astype(np.float32)
        slots[name + "/adam_v"] = (0.001 * rng.random(shape)).astype(np.float32)

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(SEED)
        var = {}
        for name, value in list(values.items()) + list(slots.items()):
            # get_variable with the full name, as modeling.py's scopes and
            # optimization.py's `param_name + "/adam_m"` produce.
            var[name] = tf.compat.v1.get_variable(
                name, initializer=tf.constant(value), trainable=not name.endswith(("adam_m", "adam_v")))
        step = tf.compat.v1.train.get_or_create_global_step()
        set_step = step.assign(GLOBAL_STEP)
        sequence, pooled = forward(CONFIG, var)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(set_step)
            prefix = saver.save(sess, os.path.join(OUT, "bert_model.ckpt"), write_meta_graph=False,
                                write_state=False)
            seq_out, pooled_out = sess.run([sequence, pooled])
            stored = {name: sess.run(v) for name, v in var.items()}

    # What was saved is what we meant to save.
    for name, value in list(values.items()) + list(slots.items()):
        assert np.array_equal(stored[name], value), name
    reader = tf.train.load_checkpoint(prefix)
    saved_names = set(reader.get_variable_to_shape_map())
    assert saved_names == set(values) | set(slots) | {"global_step"}, saved_names ^ (set(values) | set(slots))
    assert int(reader.get_tensor("global_step")) == GLOBAL_STEP

    with open(os.path.join(OUT, "bert_config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2, sort_keys=True)
        f.write("\n")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ["tok%d" % i for i in range(CONFIG["vocab_size"] - 5)]
    with open(os.path.join(OUT, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")

    tensors = {}
    for name, value in sorted(list(values.items()) + list(slots.items())):
        tensors[name] = {
            "dtype": "float32",
            "shape": list(value.shape),
            "sum": float(np.sum(value.astype(np.float64))),
            "values": floats(value),
        }
    expected = {
        "generator": "tools/make_tf_checkpoint.py, tensorflow %s" % tf.__version__,
        "global_step": GLOBAL_STEP,
        "num_params": len(values),
        "tensors": tensors,
        "forward": {
            "input_ids": INPUT_IDS,
            "input_mask": INPUT_MASK,
            "segment_ids": SEGMENT_IDS,
            "sequence_output": floats(seq_out),
            "pooled_output": floats(pooled_out),
        },
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print("wrote %s (%d tensors, %d bytes)" % (OUT, len(tensors) + 1, total), file=sys.stderr)


if __name__ == "__main__":
    main()
