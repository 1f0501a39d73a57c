//! The pretraining loop's overlapped input feed (src/pretrain/feed.rs, train_loop.rs): steps
//! launched before the previous step's results are read, with the next batch uploaded while a
//! step runs, compute exactly what the step-by-step loop (`RunOptions::lockstep`) computes:
//! the same losses and metrics bit for bit on the CPU plugin, the same checkpoints (tensors and
//! data positions) at the same steps, the same evaluations. The run's summary gives the
//! steady-state throughput next to the whole run's, and the time the loop waited for its feed.
mod cli_support;
mod pretrain_support;
use cli_support::{run_ok, stdout, tpu_run};
use pretrain_support::{step_bits, tiny_run, MaskedShards, Tokens};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tpu_run::ckpt::Checkpoint;
use tpu_run::pretrain::{run, PretrainConfig, RunOptions, RunSummary};

const SEQ: usize = 16;
const PREDS: usize = 3;
const VOCAB: usize = 96;
const STEPS: u64 = 8;

/// Random pretraining examples in `shards` TFRecord files; the pattern matching them.
fn write_shards(dir: &Path, shards: usize, per_shard: usize) -> String {
    MaskedShards {
        seed: 5,
        shards,
        per_shard,
        tokens: Tokens::Uniform {
            from: 10,
            vocab: VOCAB as i64,
        },
        seq: SEQ,
        preds: PREDS,
    }
    .write(dir)
}

/// A tiny BERT with dropout, on `devices` CPU devices, evaluating every 2 steps and
/// checkpointing every 3 (so hooks fall both on pipelined steps and next to each other).
fn config(data: &str, out: &Path, devices: u32) -> PretrainConfig {
    let run = format!(
        r#"
        [data]
        eval = "{data}"
        [train]
        steps = {STEPS}
        seed = 11
        [eval]
        interval = 2
        batches = 1
        [checkpoint]
        interval = 3
        keep_last = 5
        [device]
        num_devices = {devices}
        "#
    );
    tiny_run(VOCAB, SEQ, PREDS, data, out.display(), &run)
}

fn options(lockstep: bool) -> RunOptions {
    RunOptions {
        lockstep,
        ..Default::default()
    }
}

/// A checkpoint's step name, tensors (name, bytes), data position and examples seen.
type Saved = (String, Vec<(String, Vec<u8>)>, Value, u64);

/// Every checkpoint of a run's output directory.
fn checkpoints(out: &Path) -> Vec<Saved> {
    let root = out.join("checkpoints");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|d| {
            let state = Checkpoint::open(d).unwrap().load(None).unwrap();
            let tensors = state
                .params
                .iter()
                .chain(state.opt_state.iter())
                .map(|(n, l)| (n.clone(), l.bytes().to_vec()))
                .collect();
            let seen = state.extra["examples_seen"].as_u64().unwrap();
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            (name, tensors, state.data_position, seen)
        })
        .collect()
}

/// The records of metrics.jsonl without their timings, which differ between any two runs.
fn records(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let obj = v.as_object_mut().unwrap();
            for k in [
                "seq_per_s",
                "real_tokens_per_s",
                "elapsed_s",
                "seconds",
                "wall_time_s",
                "compile_s",
                "time_to_first_step_s",
                "startup",
                "checkpoint",
            ] {
                obj.remove(k);
            }
            obj.retain(|k, _| !k.starts_with("steady_") && !k.starts_with("host_wait"));
            v
        })
        .collect()
}

