//! An XSpace as Chrome trace-event JSON (the "JSON Object Format" that Perfetto and
//! chrome://tracing open): one process per plane, one thread per line, a complete ("X") event
//! per timeline event with `ts`/`dur` in microseconds. Times count from the earliest event of the
//! space, so microsecond values keep their sub-nanosecond digits in an f64.
use super::scopes::{event_scope, OpScopes};
use super::xplane::{x_stat, XPlane, XSpace, XStat};
use serde_json::{json, Map, Value};

/// The earliest event start of the space, in picoseconds since the UNIX epoch.
fn origin_ps(space: &XSpace) -> i128 {
    space
        .planes
        .iter()
        .flat_map(|p| p.lines.iter())
        .flat_map(|l| l.events.iter().filter_map(move |e| e.start_ps(l)))
        .min()
        .unwrap_or(0)
}

fn stat_value(plane: &XPlane, stat: &XStat) -> Value {
    match &stat.value {
        Some(x_stat::Value::DoubleValue(v)) => json!(v),
        Some(x_stat::Value::Uint64Value(v)) => json!(v),
        Some(x_stat::Value::Int64Value(v)) => json!(v),
        Some(x_stat::Value::BytesValue(b)) => json!(format!("<{} bytes>", b.len())),
        Some(x_stat::Value::StrValue(_)) | Some(x_stat::Value::RefValue(_)) => {
            json!(plane.stat_str(stat).unwrap_or(""))
        }
        None => Value::Null,
    }
}

/// The trace of `space`. Device events mapped through `scopes` carry their `scope` in `args`.
pub fn chrome_trace(space: &XSpace, scopes: Option<&OpScopes>) -> Value {
    let origin = origin_ps(space);
    let mut events = Vec::new();
    for (pid, plane) in space.planes.iter().enumerate() {
        events.push(json!({
            "ph": "M", "name": "process_name", "pid": pid,
            "args": {"name": plane.name},
        }));
        events.push(json!({
            "ph": "M", "name": "process_sort_index", "pid": pid,
            "args": {"sort_index": pid},
        }));
        for (tid, line) in plane.lines.iter().enumerate() {
            let line_name = if line.display_name.is_empty() {
                &line.name
            } else {
                &line.display_name
            };
            events.push(json!({
                "ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                "args": {"name": line_name},
            }));
            for event in &line.events {
                let Some(start) = event.start_ps(line) else {
                    continue;
                };
                let meta = plane.event_metadata.get(&event.metadata_id);
                let name = match meta {
                    Some(m) if !m.display_name.is_empty() => m.display_name.as_str(),
                    Some(m) => m.name.as_str(),
                    None => "(unnamed)",
                };
                let mut args = Map::new();
                for stat in &event.stats {
                    let key = plane.stat_name(stat);
                    if !key.is_empty() {
                        args.insert(key.to_string(), stat_value(plane, stat));
                    }
                }
                if plane.is_device() {
                    if let Some((_, scope)) = event_scope(plane, event, scopes) {
                        args.insert("scope".into(), json!(scope));
                    }
                }
                events.push(json!({
                    "ph": "X", "name": name, "pid": pid, "tid": tid,
                    "ts": (start - origin) as f64 / 1e6,
                    "dur": event.duration_ps.max(0) as f64 / 1e6,
                    "args": args,
                }));
            }
        }
    }
    json!({"displayTimeUnit": "ns", "traceEvents": events})
}
