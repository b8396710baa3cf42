//! The exposition: [`MetricsState`] written through prometheus-client, as OpenMetrics text when
//! the scraper asks for it (Prometheus does) and as Prometheus text 0.0.4 otherwise (curl,
//! `promtool check metrics`). Names follow Prometheus' rules: base units (seconds, a ratio),
//! counters end in `_total` (prometheus-client appends it).

use std::sync::{Arc, Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet},
    metrics::MetricType,
    registry::{Registry, Unit},
};

use super::model::{LatencyHist, MetricsState, QueueLabels, QueueSeries};

/// The two text formats a scraper can ask for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Prometheus,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, else the classic text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The registry with the one collector that reads the shared state at each scrape.
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(state: Arc<Mutex<MetricsState>>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(StateCollector(state)));
        Self { registry }
    }

    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        let done = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        // Writing into a String cannot fail; an encoder error would be a bug in a label value.
        if done.is_err() {
            out.clear();
            out.push_str("# cmdqv: the metrics could not be encoded\n");
        }
        out
    }
}

#[derive(Debug)]
struct StateCollector(Arc<Mutex<MetricsState>>);

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        encode_queues(&s, &mut enc)?;
        encode_vms(&s, &mut enc)
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn vm_labels<'a>(host: &'a str, vm: &'a str) -> Labels<'a> {
    vec![("host", host), ("vm", vm)]
}

fn queue_labels<'a>(host: &'a str, vm: &'a str, q: &'a QueueLabels) -> Labels<'a> {
    let mut l = vm_labels(host, vm);
    l.extend([
        ("vintf", q.vintf.as_str()),
        ("lvcmdq", q.lvcmdq.as_str()),
        ("queue", q.queue.as_str()),
    ]);
    l
}

fn counter(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, v: u64) -> std::fmt::Result {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, v: f64) -> std::fmt::Result {
    m.encode_family(labels)?.encode_gauge(&v)
}

/// Every (VM, queue labels, queue series), VMs in name order, queues as first seen.
fn each_queue(s: &MetricsState) -> impl Iterator<Item = (&str, &QueueLabels, &QueueSeries)> {
    s.vms
        .iter()
        .flat_map(|(vm, v)| v.queues.iter().map(move |(l, q)| (vm.as_str(), l, q)))
}

fn encode_queues(s: &MetricsState, enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let h = s.host.as_str();
    let mut m = enc.encode_descriptor(
        "cmdqv_commands",
        "Commands consumed from the queue.",
        None,
        MetricType::Counter,
    )?;
    for (vm, l, q) in each_queue(s) {
        counter(&mut m, &queue_labels(h, vm, l), q.commands)?;
    }
    let mut m = enc.encode_descriptor(
        "cmdqv_syncs",
        "CMD_SYNC commands consumed from the queue (not measured by page0 sampling).",
        None,
        MetricType::Counter,
    )?;
    for (vm, l, q) in each_queue(s) {
        if let Some(n) = q.syncs {
            counter(&mut m, &queue_labels(h, vm, l), n)?;
        }
    }
    let mut m = enc.encode_descriptor(
        "cmdqv_errors",
        "Times the queue stopped on a command error, by CONS_INDX.ERR code.",
        None,
        MetricType::Counter,
    )?;
    for (vm, l, q) in each_queue(s) {
        for (code, &n) in &q.errors {
            let mut labels = queue_labels(h, vm, l);
            labels.push(("cerror", code));
            counter(&mut m, &labels, n)?;
        }
    }
    encode_latency(s, enc)?;
    let mut m = enc.encode_descriptor(
        "cmdqv_queue_occupancy_ratio",
        "Fraction of the ring between CONS and PROD at the last observation (folded series: the largest).",
        None,
        MetricType::Gauge,
    )?;
    for (vm, v) in &s.vms {
        for ((l, _), o) in v.queues.iter().zip(v.occupancy()) {
            if let Some(o) = o {
                gauge(&mut m, &queue_labels(h, vm, l), o)?;
            }
        }
    }
    Ok(())
}

