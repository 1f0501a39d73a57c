//! Gradients of the pretraining loss (hlo's reverse-mode autodiff through our BERT graph, run on
//! the CPU plugin in f32) against central finite differences of the independent f64 reference.
mod common;
mod model_support;

use common::check::assert_close;
use common::f64s;
use hlo::{ElementType, Module, ModuleBuilder, Shape, Value};
use model_support::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tpu_run::model::params::param_specs;
use tpu_run::model::{pretraining_loss, BertConfig, Execution, HiddenAct, ModelError, ParamValues};

/// `(params..., batch..., rng_key) -> (loss, d loss / d param...)`.
fn grad_module(cfg: &BertConfig, train: bool) -> Result<Module, ModelError> {
    let m = ModuleBuilder::new("bert_grad");
    let b = m.builder("main");
    let specs = param_specs(cfg);
    let params = ParamValues::declare(&b, &specs)?;
    let batch = shapes().declare(&b)?;
    let key = b.parameter(Shape::array(ElementType::U64, vec![2]), "rng_key")?;
    let (loss, _) = pretraining_loss(&b, cfg, Execution::default(), &params, &batch, key, train)?;
    let wrt = specs
        .iter()
        .map(|s| params.get(&s.name))
        .collect::<Result<Vec<Value>, _>>()?;
    let mut outs = vec![loss];
    outs.extend(b.grad(loss, &wrt)?);
    let entry = b.finish(b.tuple(&outs)?)?;
    Ok(m.build(entry)?)
}

fn reference_loss(cfg: &BertConfig, params: &F64Params, batch: &HostBatch) -> f64 {
    scores(&reference(cfg, params, batch), batch).loss
}

#[test]
fn gradients_match_finite_differences_of_the_reference() {
    let cfg = small_config(HiddenAct::GeluErf);
    let params = random_params(&cfg, 61);
    let exact = F64Params::from_set(&params);
    let batch = random_batch(62);
    let want = reference(&cfg, &exact, &batch);
    let batch = with_labels(batch, &want, 63);
    let outs: Vec<Vec<f64>> = common::run(
        &grad_module(&cfg, false).unwrap(),
        &inputs(&cfg, &params, &batch, [0, 0]),
    )
    .iter()
    .map(f64s)
    .collect();
    let loss = reference_loss(&cfg, &exact, &batch);
    assert_close(&outs[0], &[loss], 1e-5, 1e-5, "loss");

    let mut rng = StdRng::seed_from_u64(64);
    let h = 1e-3;
    let mut checked = 0;
    for (k, spec) in param_specs(&cfg).iter().enumerate() {
        let g = &outs[1 + k];
        assert_eq!(g.len(), spec.num_elements(), "{}", spec.name);
        let scale = g.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        // The largest entry and two random ones (position rows past the sequence get none).
        let largest = (0..g.len())
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        let limit = if spec.name.contains("position_embeddings") {
            SEQ * spec.dims[1]
        } else {
            g.len()
        };
        let picks = [largest, rng.gen_range(0..limit), rng.gen_range(0..limit)];
        let (mut got, mut want) = (vec![], vec![]);
        for &i in &picks {
            let mut p = exact.clone();
            let at = |p: &mut F64Params, v: f64| p.0.get_mut(&spec.name).unwrap().1[i] = v;
            let x = exact.0[&spec.name].1[i];
            at(&mut p, x + h);
            let up = reference_loss(&cfg, &p, &batch);
            at(&mut p, x - h);
            let down = reference_loss(&cfg, &p, &batch);
            got.push(g[i]);
            want.push((up - down) / (2.0 * h));
        }
        // Softmax ignores a shift shared by all keys of a query, so the key bias gets none.
        if spec.name.ends_with("attention.self.key.bias") {
            assert!(scale < 1e-6, "{}: {scale}", spec.name);
        } else {
            assert!(scale > 1e-2, "{} gets no gradient ({scale})", spec.name);
        }
        // Observed: |autodiff - fd| <= 1.5e-6 for gradients up to 1.2.
        assert_close(&got, &want, 2e-5 * scale.max(0.05), 1e-4, &spec.name);
        checked += picks.len();
    }
    assert_eq!(checked, 3 * param_specs(&cfg).len());
}

#[test]
fn training_mode_gradients_are_finite_and_follow_dropout() {
    let cfg = small_config(HiddenAct::GeluTanh);
    let params = random_params(&cfg, 71);
    let batch = random_batch(72);
    let batch = with_labels(
        batch.clone(),
        &reference(&cfg, &F64Params::from_set(&params), &batch),
        73,
    );
    let module = grad_module(&cfg, true).unwrap();
    let exe = common::compile(&module, &Default::default());
    let go = |key: [u64; 2]| -> Vec<Vec<f64>> {
        let lits = inputs(&cfg, &params, &batch, key);
        let bufs: Vec<tpu::Buffer> = lits.iter().map(|l| common::upload(l, 0)).collect();
        let args: Vec<&tpu::Buffer> = bufs.iter().collect();
        let outs = exe.execute(&args).unwrap();
        outs.iter().map(|b| f64s(&common::download(b))).collect()
    };
    let a = go([3, 4]);
    let b = go([5, 6]);
    for (k, g) in a.iter().enumerate() {
        assert!(g.iter().all(|x| x.is_finite()), "output {k} is not finite");
    }
    assert_ne!(a[0], b[0], "the loss depends on the dropout key");
    assert_eq!(a, go([3, 4]), "the same key gives the same gradients");
}
