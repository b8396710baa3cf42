//! The queue table's data: the columns it sorts by, which queues a filter keeps, the order of
//! the rows, and each queue's cells as text.

use std::cmp::Ordering;

use cmdqv_core::analysis::{QueueState, QueueSummary};
use cmdqv_core::event::ErrCode;
use cmdqv_core::queue::Ring;
use cmdqv_core::regs::cons_indx;

use super::filter;
use crate::tui::format;

/// Columns of the VCMDQ table the user can sort by (`s` cycles, `S` reverses).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortColumn {
    #[default]
    Id,
    Name,
    Vintf,
    State,
    Size,
    Prod,
    Cons,
    Occupancy,
    CmdRate,
    SyncRate,
    P50,
    P99,
    Max,
    Batch,
    Commands,
    Errors,
    /// The error CONS_INDX.ERR reports, as a short name.
    CError,
}

impl SortColumn {
    pub const ALL: [SortColumn; 17] = [
        SortColumn::Id,
        SortColumn::Name,
        SortColumn::Vintf,
        SortColumn::State,
        SortColumn::Size,
        SortColumn::Prod,
        SortColumn::Cons,
        SortColumn::Occupancy,
        SortColumn::CmdRate,
        SortColumn::SyncRate,
        SortColumn::P50,
        SortColumn::P99,
        SortColumn::Max,
        SortColumn::Batch,
        SortColumn::Commands,
        SortColumn::Errors,
        SortColumn::CError,
    ];

    /// The column header (also shown as "sort: …").
    pub fn title(self) -> &'static str {
        match self {
            SortColumn::Id => "ID",
            SortColumn::Name => "NAME",
            SortColumn::Vintf => "VI/LQ",
            SortColumn::State => "STATE",
            SortColumn::Size => "SIZE",
            SortColumn::Prod => "PROD",
            SortColumn::Cons => "CONS",
            SortColumn::Occupancy => "OCC",
            SortColumn::CmdRate => "CMD/s",
            SortColumn::SyncRate => "SYNC/s",
            SortColumn::P50 => "p50",
            SortColumn::P99 => "p99",
            SortColumn::Max => "MAX",
            SortColumn::Batch => "BATCH",
            SortColumn::Commands => "CMDS",
            SortColumn::Errors => "ERR",
            SortColumn::CError => "CERR",
        }
    }

    /// The column's name in the config file (`cmd_rate`).
    pub fn key(self) -> &'static str {
        COLUMN_KEYS[self.index()]
    }

    /// The column a config file name stands for.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.key() == key)
    }

    pub fn next(self) -> Self {
        Self::ALL[(self.index() + 1) % Self::ALL.len()]
    }

    /// Position in [`SortColumn::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Columns where "bigger first" is the useful default direction.
    pub fn descending_by_default(self) -> bool {
        !matches!(
            self,
            SortColumn::Id | SortColumn::Name | SortColumn::Vintf | SortColumn::State
        )
    }

    /// Compare two queues by this column (ascending).
    pub fn compare(self, a: &QueueSummary, b: &QueueSummary) -> Ordering {
        let f = |x: f64, y: f64| x.total_cmp(&y);
        match self {
            // The SMMU's own queue (no global id) sorts first.
            SortColumn::Id => a.global_id.cmp(&b.global_id),
            SortColumn::Name => a.name.cmp(&b.name),
            SortColumn::Vintf => (a.vintf, a.lvcmdq).cmp(&(b.vintf, b.lvcmdq)),
            SortColumn::State => state_rank(a.state).cmp(&state_rank(b.state)),
            SortColumn::Size => a.log2size.cmp(&b.log2size),
            SortColumn::Prod => ring_ptr(a, a.prod).cmp(&ring_ptr(b, b.prod)),
            SortColumn::Cons => ring_ptr(a, a.cons).cmp(&ring_ptr(b, b.cons)),
            SortColumn::Occupancy => f(a.occupancy, b.occupancy),
            SortColumn::CmdRate => f(a.commands_per_s, b.commands_per_s),
            SortColumn::SyncRate => f(a.syncs_per_s, b.syncs_per_s),
            SortColumn::P50 => a.batch_latency_ns.p50.cmp(&b.batch_latency_ns.p50),
            SortColumn::P99 => a.batch_latency_ns.p99.cmp(&b.batch_latency_ns.p99),
            SortColumn::Max => a.batch_latency_ns.max.cmp(&b.batch_latency_ns.max),
            SortColumn::Batch => f(a.mean_batch_size, b.mean_batch_size),
            SortColumn::Commands => a.commands.cmp(&b.commands),
            SortColumn::Errors => a.errors.cmp(&b.errors),
            SortColumn::CError => cons_error(a).code().cmp(&cons_error(b).code()),
        }
    }
}

