//! Printing answers: aligned tables for people, the API's JSON for programs.

use std::io::Write;

use serde_json::Value;

use super::Output;
use super::api::Failure;

/// Rows under a header, printed with each column as wide as its widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// The table as text: columns two spaces apart, no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header = self
            .header
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Write to stdout, ignoring a closed pipe (`perimeter ... | head`).
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Print `json` pretty, or the table `table` builds from it.
pub fn emit(
    output: Output,
    json: &Value,
    table: impl FnOnce() -> Result<String, Failure>,
) -> Result<(), Failure> {
    match output {
        Output::Json => {
            let text = serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string());
            print(&format!("{text}\n"));
        }
        Output::Table => print(&table()?),
    }
    Ok(())
}

/// Print a list: its items as one JSON array, or the table `table` builds from them.
pub fn emit_list(
    output: Output,
    items: Vec<Value>,
    table: impl FnOnce(&[Value]) -> Result<Table, Failure>,
) -> Result<(), Failure> {
    let all = Value::Array(items);
    emit(output, &all, || {
        Ok(table(all.as_array().map_or(&[], Vec::as_slice))?.render())
    })
}

/// A list joined with commas, or `dash` when empty.
pub fn joined<T: ToString>(items: &[T], dash: &str) -> String {
    if items.is_empty() {
        dash.to_string()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A cell for a value that may be empty.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut t = Table::new(&["NAME", "PORTS", "ID"]);
        t.row(vec!["google".into(), "443".into(), "1".into()]);
        t.row(vec!["a".into(), "443,80,8080".into(), "22".into()]);
        assert_eq!(
            t.render(),
            "NAME    PORTS        ID\n\
             google  443          1\n\
             a       443,80,8080  22\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(Table::new(&["CIDR", "NAME"]).render(), "CIDR  NAME\n");
    }
}
