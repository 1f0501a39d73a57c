//! The data cursor across real processes on loopback (issue 13): `tpu-run pretrain
//! --data-only-ids` runs a multi-process run's data path without a model (the CPU plugin cannot
//! span processes) and writes the example ids each process consumed at each step. A run of 3
//! processes is killed (SIGKILL) after a checkpoint, resumed with 2, killed again, resumed with
//! 4, killed again, and finished by one process without a coordinator. The ids consumed up to each resume point, counted over every process of
//! every attempt, hold no example twice in an epoch, though the steps after each checkpoint were
//! consumed by the killed processes and read again; with the pieces the final checkpoint's
//! cursor holds pending (read ahead, not consumed), they are exactly every record of every unit
//! the cursor handed out: nothing lost. The first two epochs are consumed whole.
//!
//! Every child is killed if it runs longer than `CHILD_LIMIT`; no assertion depends on timing.
mod cli_support;
mod pretrain_support;
use cli_support::{free_port, tpu_run};
use pretrain_support::write_patterned_shards;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use tpu_run::ckpt::Store;
use tpu_run::data::units::{index_file, CursorState, IndexedFile, UnitTable};
use tpu_run::data::OnCorrupt;

const CHILD_LIMIT: Duration = Duration::from_secs(180);
const TOKEN_ENV: &str = "TPU_RUN_COORDINATOR_TOKEN";
/// Records of the 5 files: 48 in all, uneven, so units of 5 end short at every file's end.
const RECORDS: [u64; 5] = [7, 13, 4, 10, 14];
const GLOBAL_BATCH: usize = 12;
const STEPS: u64 = 12;
const UNIT_RECORDS: u64 = 5;
const SEED: u64 = 7;

fn write_shards(dir: &Path) -> String {
    write_patterned_shards(dir, &RECORDS)
}

/// One process of an attempt, its stderr lines arriving on a channel.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    log: std::thread::JoinHandle<String>,
}

struct Attempt {
    dir: PathBuf,
    data: String,
    ckpt: PathBuf,
    config: PathBuf,
}

impl Attempt {
    fn ids_file(&self, attempt: &str, id: u32) -> PathBuf {
        self.dir.join(format!("ids-{attempt}-{id}.txt"))
    }

    /// Starts `n` processes of attempt `name`, stopping after `hang_after` when given.
    fn start(&self, name: &str, n: u32, hang_after: Option<u64>) -> Vec<Proc> {
        let port = free_port();
        (0..n)
            .map(|id| {
                let mut cmd = tpu_run();
                cmd.args(["pretrain", "--config"])
                    .arg(&self.config)
                    .args(["--preset", "tiny", "--backend", "cpu"])
                    .args(["--batch-size", &GLOBAL_BATCH.to_string()])
                    .args(["--seq-len", "16", "--max-predictions", "2"])
                    .args(["--steps", &STEPS.to_string()])
                    .args(["--seed", &SEED.to_string()])
                    .args(["--data", &self.data])
                    .arg("--checkpoint-dir")
                    .arg(&self.ckpt)
                    .args(["--checkpoint-interval", "2"])
                    .args(["--coordinator", &format!("127.0.0.1:{port}")])
                    .args(["--num-processes", &n.to_string()])
                    .args(["--process-id", &id.to_string()])
                    .args(["--coordinator-join-timeout", "60"])
                    .arg("--output-dir")
                    .arg(self.dir.join(format!("out-{name}-{id}")))
                    .arg("--data-only-ids")
                    .arg(self.ids_file(name, id))
                    .env(TOKEN_ENV, "data-cursor-test-token")
                    .env("RUST_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                if let Some(s) = hang_after {
                    cmd.args(["--hang-after", &s.to_string()]);
                }
                let mut child = cmd.spawn().expect("starting tpu-run");
                let stderr = child.stderr.take().unwrap();
                let (tx, lines) = channel();
                let log = std::thread::spawn(move || {
                    let mut all = String::new();
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        let _ = tx.send(line.clone());
                        all.push_str(&line);
                        all.push('\n');
                    }
                    all
                });
                Proc { child, lines, log }
            })
            .collect()
    }
}