fn encode_latency(s: &MetricsState, enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(
        "cmdqv_batch_latency",
        "Batch latency: the guest's doorbell (PROD write) until CONS reaches it.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (vm, l, q) in each_queue(s) {
        let Some(hist) = &q.latency else {
            continue;
        };
        let buckets: Vec<(f64, u64)> = LatencyHist::bounds().zip(hist.buckets).collect();
        m.encode_family(&queue_labels(&s.host, vm, l))?
            .encode_histogram::<NoLabelSet>(hist.sum_ns / 1e9, hist.count, &buckets, None)?;
    }
    Ok(())
}

fn encode_vms(s: &MetricsState, enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let h = s.host.as_str();
    let mut m = enc.encode_descriptor(
        "cmdqv_events",
        "Events cmdqv took in for the target.",
        None,
        MetricType::Counter,
    )?;
    for (vm, v) in &s.vms {
        counter(&mut m, &vm_labels(h, vm), v.events)?;
    }
    let mut m = enc.encode_descriptor(
        "cmdqv_events_dropped",
        "Events lost on the way (ring buffer full, undecodable records, channels).",
        None,
        MetricType::Counter,
    )?;
    for (vm, v) in &s.vms {
        counter(&mut m, &vm_labels(h, vm), v.drops)?;
    }
    let mut m = enc.encode_descriptor(
        "cmdqv_probe_attached",
        "1 while the probe is attached, 0 when it is not (or its target went away).",
        None,
        MetricType::Gauge,
    )?;
    for (vm, v) in &s.vms {
        for (probe, &on) in &v.probes {
            let mut l = vm_labels(h, vm);
            l.push(("probe", probe));
            gauge(&mut m, &l, if on { 1.0 } else { 0.0 })?;
        }
    }
    let mut m = enc.encode_descriptor(
        "cmdqv_vm_up",
        "1 while the VM's VMM is followed, 0 for a while after it went away.",
        None,
        MetricType::Gauge,
    )?;
    for (vm, v) in &s.vms {
        gauge(
            &mut m,
            &vm_labels(h, vm),
            if v.gone.is_some() { 0.0 } else { 1.0 },
        )?;
    }
    let mut m = enc.encode_descriptor(
        "cmdqv_discovery_errors",
        "VMMs found but not followed, by reason (permission, gone, other).",
        None,
        MetricType::Counter,
    )?;
    for (reason, &n) in &s.discovery_errors {
        counter(&mut m, &[("host", h), ("reason", reason.as_str())], n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::model::Page0Queue;

    #[test]
    fn both_formats_name_counters_with_total_and_latency_in_seconds() {
        let state = Arc::new(Mutex::new(MetricsState::new("h1", 8)));
        state.lock().unwrap().apply_page0(
            "vm-a",
            9,
            &[Page0Queue {
                vintf: 0,
                lidx: 2,
                consumed: 42,
                cerror: 2,
                occupancy: Some(0.25),
            }],
        );
        let e = Exposition::new(state);
        let om = e.render(Format::OpenMetrics);
        assert!(om.contains("# TYPE cmdqv_commands counter"), "{om}");
        assert!(
            om.contains(
                r#"cmdqv_commands_total{host="h1",vm="vm-a",vintf="0",lvcmdq="2",queue="lvcmdq2"} 42"#
            ),
            "{om}"
        );
        assert!(om.contains(r#"cerror="ABT"} 1"#), "{om}");
        assert!(
            om.contains("# UNIT cmdqv_batch_latency_seconds seconds"),
            "{om}"
        );
        assert!(om.trim_end().ends_with("# EOF"), "{om}");
        let text = e.render(Format::Prometheus);
        assert!(
            text.contains("# TYPE cmdqv_commands_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(text.contains("cmdqv_queue_occupancy_ratio{"), "{text}");
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(None), Format::Prometheus);
    }
}
