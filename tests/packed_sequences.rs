//! Packed sequences are the same math as padded ones: random pretraining instances of varied
//! lengths, once one per padded row and once packed several to a row (src/data/packing.rs,
//! src/model/packed.rs), give the same loss, MLM and NSP losses and gradients for every
//! parameter, on the CPU plugin in f32, through the forward+gradient program and through the
//! compiled train step. The packed batch with its attention mask broken (instances of a row see
//! each other), or with positions that do not restart, gives a different loss: the comparison
//! can fail.
//!
//! Tolerances: both sides compute the same sums in f32 over the same nonzero terms (a masked key
//! gets exp(-10000 + s - max) = 0 exactly, in both layouts); only the order and blocking of the
//! f32 reductions differ (softmax denominators over rows of other lengths, the loss sums over
//! other slot layouts, the position-embedding gradient as a scatter-add instead of a sum over
//! rows). Each differs by a few ulps (~1e-7 relative) per op, so after two layers and the
//! backward pass values agree to ~1e-6 relative: rtol 1e-5. A gradient entry that is a sum of
//! cancelling terms has rounding error relative to its terms, not to itself (the key bias's
//! gradient is 0 analytically and ~1e-8 computed): atol 1e-6 times the largest gradient entry
//! of the model (1e-6 absolute for the losses). Measured: the largest gradient difference is
//! 5e-7 against gradients up to 0.84.
mod common;
mod model_support;

use common::check::assert_close;
use common::{client, compile, f64s};
use hlo::{ElementType, Literal, Module, ModuleBuilder, Shape, Value};
use model_support::random_params;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tpu::{Buffer, Executable};
use tpu_run::data::batch::HostExample;
use tpu_run::data::packing::{
    pack_examples, pack_first_fit_decreasing, Footprint, PackLimits, PackedBatch,
};
use tpu_run::data::Batch;
use tpu_run::model::params::param_specs;
use tpu_run::model::{pretraining_loss, BatchShapes, BertConfig, Execution, ParamSet, ParamValues};
use tpu_run::pretrain::batches::{field_literals, packed_field_literals};
use tpu_run::pretrain::program::{train_program, train_step_module};
use tpu_run::pretrain::PretrainConfig;
use tpu_run::train::{Schedule, Sgd, StepConfig, Trainer, WeightDecay};

const SEQ: usize = 32;
const PREDS: usize = 5;
const K: usize = 3;
const VOCAB: usize = 100;
/// Real lengths of the instances: one full row, the rest short enough to share rows.
const LENGTHS: [usize; 8] = [32, 7, 19, 12, 25, 5, 9, 14];

/// L2 H32 A2 I64, vocab 100, positions up to SEQ, no dropout.
fn config() -> BertConfig {
    let mut c = BertConfig::preset("tiny").unwrap();
    c.vocab_size = VOCAB;
    c.hidden_size = 32;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.intermediate_size = 64;
    c.max_position_embeddings = SEQ;
    c.hidden_dropout_prob = 0.0;
    c.attention_probs_dropout_prob = 0.0;
    c
}

/// Unpacked instances as create-data writes them: `[CLS] A [SEP] B [SEP]`-shaped token types,
/// random ids, up to PREDS predictions at distinct real positions (weight 1, then padding),
/// random NSP labels.
fn instances(seed: u64) -> Vec<HostExample> {
    let mut r = StdRng::seed_from_u64(seed);
    LENGTHS
        .iter()
        .map(|&len| {
            let split = r.gen_range(1..len);
            let mut ex = HostExample {
                input_ids: (0..SEQ).map(|_| r.gen_range(1..VOCAB as i32)).collect(),
                input_mask: (0..SEQ).map(|t| i32::from(t < len)).collect(),
                segment_ids: (0..SEQ).map(|t| i32::from(t >= split && t < len)).collect(),
                masked_lm_positions: vec![0; PREDS],
                masked_lm_ids: vec![0; PREDS],
                masked_lm_weights: vec![0.0; PREDS],
                next_sentence_label: r.gen_range(0..2),
            };
            for t in len..SEQ {
                ex.input_ids[t] = 0;
            }
            let n = r.gen_range(1..=PREDS.min(len));
            let mut chosen = rand::seq::index::sample(&mut r, len, n).into_vec();
            chosen.sort_unstable();
            for (k, p) in chosen.into_iter().enumerate() {
                ex.masked_lm_positions[k] = p as i32;
                ex.masked_lm_ids[k] = r.gen_range(0..VOCAB as i32);
                ex.masked_lm_weights[k] = 1.0;
            }
            ex
        })
        .collect()
}

fn padded(exs: &[HostExample]) -> Batch {
    let mut b = Batch::with_capacity(exs.len(), SEQ, PREDS);
    for ex in exs {
        b.push(ex);
    }
    b
}

