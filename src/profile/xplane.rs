//! `tensorflow.profiler.XSpace`, the trace format of the tsl profilers inside PJRT plugins,
//! declared with prost's derive and the field numbers of tsl/profiler/protobuf/xplane.proto
//! (openxla/xla, xla/tsl/profiler/protobuf/xplane.proto). All seven messages are declared in
//! full, so a decoded space re-encodes to the same fields.
use std::collections::HashMap;

/// Parallel planes from one or more profiling sources (one host's trace).
#[derive(Clone, PartialEq, prost::Message)]
pub struct XSpace {
    #[prost(message, repeated, tag = "1")]
    pub planes: Vec<XPlane>,
    #[prost(string, repeated, tag = "2")]
    pub errors: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub warnings: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub hostnames: Vec<String>,
}

/// One device or the host: parallel timelines and the metadata their events refer to.
#[derive(Clone, PartialEq, prost::Message)]
pub struct XPlane {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "3")]
    pub lines: Vec<XLine>,
    #[prost(map = "int64, message", tag = "4")]
    pub event_metadata: HashMap<i64, XEventMetadata>,
    #[prost(map = "int64, message", tag = "5")]
    pub stat_metadata: HashMap<i64, XStatMetadata>,
    #[prost(message, repeated, tag = "6")]
    pub stats: Vec<XStat>,
}

/// A timeline (a thread, a GPU stream, a TPU op line).
#[derive(Clone, PartialEq, prost::Message)]
pub struct XLine {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "10")]
    pub display_id: i64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "11")]
    pub display_name: String,
    /// Start of the line in nanoseconds since the UNIX epoch; event offsets count from here.
    #[prost(int64, tag = "3")]
    pub timestamp_ns: i64,
    #[prost(int64, tag = "9")]
    pub duration_ps: i64,
    #[prost(message, repeated, tag = "4")]
    pub events: Vec<XEvent>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct XEvent {
    #[prost(int64, tag = "1")]
    pub metadata_id: i64,
    #[prost(oneof = "x_event::Data", tags = "2, 5")]
    pub data: Option<x_event::Data>,
    #[prost(int64, tag = "3")]
    pub duration_ps: i64,
    #[prost(message, repeated, tag = "4")]
    pub stats: Vec<XStat>,
}

pub mod x_event {
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Data {
        /// Start in picoseconds after the line's `timestamp_ns`.
        #[prost(int64, tag = "2")]
        OffsetPs(i64),
        /// An aggregated event: how often it happened (no start time).
        #[prost(int64, tag = "5")]
        NumOccurrences(i64),
    }
}

/// A named value on an event, event metadata or plane.
#[derive(Clone, PartialEq, prost::Message)]
pub struct XStat {
    #[prost(int64, tag = "1")]
    pub metadata_id: i64,
    #[prost(oneof = "x_stat::Value", tags = "2, 3, 4, 5, 6, 7")]
    pub value: Option<x_stat::Value>,
}

pub mod x_stat {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(double, tag = "2")]
        DoubleValue(f64),
        #[prost(uint64, tag = "3")]
        Uint64Value(u64),
        #[prost(int64, tag = "4")]
        Int64Value(i64),
        #[prost(string, tag = "5")]
        StrValue(String),
        #[prost(bytes = "vec", tag = "6")]
        BytesValue(Vec<u8>),
        /// A string stored as the `name` of the plane's XStatMetadata with this id.
        #[prost(uint64, tag = "7")]
        RefValue(u64),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct XEventMetadata {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub display_name: String,
    #[prost(bytes = "vec", tag = "3")]
    pub metadata: Vec<u8>,
    #[prost(message, repeated, tag = "5")]
    pub stats: Vec<XStat>,
    #[prost(int64, repeated, tag = "6")]
    pub child_id: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct XStatMetadata {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub description: String,
}

impl XPlane {
    /// The stat's name (its metadata's `name`), "" when the plane has no such metadata.
    pub fn stat_name(&self, stat: &XStat) -> &str {
        self.stat_metadata
            .get(&stat.metadata_id)
            .map_or("", |m| m.name.as_str())
    }

    /// The stat's value as text, where it is a string (`str_value`, or `ref_value` naming a
    /// stat metadata whose `name` holds the string).
    pub fn stat_str<'a>(&'a self, stat: &'a XStat) -> Option<&'a str> {
        match &stat.value {
            Some(x_stat::Value::StrValue(s)) => Some(s),
            Some(x_stat::Value::RefValue(id)) => {
                let id = i64::try_from(*id).ok()?;
                self.stat_metadata.get(&id).map(|m| m.name.as_str())
            }
            _ => None,
        }
    }

    /// The string value of the first stat named `name` in `stats`.
    pub fn find_str<'a>(&'a self, stats: &'a [XStat], name: &str) -> Option<&'a str> {
        stats
            .iter()
            .find(|s| self.stat_name(s) == name)
            .and_then(|s| self.stat_str(s))
    }

    /// Whether this plane is a device (`/device:GPU:0`, `/device:TPU:0`, ...) rather than the
    /// host (`/host:CPU`): the tsl naming convention (tsl/profiler/utils/xplane_schema.h).
    pub fn is_device(&self) -> bool {
        self.name.starts_with("/device:")
    }
}

impl XEvent {
    /// The event's start in picoseconds since the UNIX epoch; `None` for an aggregated event.
    /// An unset offset reads as 0, as the C++ accessor reads it.
    pub fn start_ps(&self, line: &XLine) -> Option<i128> {
        let off = match self.data {
            Some(x_event::Data::OffsetPs(off)) => off,
            None => 0,
            Some(x_event::Data::NumOccurrences(_)) => return None,
        };
        Some(i128::from(line.timestamp_ns) * 1000 + i128::from(off))
    }
}