/// Waits until every process says it hangs after `step`, then kills them all (SIGKILL); their
/// logs.
fn kill_when_hanging(procs: Vec<Proc>, step: u64) -> Vec<String> {
    let deadline = Instant::now() + CHILD_LIMIT;
    let want = format!("hanging after step {step}");
    for p in &procs {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match p.lines.recv_timeout(left) {
                Ok(line) if line.contains(&want) => break,
                Ok(_) => {}
                Err(_) => {
                    for q in &procs {
                        let _ = kill_now(q);
                    }
                    panic!("a process did not reach step {step}");
                }
            }
        }
    }
    procs
        .into_iter()
        .map(|mut p| {
            p.child.kill().unwrap();
            p.child.wait().unwrap();
            drop(p.lines);
            p.log.join().unwrap()
        })
        .collect()
}

/// Kills a process (SIGKILL), ignoring one that has already exited.
fn kill_now(p: &Proc) -> std::io::Result<()> {
    Command::new("kill")
        .args(["-9", &p.child.id().to_string()])
        .status()
        .map(|_| ())
}

/// Waits for every process to end (killing them past `CHILD_LIMIT`); their logs, all having
/// succeeded.
fn finish(procs: Vec<Proc>) -> Vec<String> {
    let deadline = Instant::now() + CHILD_LIMIT;
    procs
        .into_iter()
        .map(|mut p| {
            while p.child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = p.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let status = p.child.wait().unwrap();
            drop(p.lines);
            let log = p.log.join().unwrap();
            assert!(status.success(), "{log}");
            log
        })
        .collect()
}