/// The instances packed into as few rows as first fit decreasing needs, plus one padding row.
fn packed(exs: &[HostExample]) -> PackedBatch {
    let limits = PackLimits {
        seq_len: SEQ,
        max_predictions: PREDS + K,
        max_instances: K,
    };
    let fps: Vec<Footprint> = exs.iter().map(|e| Footprint::of(e).unwrap()).collect();
    let rows = pack_first_fit_decreasing(&fps, limits, exs.len())
        .rows
        .len();
    let (batch, left) = pack_examples(exs, limits, rows + 1).unwrap();
    assert!(left.is_empty());
    assert!(
        rows < exs.len() - 2,
        "the test needs rows shared by instances ({} instances in {rows} rows)",
        exs.len()
    );
    batch
}

fn shapes(rows: usize, packed: bool) -> BatchShapes {
    BatchShapes {
        batch_size: rows,
        seq_len: SEQ,
        max_predictions: if packed { PREDS + K } else { PREDS },
        max_instances_per_row: packed.then_some(K),
    }
}

/// `(params..., batch..., rng_key) -> (loss, mlm_loss, nsp_loss, mlm_weight_sum, d loss / d
/// param...)`, dropout off.
fn grad_module(cfg: &BertConfig, shapes: &BatchShapes) -> Module {
    let m = ModuleBuilder::new("bert_grad");
    let b = m.builder("main");
    let specs = param_specs(cfg);
    let params = ParamValues::declare(&b, &specs).unwrap();
    let batch = shapes.declare(&b).unwrap();
    let key = b
        .parameter(Shape::array(ElementType::U64, vec![2]), "rng_key")
        .unwrap();
    let (loss, metrics) =
        pretraining_loss(&b, cfg, Execution::default(), &params, &batch, key, false).unwrap();
    let wrt = specs
        .iter()
        .map(|s| params.get(&s.name))
        .collect::<Result<Vec<Value>, _>>()
        .unwrap();
    let mut outs = vec![
        loss,
        metrics.mlm_loss,
        metrics.nsp_loss,
        metrics.mlm_weight_sum,
    ];
    outs.extend(b.grad(loss, &wrt).unwrap());
    let entry = b.finish(b.tuple(&outs).unwrap()).unwrap();
    m.build(entry).unwrap()
}

fn param_literals(cfg: &BertConfig, params: &ParamSet) -> Vec<Literal> {
    param_specs(cfg)
        .iter()
        .map(|s| {
            let t = params.get(&s.name).unwrap();
            let dims: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
            Literal::from_slice(&t.data, &dims).unwrap()
        })
        .collect()
}

fn execute(exe: &Executable, params: &[Literal], batch: &[Literal]) -> Vec<Vec<f64>> {
    let key = Literal::from_slice(&[0u64, 0], &[2]).unwrap();
    let bufs: Vec<Buffer> = params
        .iter()
        .chain(batch)
        .chain([&key])
        .map(|l| common::upload(l, 0))
        .collect();
    let args: Vec<&Buffer> = bufs.iter().collect();
    let outs = exe.execute(&args).unwrap();
    outs.iter().map(|b| f64s(&common::download(b))).collect()
}

/// Asserts two runs' losses and gradients agree (see the module docs for the tolerances).
#[track_caller]
fn assert_same(cfg: &BertConfig, got: &[Vec<f64>], want: &[Vec<f64>]) {
    for (i, what) in ["loss", "mlm_loss", "nsp_loss", "mlm_weight_sum"]
        .iter()
        .enumerate()
    {
        assert_close(&got[i], &want[i], 1e-6, 1e-5, what);
    }
    let specs = param_specs(cfg);
    let largest = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let scale = want[4..].iter().map(|g| largest(g)).fold(0.0, f64::max);
    for (k, spec) in specs.iter().enumerate() {
        let (g, w) = (&got[4 + k], &want[4 + k]);
        // Softmax ignores what the key bias adds to every score of a query, so that gradient
        // is 0 up to rounding; every other parameter gets one.
        let zero = spec.name.ends_with("attention.self.key.bias");
        assert!(
            zero || largest(w) > 0.0,
            "{}: no gradient reaches it",
            spec.name
        );
        assert_close(
            g,
            w,
            1e-6 * scale,
            1e-5,
            &format!("d loss / d {}", spec.name),
        );
    }
}

#[test]
fn packed_and_padded_batches_of_the_same_instances_agree() {
    let cfg = config();
    let params = param_literals(&cfg, &random_params(&cfg, 71));
    let exs = instances(72);
    let pad = padded(&exs);
    let pack = packed(&exs);

    let want = execute(
        &compile(
            &grad_module(&cfg, &shapes(exs.len(), false)),
            &Default::default(),
        ),
        &params,
        &field_literals(&pad, 1).unwrap(),
    );
    let packed_exe = compile(
        &grad_module(&cfg, &shapes(pack.batch_size, true)),
        &Default::default(),
    );
    let got = execute(
        &packed_exe,
        &params,
        &packed_field_literals(&pack, 1).unwrap(),
    );
    let real_preds: f32 = pad.masked_lm_weights.iter().sum();
    assert_eq!(want[3], vec![f64::from(real_preds)]);
    assert_same(&cfg, &got, &want);

    // Instances of a row that see each other (one instance number per row) change the loss.
    let mut leaky = pack.clone();
    for m in leaky.input_mask.iter_mut() {
        *m = i32::from(*m != 0);
    }
    let leaked = execute(
        &packed_exe,
        &params,
        &packed_field_literals(&leaky, 1).unwrap(),
    );
    differs(leaked[0][0], want[0][0], "attention across instances");
    // So do positions counted from the row's start instead of each instance's.
    let mut shifted = pack.clone();
    for (t, p) in shifted.position_ids.iter_mut().enumerate() {
        *p = (t % SEQ) as i32;
    }
    let moved = execute(
        &packed_exe,
        &params,
        &packed_field_literals(&shifted, 1).unwrap(),
    );
    differs(moved[0][0], want[0][0], "positions that do not restart");
}