fn pipelined_equals_lockstep(devices: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_shards(&tmp.path().join("data"), 2, 20);
    let (a, b) = (tmp.path().join("pipelined"), tmp.path().join("lockstep"));
    let piped = run(&config(&data, &a, devices), &options(false)).unwrap();
    let step = run(&config(&data, &b, devices), &options(true)).unwrap();

    assert_eq!(piped.history.len(), STEPS as usize);
    assert!(piped.history.iter().all(|r| r.loss.is_finite()));
    assert_eq!(
        step_bits(&piped),
        step_bits(&step),
        "losses and metrics differ"
    );
    let evals = |s: &RunSummary| -> Vec<(u64, u64, u64)> {
        let e = s.evals.iter();
        e.map(|(n, r)| (*n, r.mlm_loss.to_bits(), r.examples))
            .collect()
    };
    assert_eq!(evals(&piped), evals(&step));
    assert_eq!(
        piped.evals.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![2, 4, 6, 8]
    );

    // Checkpoints at 3, 6 and the last step, each with the state and the data position after
    // its own step although the pipelined loop had fed the next batch already.
    let (ca, cb) = (checkpoints(&a), checkpoints(&b));
    let names: Vec<&str> = ca.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        ["step-00000003", "step-00000006", "step-00000008"],
        "checkpoint steps"
    );
    assert_eq!(ca.len(), cb.len());
    for (x, y) in ca.iter().zip(&cb) {
        assert_eq!(x.0, y.0);
        assert!(x.1 == y.1, "{}: the tensors differ", x.0);
        assert_eq!(x.2, y.2, "{}: the data positions differ", x.0);
        assert_eq!(x.3, y.3, "{}: examples_seen differs", x.0);
    }
    assert_eq!(ca[0].3, 3 * 4, "examples seen after step 3");
    assert!(ca[0].2.get("reader").is_some(), "{}", ca[0].2);
    assert_ne!(ca[0].2, ca[1].2, "the data position moves with the steps");

    // The same records in the same order (train, eval, summary), timings aside.
    assert_eq!(records(&a), records(&b));
}

#[test]
fn the_pipelined_loop_computes_what_the_step_by_step_loop_does() {
    pipelined_equals_lockstep(1);
}

#[test]
fn so_it_does_on_two_data_parallel_devices() {
    pipelined_equals_lockstep(2);
}

#[test]
fn a_resumed_pipelined_run_continues_the_stopped_one_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_shards(&tmp.path().join("data"), 2, 20);
    let whole = run(
        &config(&data, &tmp.path().join("whole"), 1),
        &options(false),
    )
    .unwrap();
    let split = tmp.path().join("split");
    let stop = RunOptions {
        stop_after: Some(4),
        ..Default::default()
    };
    let first = run(&config(&data, &split, 1), &stop).unwrap();
    assert_eq!(first.end_step, 4);
    let second = run(&config(&data, &split, 1), &options(false)).unwrap();
    assert_eq!(second.start_step, 4);
    let mut joined = step_bits(&first);
    joined.extend(step_bits(&second));
    assert_eq!(joined, step_bits(&whole));
}

#[test]
fn the_summary_gives_the_steady_state_next_to_the_whole_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_shards(&tmp.path().join("data"), 2, 20);
    let out = tmp.path().join("run");
    let s = run(&config(&data, &out, 1), &options(false)).unwrap();
    let steady = s.steady.expect("a steady state after 8 steps");
    // 7 intervals, 2 of warm-up; of the other 5 (steps 4..8) those after an evaluation or a
    // checkpoint (steps 4, 5, 7) are left out: steps 6 and 8 remain.
    assert_eq!(steady.steps, 2, "{steady:?}");
    assert!(steady.seq_per_s > 0.0 && s.seq_per_s > 0.0);
    assert!((steady.seq_per_s * steady.median_step_s - 4.0).abs() < 1e-6);
    assert!(s.host_wait.fraction >= 0.0 && s.host_wait.fraction < 1.0);

    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() / want - 1.0).abs() < 1e-12;
    assert_eq!(last["kind"], "summary");
    assert!(close(&last["steady_seq_per_s"], steady.seq_per_s), "{last}");
    assert_eq!(last["steady_steps"], 2);
    assert!(close(&last["seq_per_s"], s.seq_per_s), "{last}");
    assert!(last["host_wait_s"].as_f64().is_some());
    assert!(last["host_wait_fraction"].as_f64().is_some());
}

#[test]
fn the_cli_prints_both_figures_and_the_host_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_ok(
        tpu_run()
            .args(["pretrain", "--synthetic-data", "--preset", "tiny"])
            .args(["--backend", "cpu", "--batch-size", "4", "--seq-len", "16"])
            .args(["--max-predictions", "2", "--steps", "6"])
            .arg("--output-dir")
            .arg(tmp.path()),
    );
    let stdout = stdout(&out);
    let line = |prefix: &str| -> String {
        let l = stdout.lines().find(|l| l.starts_with(prefix));
        l.unwrap_or_else(|| panic!("no '{prefix}' line:\n{stdout}"))
            .to_string()
    };
    let t = line("throughput:");
    assert!(
        t.contains("seq/s steady state (median step") && t.contains("seq/s over the whole run"),
        "{t}"
    );
    let w = line("host wait:");
    assert!(
        w.contains("for the input feed") && w.contains("% of the loop"),
        "{w}"
    );
}