/// The ids of steps `from..=to` in a process's ids file, each step's line checked to hold
/// `rows` ids; also every step number the file holds.
fn ids(path: &Path, from: u64, to: u64, rows: usize) -> (Vec<(u64, u32, u64)>, Vec<u64>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut steps = Vec::new();
    for line in text.lines() {
        let mut parts = line.split(' ');
        let step: u64 = parts.next().unwrap().parse().unwrap();
        steps.push(step);
        let row: Vec<(u64, u32, u64)> = parts
            .map(|id| {
                let v: Vec<&str> = id.split(':').collect();
                (
                    v[0].parse().unwrap(),
                    v[1].parse().unwrap(),
                    v[2].parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(row.len(), rows, "{}: step {step}", path.display());
        if (from..=to).contains(&step) {
            out.extend(row);
        }
    }
    (out, steps)
}

fn resumed_at(logs: &[String], step: u64) {
    let want = format!("every process resumes from checkpoint step-{step:08}");
    for log in logs {
        assert!(log.contains(&want), "{log}");
    }
}

#[test]
fn killed_runs_resumed_with_3_then_2_then_4_then_1_processes_lose_and_repeat_no_example() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("units.toml");
    // Units of 5 records: the processes' batches (4, 6, 3 rows) end inside units.
    let toml = format!("[data]\nunit_records = {UNIT_RECORDS}\nprefetch_batches = 2\n");
    std::fs::write(&config, toml).unwrap();
    let a = Attempt {
        dir: tmp.path().to_path_buf(),
        data: write_shards(&tmp.path().join("shards")),
        ckpt: tmp.path().join("ckpt"),
        config,
    };

    // 3 processes: checkpoints at steps 2 and 4, step 5 consumed, then killed.
    let logs = kill_when_hanging(a.start("a", 3, Some(5)), 5);
    for log in &logs {
        assert!(log.contains("every process starts from scratch"), "{log}");
    }
    // 2 processes resume from step 4: checkpoints at 6 and 8, step 9 consumed, then killed.
    let procs = a.start("b", 2, Some(9));
    let logs = kill_when_hanging(procs, 9);
    resumed_at(&logs, 4);
    // 4 processes resume from step 8: checkpoint at 10, step 11 consumed, then killed.
    let logs = kill_when_hanging(a.start("c", 4, Some(11)), 11);
    resumed_at(&logs, 8);
    // One process, without a coordinator, continues the cursor to the end (step 12).
    let logs = finish(a.start("d", 1, None));
    assert!(
        logs[0].contains("one process continues the data cursor of checkpoint")
            && logs[0].contains("step-00000010"),
        "{}",
        logs[0]
    );

    let mut kept = Vec::new();
    let attempts = [
        ("a", 3, 4, 1, 4),
        ("b", 2, 6, 5, 8),
        ("c", 4, 3, 9, 10),
        ("d", 1, 12, 11, 12),
    ];
    for (attempt, n, rows, from, to) in attempts {
        for id in 0..n {
            let (got, steps) = ids(&a.ids_file(attempt, id), from, to, rows);
            kept.extend(got);
            // The killed attempts consumed a step after their last checkpoint, which was
            // read again by the next attempt (it is not counted from them).
            let last = if attempt == "d" { to } else { to + 1 };
            assert_eq!(
                steps,
                (from..=last).collect::<Vec<_>>(),
                "attempt {attempt}"
            );
        }
    }
    assert_eq!(kept.len(), STEPS as usize * GLOBAL_BATCH);
    let mut consumed: BTreeSet<(u64, u32, u64)> = BTreeSet::new();
    let twice: Vec<_> = kept.iter().filter(|id| !consumed.insert(**id)).collect();
    assert!(twice.is_empty(), "examples consumed twice: {twice:?}");

    // The processes read ahead, so at the last step some units handed out are not consumed
    // yet while others of a later position are: the final checkpoint's cursor lists them as
    // pending. Consumed and pending together are exactly every unit handed out: all records of
    // each epoch before the cursor's, and those of its epoch's units before its position.
    let last = Store::new(&a.ckpt).latest().unwrap().unwrap();
    assert!(
        last.path().ends_with("step-00000012"),
        "{}",
        last.path().display()
    );
    let state = last.load(None).unwrap();
    let cursor: CursorState =
        serde_json::from_value(state.data_position["cursor"].clone()).unwrap();
    eprintln!(
        "final cursor: epoch {} position {}, {} pending piece(s)",
        cursor.epoch,
        cursor.next,
        cursor.pending.len()
    );
    let files: Vec<IndexedFile> = (0..RECORDS.len())
        .map(|s| {
            let path = a.dir.join(format!("shards/part-{s}.tfrecord"));
            index_file(&path, UNIT_RECORDS, OnCorrupt::Stop).unwrap()
        })
        .collect();
    let table = UnitTable::new(&files, UNIT_RECORDS).unwrap();
    let unit_at = |epoch: u64, pos: u64| {
        let u = table.order(SEED, true, epoch)[pos as usize];
        *table.unit(u).unwrap()
    };
    let mut pending = BTreeSet::new();
    for p in &cursor.pending {
        let unit = unit_at(p.epoch, p.pos);
        for record in p.start..p.end {
            let id = (p.epoch, unit.file, record);
            assert!(!consumed.contains(&id), "{id:?} is consumed and pending");
            assert!(pending.insert(id), "{id:?} is pending twice");
        }
    }
    let mut handed_out = BTreeSet::new();
    for epoch in 0..cursor.epoch {
        for (file, &n) in RECORDS.iter().enumerate() {
            handed_out.extend((0..n).map(|r| (epoch, file as u32, r)));
        }
    }
    for pos in 0..cursor.next {
        let unit = unit_at(cursor.epoch, pos);
        handed_out
            .extend((unit.first..unit.first + unit.records).map(|r| (cursor.epoch, unit.file, r)));
    }
    let accounted: BTreeSet<_> = consumed.union(&pending).copied().collect();
    let lost: Vec<_> = handed_out.difference(&accounted).collect();
    assert!(
        lost.is_empty(),
        "records handed out, never consumed and not pending: {lost:?}"
    );
    let extra: Vec<_> = accounted.difference(&handed_out).collect();
    assert!(
        extra.is_empty(),
        "records consumed or pending beyond the cursor: {extra:?}"
    );
    // 144 consumed of 3 epochs of 48: the first two epochs whole.
    for epoch in 0..2u64 {
        let n = consumed.iter().filter(|id| id.0 == epoch).count();
        assert_eq!(n, 48, "epoch {epoch}");
    }
}