/// `got` is far outside the equivalence tolerance of `want`.
#[track_caller]
fn differs(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() > 1e-3 * want.abs(),
        "{what}: loss {got} should differ from the padded batch's {want}"
    );
}

/// The train step (forward, backward, SGD update) on the packed batch moves the parameters as
/// on the padded batch, and reports the same losses.
#[test]
fn the_packed_train_step_updates_like_the_padded_one() {
    let cfg = config();
    let params = param_literals(&cfg, &random_params(&cfg, 73));
    let exs = instances(74);
    let pack = packed(&exs);
    // Plain SGD at learning rate 1, no clipping: the update is the gradient itself.
    let step = || {
        let sgd = Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: WeightDecay::none(),
        };
        StepConfig::new(sgd, Schedule::Constant { lr: 1.0 }).with_clip_norm(None)
    };
    let run = |shapes: BatchShapes, batch: Vec<Literal>| {
        let program = train_program(&cfg, Execution::default(), &shapes, &step()).unwrap();
        let mut trainer = Trainer::new(client(), &program, &params).unwrap();
        let key = Literal::from_slice(&[0u64, 0], &[2]).unwrap();
        let metrics = trainer.step_host(&[batch, vec![key]].concat()).unwrap();
        (metrics, trainer.params().unwrap())
    };
    let (want_m, want_p) = run(
        shapes(exs.len(), false),
        field_literals(&padded(&exs), 1).unwrap(),
    );
    let (got_m, got_p) = run(
        shapes(pack.batch_size, true),
        packed_field_literals(&pack, 1).unwrap(),
    );
    for name in ["mlm_loss", "nsp_loss"] {
        let (g, w) = (got_m.get(name).unwrap(), want_m.get(name).unwrap());
        assert_close(&[f64::from(g)], &[f64::from(w)], 1e-6, 1e-5, name);
    }
    assert_close(
        &[f64::from(got_m.loss)],
        &[f64::from(want_m.loss)],
        1e-6,
        1e-5,
        "loss",
    );
    for ((spec, g), w) in param_specs(&cfg).iter().zip(&got_p).zip(&want_p) {
        let (g, w) = (f64s(g), f64s(w));
        // p - g rounds to the ulp of p (|p| < 4 here): 1e-6 absolute covers it.
        assert_close(&g, &w, 1e-6, 1e-5, &format!("updated {}", spec.name));
    }
}

/// cuDNN's fused attention takes the packed rows' block-diagonal mask as its bias operand:
/// the `[batch, seq, seq]` mask broadcast to `[batch, 1, seq, seq]` (the padded step broadcasts
/// its `[batch, seq]` key mask instead). XLA:CPU cannot run the call; this checks the program
/// built for CUDA.
#[test]
fn packed_rows_reach_cudnn_attention_as_a_full_bias() {
    let step_text = |data: &str| {
        let toml = format!(
            "[model]\npreset = \"tiny\"\n[data]\n{data}\nseq_len = {SEQ}\n\
             max_predictions = {PREDS}\n[train]\nbatch_size = 4\nprecision = \"bf16\"\n\
             [device]\nbackend = \"cuda\"\nattention = \"cudnn\"\n"
        );
        let cfg = PretrainConfig::from_toml_str(&toml, "test").unwrap();
        train_step_module(&cfg, 1)
            .unwrap()
            .program
            .module
            .to_string()
    };
    // Broadcasts to the bias shape along `dims`, and the fused attention calls.
    let count = |text: &str, needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    let bias = format!("[4,1,{SEQ},{SEQ}]");
    let along = |text: &str, dims: &str| {
        text.lines()
            .filter(|l| l.contains(&bias) && l.contains("broadcast(") && l.contains(dims))
            .count()
    };
    let packed = step_text("train = \"shards\"\npack = true");
    let padded = step_text("synthetic = true");
    for text in [&packed, &padded] {
        assert!(count(text, "custom_call_target=\"__cudnn$fmhaScaleBiasSoftmax") >= 4);
    }
    assert!(along(&packed, "dimensions={0,2,3}") >= 1, "{packed}");
    assert_eq!(along(&packed, "dimensions={0,3}"), 0);
    assert!(along(&padded, "dimensions={0,3}") >= 1);
}
