//! The subset of Perfetto's trace protos that the native export writes, as prost messages.
//!
//! Field numbers and types are Perfetto's own, from `protos/perfetto/trace/perfetto_trace.proto`
//! (google/perfetto at ec5d16b14b743ba6063d720956d6d6af6610fd72, Apache-2.0), which is the
//! merge of: `trace.proto` (Trace), `trace_packet.proto` (TracePacket),
//! `track_event/track_descriptor.proto` (TrackDescriptor), `track_event/process_descriptor.proto`
//! (ProcessDescriptor), `track_event/counter_descriptor.proto` (CounterDescriptor),
//! `track_event/track_event.proto` (TrackEvent, EventName, EventCategory),
//! `track_event/debug_annotation.proto` (DebugAnnotation) and `interned_data/interned_data.proto`
//! (InternedData). The same file is vendored under `cmdqv-tui/tests/data/perfetto-protos/`, and
//! the tests decode the export with it through protoc. Repeated scalars are proto2 (not packed),
//! as upstream declares them, so Perfetto's own decoder reads them as it expects.

/// `TracePacket.sequence_flags`: SEQ_INCREMENTAL_STATE_CLEARED.
pub const SEQ_INCREMENTAL_STATE_CLEARED: u32 = 1;
/// `TracePacket.sequence_flags`: SEQ_NEEDS_INCREMENTAL_STATE.
pub const SEQ_NEEDS_INCREMENTAL_STATE: u32 = 2;

/// `message Trace`: what a `.pftrace` file is (the export writes its packets one by one; tests
/// read it back whole).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Trace {
    #[prost(message, repeated, tag = "1")]
    pub packet: Vec<TracePacket>,
}

/// `message TracePacket` (the fields written here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TracePacket {
    #[prost(uint64, optional, tag = "8")]
    pub timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "10")]
    pub trusted_packet_sequence_id: Option<u32>,
    #[prost(message, optional, tag = "12")]
    pub interned_data: Option<InternedData>,
    #[prost(uint32, optional, tag = "13")]
    pub sequence_flags: Option<u32>,
    #[prost(oneof = "Data", tags = "11, 60")]
    pub data: Option<Data>,
}

/// `TracePacket.data` (the members written here).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Data {
    #[prost(message, tag = "11")]
    TrackEvent(TrackEvent),
    #[prost(message, tag = "60")]
    TrackDescriptor(TrackDescriptor),
}

/// `message TrackDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrackDescriptor {
    #[prost(uint64, optional, tag = "1")]
    pub uuid: Option<u64>,
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    #[prost(message, optional, tag = "3")]
    pub process: Option<ProcessDescriptor>,
    #[prost(uint64, optional, tag = "5")]
    pub parent_uuid: Option<u64>,
    #[prost(message, optional, tag = "8")]
    pub counter: Option<CounterDescriptor>,
}

/// `message ProcessDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProcessDescriptor {
    #[prost(int32, optional, tag = "1")]
    pub pid: Option<i32>,
    #[prost(string, optional, tag = "6")]
    pub process_name: Option<String>,
}

/// `CounterDescriptor.Unit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum CounterUnit {
    Unspecified = 0,
    TimeNs = 1,
    Count = 2,
}

/// `message CounterDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CounterDescriptor {
    #[prost(enumeration = "CounterUnit", optional, tag = "3")]
    pub unit: Option<i32>,
    #[prost(string, optional, tag = "6")]
    pub unit_name: Option<String>,
}

/// `TrackEvent.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum EventType {
    Unspecified = 0,
    SliceBegin = 1,
    SliceEnd = 2,
    Instant = 3,
    Counter = 4,
}

/// `message TrackEvent` (the fields written here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrackEvent {
    #[prost(message, repeated, tag = "4")]
    pub debug_annotations: Vec<DebugAnnotation>,
    #[prost(enumeration = "EventType", optional, tag = "9")]
    pub r#type: Option<i32>,
    #[prost(uint64, optional, tag = "10")]
    pub name_iid: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub track_uuid: Option<u64>,
    #[prost(string, repeated, tag = "22")]
    pub categories: Vec<String>,
    #[prost(string, optional, tag = "23")]
    pub name: Option<String>,
    #[prost(int64, optional, tag = "30")]
    pub counter_value: Option<i64>,
    #[prost(fixed64, repeated, packed = "false", tag = "47")]
    pub flow_ids: Vec<u64>,
    #[prost(fixed64, repeated, packed = "false", tag = "48")]
    pub terminating_flow_ids: Vec<u64>,
}

/// `message DebugAnnotation` (name, unsigned, signed and string values, dictionaries).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DebugAnnotation {
    #[prost(uint64, optional, tag = "3")]
    pub uint_value: Option<u64>,
    #[prost(int64, optional, tag = "4")]
    pub int_value: Option<i64>,
    #[prost(string, optional, tag = "6")]
    pub string_value: Option<String>,
    #[prost(string, optional, tag = "10")]
    pub name: Option<String>,
    #[prost(message, repeated, tag = "11")]
    pub dict_entries: Vec<DebugAnnotation>,
}

/// `message InternedData` (event names).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InternedData {
    #[prost(message, repeated, tag = "2")]
    pub event_names: Vec<EventName>,
}

/// `message EventName`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventName {
    #[prost(uint64, optional, tag = "1")]
    pub iid: Option<u64>,
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
}

impl DebugAnnotation {
    pub fn uint(name: &str, v: u64) -> Self {
        Self {
            name: Some(name.into()),
            uint_value: Some(v),
            ..Default::default()
        }
    }

    pub fn int(name: &str, v: i64) -> Self {
        Self {
            name: Some(name.into()),
            int_value: Some(v),
            ..Default::default()
        }
    }

    pub fn string(name: &str, v: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            string_value: Some(v.into()),
            ..Default::default()
        }
    }

    pub fn dict(name: &str, entries: Vec<DebugAnnotation>) -> Self {
        Self {
            name: Some(name.into()),
            dict_entries: entries,
            ..Default::default()
        }
    }
}