/// A queue's ring, from the size the collector last saw.
fn ring(q: &QueueSummary) -> Ring {
    Ring::new(0, q.log2size.into())
}

/// PROD or CONS as a ring pointer: wrap bit and index, without the bits above (CONS.ERR).
fn ring_ptr(q: &QueueSummary, p: u32) -> u32 {
    p & ring(q).ptr_mask()
}

/// The error CONS_INDX.ERR holds (0: none).
pub fn cons_error(q: &QueueSummary) -> ErrCode {
    ErrCode::new(cons_indx::err(q.cons).into())
}

/// PROD or CONS as the table shows it: the ring index in hex, then ` w` when the wrap bit is
/// set (`1b1 w`), so a lap is not mistaken for a jump of 2^n entries. A size of 0 is what the
/// summary says before the size is known: the pointer is then shown whole (ERR left out).
pub fn ring_index_text(q: &QueueSummary, p: u32) -> String {
    let r = ring(q);
    if q.log2size == 0 {
        format!("{:x}", p & cons_indx::RD_MASK)
    } else if r.wrap(p) {
        format!("{:x} w", r.idx(p))
    } else {
        format!("{:x}", r.idx(p))
    }
}

/// The columns' names in the config file, in [`SortColumn::ALL`] order.
pub const COLUMN_KEYS: [&str; SortColumn::ALL.len()] = [
    "id",
    "name",
    "vintf",
    "state",
    "size",
    "prod",
    "cons",
    "occupancy",
    "cmd_rate",
    "sync_rate",
    "p50",
    "p99",
    "max",
    "batch",
    "commands",
    "errors",
    "cerr",
];

fn state_rank(s: QueueState) -> u8 {
    match s {
        QueueState::Error => 0,
        QueueState::Hardware => 1,
        QueueState::Emulated => 2,
        QueueState::Disabled => 3,
    }
}

/// How a queue state is written in the table (colour is never the only cue).
pub fn state_label(s: QueueState) -> &'static str {
    match s {
        QueueState::Disabled => "disabled",
        QueueState::Emulated => "emulated",
        QueueState::Hardware => "hardware",
        QueueState::Error => "error",
    }
}

/// Does a queue match a filter? Case-insensitive substring of its name or state
/// (`hw`/`hardware-backed` also match hardware-backed queues).
pub fn queue_matches(q: &QueueSummary, filter: &str) -> bool {
    filter::one(q, filter, matches_lower)
}

fn matches_lower(q: &QueueSummary, lower: &str) -> bool {
    let long = match q.state {
        QueueState::Hardware => "hardware-backed hw",
        QueueState::Emulated => "emulated",
        QueueState::Disabled => "disabled",
        QueueState::Error => "error",
    };
    filter::contains(&q.name, lower) || long.contains(lower)
}

/// The rows of the table: indices of the `queues` that match `filter`, sorted by `col`
/// (`desc` reverses), ties broken by name so the order is stable.
pub fn sorted_rows(
    queues: &[QueueSummary],
    filter: &str,
    col: SortColumn,
    desc: bool,
) -> Vec<usize> {
    let mut rows = filter::matching(queues, filter, matches_lower);
    rows.sort_by(|&a, &b| {
        let (a, b) = (&queues[a], &queues[b]);
        let o = col.compare(a, b);
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| a.name.cmp(&b.name))
    });
    rows
}

/// A queue wants attention: stopped on an error, or an error not yet acknowledged.
pub fn queue_alert(q: &QueueSummary) -> bool {
    q.state == QueueState::Error || q.last_error.as_ref().is_some_and(|e| !e.acknowledged)
}

/// One queue's table cells as text, in [`SortColumn::ALL`] order.
pub struct QueueText {
    cells: [String; SortColumn::ALL.len()],
}

