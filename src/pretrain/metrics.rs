//! Where a run's numbers go: `metrics.jsonl` (one JSON object per line: train records every
//! `log_every` steps, eval records, the final summary) and, optionally, TensorBoard event files.
//!
//! TensorBoard: no crate fits. `tensorboard-rs` (0.5.9) pulls in `image` 0.23 and `protobuf` 2.x
//! (unmaintained, with a published advisory) to write two message types. An event file is just
//! TFRecord framing (which the data pipeline has: [`crate::data::tfrecord::frame`]) around
//! `tensorflow.Event` protos, so the three messages needed are declared below with prost's
//! derive, with TensorFlow's field numbers (tensorflow/core/util/event.proto, summary.proto).
use anyhow::{Context, Result};
use serde_json::{Map, Value};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const METRICS_FILE: &str = "metrics.jsonl";
/// Where records that a resumed run supersedes are moved (never deleted).
pub const SUPERSEDED_FILE: &str = "metrics.superseded.jsonl";

/// A run that starts at `start_step` computes every step after it again: the records of
/// `<dir>/metrics.jsonl` with a larger step (written before an interruption, after the checkpoint
/// it resumes from) are moved to `metrics.superseded.jsonl`, so the log holds each step once.
/// Lines that are not JSON objects with a step stay where they are. Returns how many moved.
pub fn supersede_after(dir: &Path, start_step: u64) -> Result<usize> {
    let path = dir.join(METRICS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let step_of = |line: &str| -> Option<u64> {
        serde_json::from_str::<Value>(line)
            .ok()?
            .get("step")?
            .as_u64()
    };
    let (mut keep, mut moved) = (String::new(), String::new());
    for line in text.lines() {
        let out = match step_of(line) {
            Some(step) if step > start_step => &mut moved,
            _ => &mut keep,
        };
        out.push_str(line);
        out.push('\n');
    }
    if moved.is_empty() {
        return Ok(0);
    }
    let superseded = dir.join(SUPERSEDED_FILE);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&superseded)
        .and_then(|mut f| f.write_all(moved.as_bytes()).and_then(|_| f.sync_all()))
        .with_context(|| format!("writing {}", superseded.display()))?;
    // Replace the log in one rename, so an interruption leaves the old or the new file whole.
    let tmp = dir.join(format!(".{METRICS_FILE}.tmp"));
    std::fs::write(&tmp, keep).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(moved.lines().count())
}

/// Appends JSON lines to `metrics.jsonl` and scalars to a TensorBoard event file.
pub struct MetricsSink {
    jsonl: File,
    jsonl_path: PathBuf,
    tensorboard: Option<EventWriter>,
}

impl MetricsSink {
    /// Opens `<dir>/metrics.jsonl` for appending (a resumed run continues the file) and, when
    /// `tensorboard`, a new event file in `<dir>/tensorboard`.
    pub fn open(dir: &Path, tensorboard: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let jsonl_path = dir.join(METRICS_FILE);
        let jsonl = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&jsonl_path)
            .with_context(|| format!("opening {}", jsonl_path.display()))?;
        let tensorboard = if tensorboard {
            Some(EventWriter::create(&dir.join("tensorboard"))?)
        } else {
            None
        };
        Ok(Self {
            jsonl,
            jsonl_path,
            tensorboard,
        })
    }

    pub fn jsonl_path(&self) -> &Path {
        &self.jsonl_path
    }

    pub fn event_file(&self) -> Option<&Path> {
        self.tensorboard.as_ref().map(|t| t.path.as_path())
    }

    /// Writes `{"kind": kind, "step": step, ...fields}` as one line, and each numeric field as a
    /// TensorBoard scalar tagged `kind/name`.
    pub fn record(&mut self, kind: &str, step: u64, fields: &[(&str, Value)]) -> Result<()> {
        let mut obj = Map::new();
        obj.insert("kind".into(), Value::from(kind));
        obj.insert("step".into(), Value::from(step));
        for (k, v) in fields {
            obj.insert((*k).to_string(), v.clone());
        }
        let mut line = serde_json::to_string(&Value::Object(obj))?;
        line.push('\n');
        self.jsonl
            .write_all(line.as_bytes())
            .and_then(|()| self.jsonl.flush())
            .with_context(|| format!("writing {}", self.jsonl_path.display()))?;
        if let Some(tb) = &mut self.tensorboard {
            let scalars: Vec<(String, f32)> = fields
                .iter()
                .filter_map(|(k, v)| v.as_f64().map(|x| (format!("{kind}/{k}"), x as f32)))
                .collect();
            if !scalars.is_empty() {
                tb.scalars(step, &scalars)?;
            }
        }
        Ok(())
    }
}

