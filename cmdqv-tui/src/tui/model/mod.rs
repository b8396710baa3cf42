//! The view model: what the panes show that depends only on the snapshot, derived once when
//! the snapshot arrives and re-used by every frame until the next one (state counts, probe
//! classes, every cell and log column as text). Text is formatted lazily, by the first frame
//! that shows it, so 300 queues cost what the 40 on screen do. Which rows a pane shows (its
//! filter, sort and scroll) is the pane's own state; this holds only what every pane shares.

pub mod devices;
pub mod filter;
pub mod history;
pub mod log;
pub mod probes;
pub mod queues;
pub mod trapped;

use std::cell::OnceCell;

use cmdqv_core::analysis::{QueueState, Summary};

use devices::VintfText;
use log::LogText;
use probes::{ProbeClass, probe_class};
use queues::QueueText;

/// How many queues are in each state that the header counts.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub hardware: usize,
    pub emulated: usize,
    pub error: usize,
}

/// One snapshot, ready to render.
pub struct ViewModel {
    summary: Summary,
    states: StateCounts,
    probe_classes: Vec<ProbeClass>,
    /// Probes per [`ProbeClass`], indexed by its value.
    probe_counts: [usize; 4],
    queue_text: Vec<OnceCell<QueueText>>,
    log_text: Vec<OnceCell<LogText>>,
    vintf_text: OnceCell<Vec<VintfText>>,
    /// The trapped path's line (KVM guest engine only).
    trapped: Option<String>,
}

impl From<Summary> for ViewModel {
    fn from(summary: Summary) -> Self {
        let mut states = StateCounts::default();
        for q in &summary.queues {
            match q.state {
                QueueState::Hardware => states.hardware += 1,
                QueueState::Emulated => states.emulated += 1,
                QueueState::Error => states.error += 1,
                QueueState::Disabled => {}
            }
        }
        let probe_classes: Vec<ProbeClass> = summary
            .probes
            .iter()
            .map(|p| probe_class(&p.status))
            .collect();
        let mut probe_counts = [0; 4];
        for &c in &probe_classes {
            probe_counts[c as usize] += 1;
        }
        Self {
            queue_text: summary.queues.iter().map(|_| OnceCell::new()).collect(),
            log_text: summary.log.iter().map(|_| OnceCell::new()).collect(),
            vintf_text: OnceCell::new(),
            trapped: trapped::trapped_line(&summary),
            summary,
            states,
            probe_classes,
            probe_counts,
        }
    }
}

impl ViewModel {
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    pub fn states(&self) -> StateCounts {
        self.states
    }

    /// The class of the `i`th probe of the snapshot.
    pub fn probe_class(&self, i: usize) -> ProbeClass {
        self.probe_classes[i]
    }

    /// How many probes of the snapshot are in `class`.
    pub fn probe_count(&self, class: ProbeClass) -> usize {
        self.probe_counts[class as usize]
    }

    /// The cells of the `i`th queue of the snapshot.
    pub fn queue_text(&self, i: usize) -> &QueueText {
        self.queue_text[i].get_or_init(|| QueueText::new(&self.summary.queues[i]))
    }

    /// The columns of the `i`th log line of the snapshot.
    pub fn log_text(&self, i: usize) -> &LogText {
        self.log_text[i].get_or_init(|| LogText::new(&self.summary.log[i]))
    }

    /// The trapped path's exits/s and batch breakdown, when the guest runs in KVM vCPUs.
    pub fn trapped_line(&self) -> Option<&str> {
        self.trapped.as_deref()
    }

    /// The text of every VINTF, in the snapshot's order.
    pub fn vintf_text(&self) -> &[VintfText] {
        self.vintf_text
            .get_or_init(|| self.summary.vintfs.iter().map(VintfText::new).collect())
    }
}
