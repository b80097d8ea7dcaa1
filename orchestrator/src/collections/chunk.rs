//! Chunking: a document becomes passages of at most [`MAX_PASSAGE`] bytes,
//! cut at paragraph breaks, then sentence ends, then spaces. The same text
//! always gives the same passages, so passage ids (`<doc>#<n>`) are stable.

/// Largest passage, in bytes (about 200 tokens).
pub const MAX_PASSAGE: usize = 900;

/// Splits `text` into passages.
pub fn chunk(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for para in text
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
    {
        if para.is_empty() {
            continue;
        }
        for piece in split_long(&para) {
            if !cur.is_empty() && cur.len() + 1 + piece.len() > MAX_PASSAGE {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push('\n');
            }
            cur.push_str(piece);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Cuts a paragraph longer than a passage at sentence ends, else at spaces.
fn split_long(para: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = para;
    while rest.len() > MAX_PASSAGE {
        let window = &rest[..floor_char(rest, MAX_PASSAGE)];
        let cut = window
            .rfind(". ")
            .map(|i| i + 1)
            .filter(|&i| i > MAX_PASSAGE / 3)
            .or_else(|| window.rfind(' '))
            .unwrap_or(window.len());
        out.push(rest[..cut].trim());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passages_are_bounded_stable_and_keep_every_word() {
        let text = format!("Title\n\n{}\n\nShort tail.", "Word é sentence. ".repeat(200));
        let a = chunk(&text);
        assert_eq!(a, chunk(&text));
        assert!(
            a.iter().all(|p| p.len() <= MAX_PASSAGE),
            "{:?}",
            a.iter().map(|p| p.len()).collect::<Vec<_>>()
        );
        let words = |s: &str| s.split_whitespace().count();
        assert_eq!(a.iter().map(|p| words(p)).sum::<usize>(), words(&text));
        assert!(chunk("  \n\n ").is_empty());
    }
}
