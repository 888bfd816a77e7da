//! Output formats (`-o table|wide|yaml|json`), aligned tables, and YAML/JSON printing.

use clap::{Args, ValueEnum};
use serde::Serialize;

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// YAML, as `kubectl get -o yaml` prints it.
    Yaml,
    /// JSON.
    Json,
}

/// The `-o` flag.
#[derive(Clone, Copy, Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(
        short,
        long,
        value_enum,
        default_value = "table",
        env = "IDBIND_OUTPUT",
        value_name = "FORMAT"
    )]
    pub output: Format,
}

impl OutputArgs {
    /// Whether a structured format (YAML or JSON) was asked for.
    pub fn structured(&self) -> bool {
        matches!(self.output, Format::Yaml | Format::Json)
    }

    /// Prints `value` as YAML or JSON; returns false for the table formats (caller prints those).
    pub fn print_structured<T: Serialize>(&self, value: &T) -> anyhow::Result<bool> {
        match self.output {
            Format::Yaml => {
                print!("{}", to_yaml(value)?);
                Ok(true)
            }
            Format::Json => {
                println!("{}", serde_json::to_string_pretty(value)?);
                Ok(true)
            }
            Format::Table | Format::Wide => Ok(false),
        }
    }

    /// Whether the wide table was asked for.
    pub fn wide(&self) -> bool {
        self.output == Format::Wide
    }
}

/// One YAML document (through JSON, so field order and omitted fields match the API server's).
pub fn to_yaml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let json = serde_json::to_value(value)?;
    let mut text = serde_saphyr::to_string(&json)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Rows with a header, printed with columns aligned by two spaces, as kubectl does.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Self {
        Self {
            rows: vec![header.into_iter().map(Into::into).collect()],
        }
    }

    /// Appends a row.
    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The rendered table.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c].saturating_sub(cell.chars().count()) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the rendered table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// `value`, or `<none>` as kubectl prints missing values.
pub fn or_none(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => "<none>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(["NAME", "READY"]);
        t.row(["a-long-name", "True"]);
        t.row(["b", ""]);
        assert_eq!(t.render(), "NAME         READY\na-long-name  True\nb\n");
    }

    #[test]
    fn yaml_goes_through_json() {
        let y = to_yaml(&serde_json::json!({"b": 1, "a": [true]})).unwrap();
        assert!(y.contains("b: 1") && y.contains("- true"), "{y}");
    }
}
