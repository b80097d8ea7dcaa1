//! Chunking: a document becomes passages of at most [`MAX_PASSAGE`] bytes,
//! cut at paragraph breaks, then sentence ends, then spaces. A short
//! paragraph that is no sentence (a heading, a definition's term such as
//! `wal_level` (`enum`), a table row's `|`) moves on with the text it
//! introduces. The same text always gives the same passages, so passage
//! ids (`<doc>#<n>`) are stable.

/// Largest passage, in bytes (about 200 tokens).
pub const MAX_PASSAGE: usize = 900;
/// A paragraph this short and no sentence introduces the next one rather
/// than ending a passage (a heading, a setting's `name (type)` line, a
/// function's signature: the longest signatures of the PostgreSQL docs'
/// admin functions are about 90 bytes).
const LEAD_IN: usize = 120;
/// How long a run of lead-ins may grow (a table row's `|`, two overloaded
/// signatures, a short description without a full stop) before the earlier
/// ones stand alone.
const LEAD_RUN: usize = MAX_PASSAGE / 3;

/// Splits `text` into passages.
pub fn chunk(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for para in units(text) {
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

/// The paragraphs of `text`, white space collapsed, each run of lead-ins
/// ([`is_lead`]) joined by line breaks to the paragraph after it, so that
/// it starts the passage of the text it introduces. A table row's `|`
/// starts a run of its own (the row before it is complete), and a run
/// longer than [`LEAD_RUN`] leaves its earlier lead-ins standing alone.
fn units(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut lead = String::new();
    for para in text
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
    {
        if is_lead(&para) {
            if !lead.is_empty() && (para == "|" || lead.len() + 1 + para.len() > LEAD_RUN) {
                out.push(std::mem::take(&mut lead));
            }
            if !lead.is_empty() {
                lead.push('\n');
            }
            lead.push_str(&para);
            continue;
        }
        out.push(if lead.is_empty() {
            para
        } else {
            format!("{}\n{para}", std::mem::take(&mut lead))
        });
    }
    if !lead.is_empty() {
        out.push(lead);
    }
    out
}

/// Whether paragraph `p` introduces the next: short and no sentence. A
/// sentence ends in `.` or `!` (before a closing bracket or quote) and has
/// three words or more ("This function is restricted to superusers."):
/// were it a lead-in, a run of them would leave the term after them
/// (`` `pg_walfile_name` ( `lsn` ) ``) at the end of a passage whose next
/// one holds its description. A question ("What is deterministic
/// profiling?") and an option such as `-?` introduce their answer.
fn is_lead(p: &str) -> bool {
    let end = p.trim_end_matches([')', ']', '"', '\'', '\u{201d}', '\u{2019}']);
    let sentence = end.ends_with(['.', '!']) && p.split_whitespace().count() >= 3;
    p.len() <= LEAD_IN && !sentence
}

/// Cuts a paragraph longer than a passage at sentence ends, else at spaces.
fn split_long(para: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = para;
    while rest.len() > MAX_PASSAGE {
        let window = &rest[..rest.floor_char_boundary(MAX_PASSAGE)];
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

    #[test]
    fn a_term_line_stays_with_its_definition() {
        let body = "x ".repeat(400);
        let text = format!(
            "{body}\n\n`wal_level` (`enum`)\n\n`wal_level` determines how much is written. {}",
            "y ".repeat(100)
        );
        let a = chunk(&text);
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(
            a[1].starts_with("`wal_level` (`enum`)\n`wal_level` determines"),
            "{a:?}"
        );
        // Even before a definition too long to share a passage with it.
        let long = format!(
            "{body}\n\n`effective_cache_size` (`integer`)\n\nSets it. {}",
            "z. ".repeat(400)
        );
        let b = chunk(&long);
        assert!(
            b[1].starts_with("`effective_cache_size` (`integer`)\nSets it."),
            "{b:?}"
        );
        // After a short sentence, a table row's term still opens the
        // passage of its description (the docs' function tables).
        let row = format!(
            "{body}\n\nThis function is restricted to superusers by default, but other users can be granted EXECUTE.\n\n|\n\n\
             `pg_walfile_name` ( `lsn` `pg_lsn` ) → `text`\n\nConverts a location to the name of the WAL file. {}",
            "w ".repeat(100)
        );
        let c = chunk(&row);
        assert!(
            c.iter()
                .any(|p| p.starts_with("|\n`pg_walfile_name` ( `lsn` `pg_lsn` ) → `text`\nConverts")),
            "{c:?}"
        );
    }
}
