//! Plain-text tables: left-aligned columns separated by two spaces.

/// Renders `rows` (the first is the header). Column widths fit the content,
/// or are `fixed` (so rows printed later, e.g. while following a job, line
/// up with a header printed earlier).
pub fn render(rows: &[Vec<String>], fixed: Option<&[usize]>) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = match fixed {
        Some(w) => w.to_vec(),
        None => (0..cols)
            .map(|i| {
                rows.iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect(),
    };
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn aligns_columns() {
        let rows = vec![vec!["a".to_string(), "bb".into()], vec!["ccc".into(), "d".into()]];
        assert_eq!(render(&rows, None), "a    bb\nccc  d\n");
        assert_eq!(render(&rows, Some(&[2, 1])), "a   bb\nccc  d\n");
    }
}
