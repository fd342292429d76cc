//! How results reach stdout: aligned tables for people, the agent's own JSON for scripts.
//! Messages and errors go to stderr (see `main`); stdout carries only results.

use std::io::{self, Write};

use anyhow::Context;
use clap::ValueEnum;

/// The `-o/--output` choice of the listing commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a header row.
    #[default]
    Table,
    /// The agent's JSON response, unchanged.
    Json,
}

/// Rows of text cells under a header, printed as left-aligned columns two spaces apart.
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "one cell per column");
        self.rows.push(cells);
    }

    /// Writes the table; the last column is not padded, so lines carry no trailing spaces.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header = self
            .header
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            writeln!(w, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Prints a table to stdout.
pub fn table(table: &Table) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    table
        .write_to(&mut out)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Prints a JSON body exactly as the agent sent it, ending in a newline.
pub fn json(body: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(body)
        .and_then(|()| {
            if body.ends_with(b"\n") {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Prints a one-line confirmation to stdout.
pub fn line(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut t = Table::new(vec!["NAME", "TYPE", "ATTRIBUTES"]);
        t.row(vec!["slow".into(), "latency".into(), "latency=100".into()]);
        t.row(vec!["a-much-longer-name".into(), "down".into(), "".into()]);
        let mut out = Vec::new();
        t.write_to(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME                TYPE     ATTRIBUTES\n\
             slow                latency  latency=100\n\
             a-much-longer-name  down\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        let mut out = Vec::new();
        Table::new(vec!["NAME", "LISTEN"])
            .write_to(&mut out)
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "NAME  LISTEN\n");
    }
}
