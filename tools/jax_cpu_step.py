#!/usr/bin/env python3
"""CPU reference timing: the BERT pretraining step `tpu-run pretrain` compiles, written in JAX.

Same math as src/model + src/train: post-LN BERT (word + position + token-type embeddings, layer
norm eps 1e-12, dropout 0.1 after the embeddings, on the attention probabilities and after each
dense output), attention bias (1 - mask) * -10000, exact-erf GELU, pooler dense + tanh, MLM head
(gather, dense + GELU, layer norm, tied decoder + bias) with loss sum(w nll) / (sum(w) + 1e-5),
NSP head, loss = MLM + NSP; f32 everywhere (matmuls at HIGHEST); global-norm clipping at 1.0;
AdamWeightDecay of the original BERT (no bias correction, eps 1e-6, decay 0.01 except LayerNorm
and bias); linear warmup/decay schedule. Parameters and optimizer state are donated, as ours.

Batches: random ids in [1000, vocab), 15% of positions predicted, two batches alternated, on the
device before timing (as ../shared/bench/jax_bert.py). Prints one JSON line per configuration
with the median step time of the timed steps.

    pip install "jax[cpu]"
    python3 tools/jax_cpu_step.py --preset tiny --seq 128 --batch 32 --steps 20
"""
import argparse
import json
import math
import platform
import statistics
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_default_matmul_precision", "highest")

PRESETS = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8), "base": (12, 768, 12)}


def init(key, V, H, L, I, P, T=2, std=0.02):
    keys = iter(jax.random.split(key, 8 + 8 * L))
    tn = lambda *s: std * jax.random.truncated_normal(next(keys), -2.0, 2.0, s, jnp.float32)
    z = lambda *s: jnp.zeros(s, jnp.float32)
    o = lambda *s: jnp.ones(s, jnp.float32)
    p = {"word": tn(V, H), "pos": tn(P, H), "type": tn(T, H), "emb_LayerNorm_g": o(H),
         "emb_LayerNorm_b": z(H), "layers": []}
    for _ in range(L):
        p["layers"].append({
            "q": tn(H, H), "q_bias": z(H), "k": tn(H, H), "k_bias": z(H), "v": tn(H, H),
            "v_bias": z(H), "o": tn(H, H), "o_bias": z(H), "attn_LayerNorm_g": o(H),
            "attn_LayerNorm_b": z(H), "ffn1": tn(H, I), "ffn1_bias": z(I), "ffn2": tn(I, H),
            "ffn2_bias": z(H), "out_LayerNorm_g": o(H), "out_LayerNorm_b": z(H)})
    p.update({"pool": tn(H, H), "pool_bias": z(H), "mlm": tn(H, H), "mlm_bias": z(H),
              "mlm_LayerNorm_g": o(H), "mlm_LayerNorm_b": z(H), "decoder_bias": z(V),
              "nsp": tn(H, 2), "nsp_bias": z(2)})
    return p


def layer_norm(x, g, b, eps=1e-12):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / jnp.sqrt(v + eps) * g + b


def gelu(x):
    return 0.5 * x * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


def dropout(x, rate, key):
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def loss_fn(p, batch, key, heads, rate):
    ids, mask, seg, mpos, mids, mw, nsp = batch
    B, S = ids.shape
    H = p["word"].shape[1]
    d = H // heads
    keys = iter(jax.random.split(key, 64))
    x = p["word"][ids] + p["pos"][:S][None] + p["type"][seg]
    x = dropout(layer_norm(x, p["emb_LayerNorm_g"], p["emb_LayerNorm_b"]), rate, next(keys))
    bias = (1.0 - mask.astype(jnp.float32))[:, None, None, :] * -10000.0
    for l in p["layers"]:
        q = (x @ l["q"] + l["q_bias"]).reshape(B, S, heads, d)
        k = (x @ l["k"] + l["k_bias"]).reshape(B, S, heads, d)
        v = (x @ l["v"] + l["v_bias"]).reshape(B, S, heads, d)
        s = jnp.einsum("bind,bjnd->bnij", q, k) / math.sqrt(d) + bias
        a = dropout(jax.nn.softmax(s, -1), rate, next(keys))
        c = jnp.einsum("bnij,bjnd->bind", a, v).reshape(B, S, H)
        c = dropout(c @ l["o"] + l["o_bias"], rate, next(keys))
        x = layer_norm(c + x, l["attn_LayerNorm_g"], l["attn_LayerNorm_b"])
        f = gelu(x @ l["ffn1"] + l["ffn1_bias"]) @ l["ffn2"] + l["ffn2_bias"]
        x = layer_norm(dropout(f, rate, next(keys)) + x, l["out_LayerNorm_g"], l["out_LayerNorm_b"])
    pooled = jnp.tanh(x[:, 0] @ p["pool"] + p["pool_bias"])
    flat = (mpos + jnp.arange(B)[:, None] * S).reshape(-1)
    g = x.reshape(B * S, H)[flat]
    g = layer_norm(gelu(g @ p["mlm"] + p["mlm_bias"]), p["mlm_LayerNorm_g"], p["mlm_LayerNorm_b"])
    logits = g @ p["word"].T + p["decoder_bias"]
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), mids.reshape(-1, 1), -1)[:, 0]
    w = mw.reshape(-1)
    mlm = (w * nll).sum() / (w.sum() + 1e-5)
    nl = jax.nn.log_softmax(pooled @ p["nsp"] + p["nsp_bias"], -1)
    ns = -jnp.take_along_axis(nl, nsp[:, None], -1).mean()
    return mlm + ns


