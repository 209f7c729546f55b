//! Plain-text tables for the terminal.

/// Renders rows under headers, each column as wide as its widest cell.
pub(crate) fn render(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up() {
        let out = super::render(
            &["NAME", "DESCRIPTION"],
            vec![
                vec!["a".into(), "first".into()],
                vec!["longer".into(), "second".into()],
            ],
        );
        assert_eq!(out, "NAME    DESCRIPTION\na       first\nlonger  second\n");
    }
}
