//! Plain-text tables for terminal output: one column layout shared by the header and the
//! rows, so the two cannot drift apart.

use std::fmt;

/// A column: its width, and whether its cells are aligned left (names) or right (figures).
#[derive(Clone, Copy, Debug)]
pub enum Col {
    Left(usize),
    Right(usize),
}

/// A table of `N` columns under a header line; `Display` writes it, one line a row.
pub struct Table<const N: usize> {
    cols: [Col; N],
    text: String,
}

impl<const N: usize> Table<N> {
    pub fn new(cols: [Col; N], header: [&str; N]) -> Self {
        let mut t = Table {
            cols,
            text: String::new(),
        };
        t.push(header);
        t
    }

    /// Appends a row of formatted cells; a cell wider than its column is written whole.
    pub fn row(&mut self, cells: [String; N]) {
        self.push(cells.each_ref().map(String::as_str));
    }

    fn push(&mut self, cells: [&str; N]) {
        for (i, (col, cell)) in self.cols.iter().zip(cells).enumerate() {
            if i > 0 {
                self.text.push(' ');
            }
            match *col {
                Col::Left(w) => self.text += &format!("{cell:<w$}"),
                Col::Right(w) => self.text += &format!("{cell:>w$}"),
            }
        }
        self.text.push('\n');
    }
}

impl<const N: usize> fmt::Display for Table<N> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_rows_share_the_layout() {
        let mut t = Table::new(
            [Col::Left(5), Col::Right(6), Col::Right(4)],
            ["map", "mass", "hits"],
        );
        t.row(["attention".into(), "0.25".into(), "3".into()]);
        assert_eq!(t.to_string(), "map     mass hits\nattention   0.25    3\n");
    }
}