def decayed(path):
    name = jax.tree_util.keystr(path)
    return not ("LayerNorm" in name or "bias" in name)


def make_step(heads, rate, lr, warmup, total):
    def step(p, m, v, t, batch, key):
        loss, g = jax.value_and_grad(loss_fn)(p, batch, key, heads, rate)
        norm = jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(g)))
        g = jax.tree_util.tree_map(lambda x: x * (1.0 / jnp.maximum(norm, 1.0)), g)
        tf = t.astype(jnp.float32)
        rate_t = lr * (1.0 - jnp.minimum(tf, total) / total)
        rate_t = jnp.where(tf < warmup, lr * tf / warmup, rate_t)
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)

        def upd(path, p, m, v):
            u = m / (jnp.sqrt(v) + 1e-6)
            if decayed(path):
                u = u + 0.01 * p
            return p - rate_t * u

        p = jax.tree_util.tree_map_with_path(upd, p, m, v)
        return p, m, v, t + 1, loss

    return jax.jit(step, donate_argnums=(0, 1, 2, 3))


def batch(key, B, S, P, V):
    k = jax.random.split(key, 5)
    n = max(1, min(P, round(S * 0.15)))
    ids = jax.random.randint(k[0], (B, S), 1000, V, jnp.int32)
    mask = jnp.ones((B, S), jnp.int32)
    seg = (jnp.arange(S) >= S // 2).astype(jnp.int32)[None].repeat(B, 0)
    pos = jax.vmap(lambda kk: jnp.sort(jax.random.choice(kk, S - 1, (n,), replace=False) + 1))(
        jax.random.split(k[1], B)).astype(jnp.int32)
    labels = jnp.take_along_axis(ids, pos, 1)
    pad = P - n
    pos = jnp.pad(pos, ((0, 0), (0, pad)))
    labels = jnp.pad(labels, ((0, 0), (0, pad)))
    w = jnp.pad(jnp.ones((B, n), jnp.float32), ((0, 0), (0, pad)))
    nsp = jax.random.randint(k[2], (B,), 0, 2, jnp.int32)
    return ids, mask, seg, pos, labels, w, nsp


def bench(preset, B, S, P, steps, V=30522, hidden=None, warm=2):
    L, H, A = PRESETS[preset]
    H = hidden or H
    t0 = time.perf_counter()
    key = jax.random.PRNGKey(0)
    p = init(key, V, H, L, 4 * H, 512)
    m = jax.tree_util.tree_map(jnp.zeros_like, p)
    v = jax.tree_util.tree_map(jnp.zeros_like, p)
    t = jnp.array(0, jnp.int32)
    batches = [batch(jax.random.PRNGKey(i + 1), B, S, P, V) for i in range(2)]
    step = make_step(A, 0.1, 1e-4, 100.0, 1000.0)
    tc = time.perf_counter()
    compiled = step.lower(p, m, v, t, batches[0], key).compile()
    compile_s = time.perf_counter() - tc
    times = []
    last = None
    for i in range(1 + warm + steps):
        ts = time.perf_counter()
        p, m, v, t, loss = compiled(p, m, v, t, batches[i % 2], jax.random.PRNGKey(100 + i))
        loss.block_until_ready()
        times.append(time.perf_counter() - ts)
        if i == 0:
            first = time.perf_counter() - t0
        last = float(loss)
    timed = times[1 + warm:]
    med = statistics.median(timed)
    return {"anchor": "jax-cpu", "preset": preset, "hidden": H, "batch": B, "seq": S,
            "max_predictions": P, "vocab": V, "compile_s": round(compile_s, 2),
            "time_to_first_step_s": round(first, 2), "median_step_ms": round(med * 1e3, 2),
            "seq_per_s": round(B / med, 1), "steps_timed": len(timed), "loss": last}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--max-predictions", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    print(json.dumps({"jax": jax.__version__, "devices": str(jax.devices()),
                      "machine": platform.processor() or platform.machine()}), flush=True)
    for preset in a.preset or ["tiny", "mini"]:
        print(json.dumps(bench(preset, a.batch, a.seq, a.max_predictions, a.steps)), flush=True)


if __name__ == "__main__":
    main()