/// `tensorflow.Event` (the fields used: wall_time 1, step 2, file_version 3, summary 5).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a `simple_value` (tag 1, simple_value 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// One `events.out.tfevents.<seconds>.<host>` file.
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl EventWriter {
    /// A new event file in `dir`, starting with the `brain.Event:2` version record.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .unwrap_or_else(|| "localhost".into());
        let t = now();
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}",
            t as u64,
            std::process::id()
        ));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = Self { file, path };
        w.write(&Event {
            wall_time: t,
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        })?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn scalars(&mut self, step: u64, values: &[(String, f32)]) -> Result<()> {
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            file_version: None,
            summary: Some(Summary {
                value: values
                    .iter()
                    .map(|(tag, v)| SummaryValue {
                        tag: tag.clone(),
                        simple_value: Some(*v),
                    })
                    .collect(),
            }),
        })
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        let bytes = prost::Message::encode_to_vec(event);
        self.file
            .write_all(&crate::data::tfrecord::frame(&bytes))
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tfrecord::RecordReader;
    use prost::Message;

    #[test]
    fn a_resume_moves_the_records_after_its_step_aside_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [
            r#"{"kind":"train","step":2,"loss":3.0}"#,
            r#"{"kind":"eval","step":4,"mlm_accuracy":0.1}"#,
            r#"{"kind":"train","step":4,"loss":2.5}"#,
            "not json",
            r#"{"kind":"train","step":5,"loss":2.4}"#,
            r#"{"kind":"stopped","step":6,"signal":"SIGTERM"}"#,
        ];
        let path = dir.path().join(METRICS_FILE);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert_eq!(supersede_after(dir.path(), 4).unwrap(), 2);
        let kept = std::fs::read_to_string(&path).unwrap();
        assert_eq!(kept, lines[..4].join("\n") + "\n");
        let moved = std::fs::read_to_string(dir.path().join(SUPERSEDED_FILE)).unwrap();
        assert_eq!(moved, lines[4..].join("\n") + "\n");
        // Nothing after the step: nothing moves; no file: nothing to do.
        assert_eq!(supersede_after(dir.path(), 4).unwrap(), 0);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(supersede_after(empty.path(), 0).unwrap(), 0);
    }

    #[test]
    fn json_lines_and_tensorboard_events_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = MetricsSink::open(dir.path(), true).unwrap();
        sink.record("train", 10, &[("loss", Value::from(2.5f32))])
            .unwrap();
        sink.record(
            "eval",
            10,
            &[("mlm_accuracy", Value::from(0.25)), ("note", "x".into())],
        )
        .unwrap();
        let lines = std::fs::read_to_string(sink.jsonl_path()).unwrap();
        let v: Vec<Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v[0]["kind"], "train");
        assert_eq!(v[0]["loss"], 2.5);
        assert_eq!(v[1]["step"], 10);

        // TFRecord framing with valid CRCs, the version record, then one event per record call.
        let path = sink.event_file().unwrap().to_path_buf();
        let mut r = RecordReader::open_at(&path, 0, true).unwrap();
        let mut events = vec![];
        while let Some(rec) = r.next_record().unwrap() {
            events.push(Event::decode(rec.data.as_slice()).unwrap());
        }
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        let tags = |e: &Event| -> Vec<(String, Option<f32>)> {
            let s = e.summary.as_ref().unwrap();
            s.value
                .iter()
                .map(|v| (v.tag.clone(), v.simple_value))
                .collect()
        };
        assert_eq!(events[1].step, 10);
        assert_eq!(
            tags(&events[1]),
            vec![("train/loss".to_string(), Some(2.5))]
        );
        assert_eq!(
            tags(&events[2]),
            vec![("eval/mlm_accuracy".to_string(), Some(0.25))]
        );
    }

    #[test]
    fn event_bytes_match_tensorflow_field_numbers() {
        // Event{step: 3, summary: {value: [{tag: "a", simple_value: 1.0}]}} as protoc encodes
        // it: field 2 varint 3; field 5 (len 10) holding field 1 (len 8) = tag "a" (field 1),
        // simple_value 1.0f (field 2, fixed32 0x3f800000).
        let e = Event {
            wall_time: 0.0,
            step: 3,
            file_version: None,
            summary: Some(Summary {
                value: vec![SummaryValue {
                    tag: "a".into(),
                    simple_value: Some(1.0),
                }],
            }),
        };
        let want = [
            0x10, 0x03, 0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, b'a', 0x15, 0x00, 0x00, 0x80, 0x3f,
        ];
        assert_eq!(e.encode_to_vec(), want);
    }
}
