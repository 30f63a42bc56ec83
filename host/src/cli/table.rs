//! Text tables for the terminal: rows of cells in aligned columns, two
//! spaces apart, with no trailing blanks. `status`, `top` and
//! `dead-letters list` print theirs through it.

/// `rows` (the first is the header) as aligned lines; the columns from
/// `right_from` on are aligned to the right (numbers), the others to the
/// left. Widths count characters, not bytes.
pub fn aligned<const N: usize>(rows: &[[String; N]], right_from: usize) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i < right_from {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::aligned;

    #[test]
    fn columns_line_up_by_characters() {
        let rows = [
            ["NAME".to_owned(), "N".to_owned()],
            ["émile".to_owned(), "12".to_owned()],
            ["a".to_owned(), "3".to_owned()],
        ];
        assert_eq!(aligned(&rows, 1), "NAME    N\némile  12\na       3\n");
        assert_eq!(aligned(&rows, 2), "NAME   N\némile  12\na      3\n");
    }
}
