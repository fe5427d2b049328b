//! Where a byte offset sits in a text, as people count: the one conversion
//! behind every `FILE:line:col` a Basalt tool prints (configs here, image
//! profiles in image-builder).

/// 1-based line and column (in characters) of byte `offset`. An offset past
/// the end points just after the last character; one inside a multi-byte
/// character points at that character.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn counts_lines_and_characters_from_one() {
        let text = "ab\ncd\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 5), (2, 3));
        assert_eq!(line_col(text, 999), (3, 1));
        // The cases image-builder's profile parser checked with its own copy.
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 8), (2, 3));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        // "é" is two bytes; offset 3 is the byte after it, offset 2 inside it.
        let text = "aé=1";
        assert_eq!(line_col(text, 3), (1, 3));
        assert_eq!(line_col(text, 2), (1, 2));
    }
}