impl QueueText {
    pub fn new(q: &QueueSummary) -> Self {
        Self {
            cells: SortColumn::ALL.map(|col| cell_text(q, col)),
        }
    }

    pub fn cell(&self, col: SortColumn) -> &str {
        &self.cells[col.index()]
    }
}

fn cell_text(q: &QueueSummary, col: SortColumn) -> String {
    let lat = &q.batch_latency_ns;
    match col {
        SortColumn::Id => format::id(q.global_id),
        SortColumn::Name => q.name.clone(),
        SortColumn::Vintf => match (q.vintf, q.lvcmdq) {
            (None, None) => "-".to_string(),
            (v, l) => format!("{}/{}", format::id(v), format::id(l)),
        },
        SortColumn::State => state_label(q.state).to_string(),
        SortColumn::Size => format::entries(q.log2size),
        SortColumn::Prod => ring_index_text(q, q.prod),
        SortColumn::Cons => ring_index_text(q, q.cons),
        SortColumn::Occupancy => format::percent(q.occupancy),
        SortColumn::CmdRate => format::rate(q.commands_per_s),
        SortColumn::SyncRate => format::rate(q.syncs_per_s),
        SortColumn::P50 => format::latency(lat.count, lat.p50),
        SortColumn::P99 => format::latency(lat.count, lat.p99),
        SortColumn::Max => format::latency(lat.count, lat.max),
        SortColumn::Batch if q.batches == 0 => "-".to_string(),
        SortColumn::Batch => format::rate(q.mean_batch_size),
        SortColumn::Commands => format::count(q.commands),
        SortColumn::Errors => format::count(q.errors),
        SortColumn::CError => cons_error(q).short_name().into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, state: QueueState, rate: f64) -> QueueSummary {
        QueueSummary {
            name: name.into(),
            state,
            commands_per_s: rate,
            ..QueueSummary::default()
        }
    }

    #[test]
    fn rows_are_filtered_then_sorted_with_ties_by_name() {
        let queues = [
            q("b", QueueState::Hardware, 5.0),
            q("smmu", QueueState::Emulated, 9.0),
            q("a", QueueState::Hardware, 5.0),
            q("c", QueueState::Disabled, 1.0),
        ];
        assert_eq!(
            sorted_rows(&queues, "", SortColumn::CmdRate, true),
            [1, 2, 0, 3]
        );
        assert_eq!(
            sorted_rows(&queues, "HW", SortColumn::CmdRate, false),
            [2, 0]
        );
        assert!(sorted_rows(&queues, "nothing", SortColumn::Id, false).is_empty());
    }

    #[test]
    fn cells_are_the_table_text() {
        let mut x = q("vcmdq7", QueueState::Error, 1234.0);
        x.global_id = Some(7);
        x.prod = 0x1f;
        let text = QueueText::new(&x);
        assert_eq!(text.cell(SortColumn::Id), "7");
        assert_eq!(text.cell(SortColumn::Vintf), "-");
        assert_eq!(text.cell(SortColumn::State), "error");
        assert_eq!(text.cell(SortColumn::Prod), "1f");
        assert_eq!(text.cell(SortColumn::CError), "-");
        assert_eq!(text.cell(SortColumn::CmdRate), "1.23k");
        assert_eq!(text.cell(SortColumn::Batch), "-", "no batch yet");
        assert!(queue_alert(&x));
    }

    #[test]
    fn pointers_show_index_and_wrap_apart_and_the_error_by_name() {
        let mut x = q("vcmdq1", QueueState::Error, 0.0);
        x.log2size = 9;
        // CONS_INDX with CERROR_ILL in bits 30:24, the wrap bit (bit 9) and index 0x1b1.
        x.cons = 0x0100_03b1;
        x.prod = 0x1b1;
        let text = QueueText::new(&x);
        assert_eq!(text.cell(SortColumn::Cons), "1b1 w");
        assert_eq!(text.cell(SortColumn::Prod), "1b1");
        assert_eq!(text.cell(SortColumn::CError), "ILL");
        let mut y = x.clone();
        y.cons = 0x3b0;
        assert_eq!(
            SortColumn::Cons.compare(&x, &y),
            Ordering::Greater,
            "ERR is not part of the pointer"
        );
        y.cons = 0x3b2;
        assert_eq!(SortColumn::Cons.compare(&x, &y), Ordering::Less);
    }
}
