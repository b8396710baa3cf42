//! Where a mouse click or wheel landed: the geometry of a table as it was last drawn, so an
//! event maps to a header cell or a row without laying the table out again.

use ratatui::layout::{Position, Rect};

/// What a position in a table is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TableHit<C> {
    /// The header cell of column `C`.
    Header(C),
    /// A data row: its position in the table's rows (not on screen).
    Row(usize),
    /// Inside the table, on neither (borders, spacing, empty rows).
    Other,
}

/// A table's areas in the last frame.
#[derive(Clone, Debug)]
pub struct TableGeom<C> {
    /// The whole table, borders included.
    pub area: Rect,
    /// Header line (`None` for a table without one).
    pub header_y: Option<u16>,
    /// Where the data rows are drawn.
    pub rows: Rect,
    /// Rows before the first one on screen.
    pub offset: usize,
    /// Rows the table has.
    pub len: usize,
    /// Each column's `(column, x, width)` on screen.
    pub cols: Vec<(C, u16, u16)>,
}

impl<C> Default for TableGeom<C> {
    fn default() -> Self {
        Self {
            area: Rect::default(),
            header_y: None,
            rows: Rect::default(),
            offset: 0,
            len: 0,
            cols: Vec::new(),
        }
    }
}

impl<C: Copy> TableGeom<C> {
    /// Is `(x, y)` anywhere on the table?
    pub fn contains(&self, x: u16, y: u16) -> bool {
        self.area.contains(Position { x, y })
    }

    /// What is at `(x, y)`; `None` outside the table.
    pub fn hit(&self, x: u16, y: u16) -> Option<TableHit<C>> {
        if !self.contains(x, y) {
            return None;
        }
        if Some(y) == self.header_y {
            let col = self.cols.iter().find(|c| x >= c.1 && x < c.1 + c.2);
            return Some(col.map_or(TableHit::Other, |c| TableHit::Header(c.0)));
        }
        if self.rows.contains(Position { x, y }) {
            let row = self.offset + usize::from(y - self.rows.y);
            if row < self.len {
                return Some(TableHit::Row(row));
            }
        }
        Some(TableHit::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_map_to_header_cells_and_scrolled_rows() {
        let g = TableGeom {
            area: Rect::new(0, 0, 40, 10),
            header_y: Some(1),
            rows: Rect::new(1, 2, 38, 7),
            offset: 5,
            len: 8,
            cols: vec![('a', 4, 3), ('b', 8, 6)],
        };
        assert_eq!(g.hit(9, 1), Some(TableHit::Header('b')));
        assert_eq!(g.hit(7, 1), Some(TableHit::Other), "the spacing");
        assert_eq!(g.hit(3, 2), Some(TableHit::Row(5)));
        assert_eq!(g.hit(3, 4), Some(TableHit::Row(7)));
        assert_eq!(g.hit(3, 5), Some(TableHit::Other), "past the last row");
        assert_eq!(g.hit(50, 2), None);
    }
}
