//! `upshift ingest`: reads files (plain text, Markdown, HTML with its markup
//! stripped, code kept in backticks), and sends them to a collection in
//! batches under the API's body limit, showing progress; then follows the
//! collection's embedding until every passage has its vector (dense
//! retrieval covers a passage from then on). Document ids are the paths
//! relative to the argument they were found under, so re-ingesting replaces
//! them.

use crate::client::Client;
use anyhow::{Context, bail};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// Largest document the API accepts (bytes of text).
const MAX_DOC: usize = 512 * 1024;

/// Options of `upshift ingest`.
#[derive(clap::Args)]
pub struct IngestArgs {
    /// The collection to write to (created on first use).
    #[arg(long)]
    collection: String,
    /// Send documents in requests of about this many KiB (halved on 413).
    #[arg(long, default_value_t = 700)]
    batch_kib: usize,
    /// Return once the documents are written, without waiting for their
    /// embeddings (full-text search serves meanwhile).
    #[arg(long)]
    no_wait: bool,
    /// Print each file's text as it would be stored, and send nothing.
    #[arg(long)]
    print: bool,
    /// Files or directories (searched recursively for .txt, .md, .html, .htm;
    /// folders whose names start with `_` or `.` are skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

impl IngestArgs {
    /// Ingest `paths` into `collection` with the default batch size.
    pub fn new(collection: &str, paths: Vec<PathBuf>) -> IngestArgs {
        IngestArgs {
            collection: collection.to_string(),
            batch_kib: 700,
            no_wait: false,
            print: false,
            paths,
        }
    }
}

impl IngestArgs {
    /// The same ingest, returning once the documents are written.
    pub fn without_waiting(mut self) -> IngestArgs {
        self.no_wait = true;
        self
    }
}

/// Runs the ingest; returns (documents, passages) written.
pub async fn run(client: &Client, args: IngestArgs) -> anyhow::Result<(usize, usize)> {
    let mut files = Vec::new();
    for root in &args.paths {
        collect(root, root, &mut files).with_context(|| format!("reading {}", root.display()))?;
    }
    files.sort();
    let total = files.len();
    let started = std::time::Instant::now();
    let mut progress = Progress::new();
    let mut tally = Tally::default();
    let (mut batch, mut batch_bytes) = (Vec::new(), 0);
    let path = format!("/v1/collections/{}/documents", args.collection);
    for (i, (id, file)) in files.iter().enumerate() {
        let raw = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let raw = String::from_utf8_lossy(&raw);
        let (title, text) = to_text(file, &raw);
        if args.print {
            println!("==> {id} ({})\n{text}\n", title.as_deref().unwrap_or(""));
            continue;
        }
        if text.trim().is_empty() || text.len() > MAX_DOC {
            eprintln!("\nskipped {id}: {} bytes of text", text.len());
            tally.skipped += 1;
        } else {
            let doc = serde_json::json!({"id": id, "title": title.unwrap_or_else(|| id.clone()), "text": text});
            batch_bytes += doc.to_string().len();
            batch.push(doc);
        }
        if !batch.is_empty() && (batch_bytes > args.batch_kib * 1024 || i + 1 == total) {
            send(
                client,
                &path,
                std::mem::take(&mut batch),
                args.batch_kib * 1024,
                &mut tally,
            )
            .await?;
            batch_bytes = 0;
            progress.show(&format!(
                "ingested {}/{total} documents, {} passages",
                tally.documents, tally.passages
            ));
        }
    }
    if args.print {
        return Ok((0, 0));
    }
    let (docs, passages, skipped) = (tally.documents, tally.passages, tally.skipped);
    let secs = started.elapsed().as_secs_f64();
    progress.end();
    println!(
        "collection {}: {docs} documents, {passages} passages in {secs:.1}s ({:.0} documents/s, {:.0} passages/s){}",
        args.collection,
        docs as f64 / secs,
        passages as f64 / secs,
        if skipped > 0 {
            format!("; {skipped} skipped")
        } else {
            String::new()
        }
    );
    if !args.no_wait {
        wait_for_embeddings(client, &args.collection).await?;
    }
    Ok((docs, passages))
}

/// Follows the collection's embedding with progress until every passage
/// has its vector (returns at once when dense retrieval is off).
pub async fn wait_for_embeddings(client: &Client, collection: &str) -> anyhow::Result<()> {
    let path = format!("/v1/collections/{collection}");
    let started = std::time::Instant::now();
    let mut first: Option<i64> = None;
    let mut progress = Progress::new();
    loop {
        let st = client.get(&path, &[]).await?;
        let (passages, embedded) = (
            st["passages"].as_i64().unwrap_or(0),
            st["embedded"].as_i64().unwrap_or(0),
        );
        let Some(model) = st["embedding_model"].as_str() else {
            println!("dense retrieval is off (no embedding model): full-text search only");
            return Ok(());
        };
        let base = *first.get_or_insert(embedded);
        let secs = started.elapsed().as_secs_f64();
        let rate = (embedded - base) as f64 / secs.max(1e-3);
        if embedded >= passages {
            progress.end();
            println!("embeddings ({model}): {embedded}/{passages} passages ready");
            return Ok(());
        }
        let left = if rate > 0.0 {
            format!(", about {:.0} s left", (passages - embedded) as f64 / rate)
        } else {
            String::new()
        };
        progress.show(&format!(
            "embedding with {model}: {embedded}/{passages} passages ({rate:.1}/s{left})"
        ));
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Progress on stderr: rewritten in place on a terminal; a line every
/// [`Progress::EVERY`] into a file or pipe (a log of `\r`s is unreadable).
struct Progress {
    tty: bool,
    last: Option<std::time::Instant>,
    shown: bool,
}

impl Progress {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(30);

    fn new() -> Progress {
        use std::io::IsTerminal;
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: None,
            shown: false,
        }
    }

    fn show(&mut self, line: &str) {
        if self.tty {
            eprint!("\r  {line}   ");
            self.shown = true;
        } else if self.last.is_none_or(|t| t.elapsed() >= Self::EVERY) {
            eprintln!("  {line}");
            self.last = Some(std::time::Instant::now());
        }
    }

    /// Ends an in-place line, if one was written.
    fn end(&mut self) {
        if std::mem::take(&mut self.shown) {
            eprintln!();
        }
    }
}

#[derive(Default)]
struct Tally {
    documents: usize,
    passages: usize,
    skipped: usize,
}

/// Posts a batch; when the server finds it too large (413) the batch is
/// halved and retried, and a single document too large is skipped.
/// Two more tries of a one-document request whose connection was closed.
async fn retry_one(client: &Client, path: &str, body: &serde_json::Value) -> Option<(u16, serde_json::Value)> {
    for _ in 0..2 {
        if let Ok(r) = client.post_status(path, body).await {
            return Some(r);
        }
    }
    None
}

/// Sends `batch` (about `batch_bytes` of JSON), halving it on 413.
async fn send(
    client: &Client,
    path: &str,
    batch: Vec<serde_json::Value>,
    batch_bytes: usize,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let mut queue = vec![batch];
    while let Some(b) = queue.pop() {
        // A server that refuses a large body early may close the connection
        // before the client has sent it all: treat that like a 413.
        let body = serde_json::json!({ "documents": b });
        let (status, out) = match client.post_status(path, &body).await {
            Ok(r) => r,
            Err(e) if b.len() > 1 => {
                tracing::debug!(error = %e, "batch not delivered; splitting it");
                (413, serde_json::Value::Null)
            }
            // One document: the same race may hide the server's 413, so try
            // again; a document over the batch size that never gets through
            // is skipped like one refused with 413, anything else is an error.
            Err(e) => match retry_one(client, path, &body).await {
                Some(r) => r,
                None if body.to_string().len() > batch_bytes => (413, serde_json::Value::Null),
                None => return Err(e),
            },
        };
        match status {
            200 => {
                tally.documents += out["documents"].as_u64().unwrap_or(0) as usize;
                tally.passages += out["passages"].as_u64().unwrap_or(0) as usize;
            }
            413 if b.len() > 1 => {
                let mut b = b;
                let tail = b.split_off(b.len() / 2);
                queue.push(tail);
                queue.push(b);
            }
            413 => {
                eprintln!("\nskipped {}: larger than the server's body limit", b[0]["id"]);
                tally.skipped += 1;
            }
            _ => bail!(
                "{status}: {}",
                out["error"]["message"].as_str().unwrap_or("unknown error")
            ),
        }
    }
    Ok(())
}

/// Files under `path` with a known extension, as (id, path).
fn collect(root: &Path, path: &Path, out: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    if path.is_dir() {
        // Build artefacts and hidden folders (Sphinx's `_sources` holds the
        // reStructuredText of every page again, `_static` its scripts).
        let skipped = path != root
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(['_', '.']));
        if skipped {
            return Ok(());
        }
        for e in std::fs::read_dir(path)? {
            collect(root, &e?.path(), out)?;
        }
        return Ok(());
    }
    let known = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["txt", "md", "markdown", "html", "htm"].contains(&e.to_ascii_lowercase().as_str()));
    if known {
        let rel = if root == path {
            path.file_name().map(PathBuf::from).unwrap_or_default()
        } else {
            path.strip_prefix(root)?.to_path_buf()
        };
        out.push((rel.to_string_lossy().into_owned(), path.to_path_buf()));
    }
    Ok(())
}

/// (title, plain text) of a file by its extension.
pub fn to_text(path: &Path, raw: &str) -> (Option<String>, String) {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => html_to_text(raw),
        "md" | "markdown" => {
            let title = raw
                .lines()
                .find_map(|l| l.strip_prefix("# "))
                .map(|t| t.trim().to_string());
            (title, raw.to_string())
        }
        _ => (None, raw.to_string()),
    }
}

static TITLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?is)<title[^>]*>(.*?)</title>").unwrap());
static DROP: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    let [a, b, c] =
        ["script", "style", "head"].map(|t| Regex::new(&format!(r"(?is)<{t}\b[^>]*>.*?</{t}\s*>")).unwrap());
    // Navigation repeated on pages: DocBook's navheader/navfooter, its tables
    // of contents and lists of tables, figures and examples; <nav>. They
    // read like the pages they point to, so they crowd search results.
    let nav = Regex::new(
        r#"(?is)<div class="(?:nav(?:header|footer)|toc|list-of-(?:tables|figures|examples))">.*?</div>|<nav\b[^>]*>.*?</nav\s*>"#,
    )
    .unwrap();
    [a, b, c, nav]
});
/// Code, kept as `backticked` spans: setting, command, function, file and
/// program names are what many questions ask for, and the extractive
/// answerer offers exactly such spans. `<var>` (a placeholder or variable
/// in any manual's syntax lines) counts as code too.
static CODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?is)<(code|tt|kbd|samp|var)\b[^>]*>(.*?)</\s*(?:code|tt|kbd|samp|var)\s*>|<span class="application">(.*?)</span>"#,
    )
    .unwrap()
});
/// A definition list's term (`<dt>`): what the entry defines, in any manual
/// (a function's signature, an option, a setting with its type).
static TERM: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?is)<dt\b[^>]*>(.*?)</dt\s*>").unwrap());
/// A table row's first cell: in a reference table, the thing the row is about.
static FIRST_CELL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?is)(<tr\b[^>]*>\s*<t[dh]\b[^>]*>)(.*?)(</t[dh]\s*>)").unwrap());
/// The name a definition line opens with: an identifier, a dotted or
/// `::`-qualified name, an option (`--sort-keys`, `-X`), a `%` format code.
static LEADING_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:--?|%)?[A-Za-z_][A-Za-z0-9_]*(?:(?:\.|::|-)[A-Za-z_][A-Za-z0-9_]*)*").unwrap());
/// Words of English prose, never a declaration's keyword.
const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "and", "as", "at", "by", "for", "from", "if", "in", "into", "is", "not", "of", "on", "or", "see", "the",
    "to", "using", "via", "with",
];
/// One or two lower-case keywords declaring what a term is (`class`,
/// `exception`, `async def`), then a name.
static DECLARED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^((?:[a-z]+\s+){1,2})(?:--?|%)?[A-Za-z_]").unwrap());
/// Table cells: kept apart (`columns per table | 1,600`), not run together.
static CELL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)</t[dh]\s*>").unwrap());
static BLOCK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)</?(p|div|h[1-6]|li|tr|table|pre|br|dt|dd|dl|section|ul|ol|blockquote|hr)\b[^>]*>").unwrap()
});
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)<[^>]*>").unwrap());
static NUMERIC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"&#(x[0-9a-fA-F]+|[0-9]+);").unwrap());

/// Strips HTML to text: drops head, scripts and styles, turns block elements
/// into paragraph breaks, removes the other tags and decodes entities.
pub fn html_to_text(html: &str) -> (Option<String>, String) {
    let title = TITLE.captures(html).map(|c| {
        decode(&TAG.replace_all(&c[1], ""))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    });
    let mut s = html.to_string();
    for re in DROP.iter() {
        s = re.replace_all(&s, " ").into_owned();
    }
    // Permalink marks (Sphinx's headerlinks) are not text.
    let s = s.replace('¶', "").replace("&para;", "").replace("&#182;", "");
    // Structure first, while the tags are there: a term's name and a
    // reference row's subject become code, so every manual's definitions
    // look alike to the extractive answerer (`name` then what follows).
    let s = TERM.replace_all(&s, |c: &regex::Captures| format!("<dt>{}</dt>", definition_line(&c[1])));
    let s = FIRST_CELL.replace_all(&s, |c: &regex::Captures| {
        format!("{}{}{}", &c[1], definition_line(&c[2]), &c[3])
    });
    let s = CODE.replace_all(&s, |c: &regex::Captures| {
        let inner = c.get(2).or_else(|| c.get(3)).map_or("", |m| m.as_str());
        let plain = TAG.replace_all(inner, "");
        // Only single-line code becomes a span; program listings stay text.
        if plain.trim().is_empty() || plain.contains('\n') || plain.contains('`') {
            plain.into_owned()
        } else {
            format!("`{}`", plain.trim())
        }
    });
    let s = CELL.replace_all(&s, " | ");
    let s = BLOCK.replace_all(&s, "\n\n");
    let s = decode(&TAG.replace_all(&s, ""));
    let mut out = String::new();
    for para in s.split("\n\n") {
        let p = para.split_whitespace().collect::<Vec<_>>().join(" ");
        if !p.is_empty() {
            out.push_str(&p);
            out.push_str("\n\n");
        }
    }
    (title.filter(|t| !t.is_empty()), out.trim_end().to_string())
}

/// The HTML of a definition's term with its leading name marked as code:
/// `os.getcwd()` → `` `os.getcwd` () ``; `--sort-keys` → `` `--sort-keys` ``;
/// a declaration's name before its keywords: `exception ValueError` →
/// `` `ValueError` (exception) ``. A term that already opens with code, or
/// opens with no name, is kept.
fn definition_line(inner: &str) -> String {
    let plain = decode(&TAG.replace_all(inner, ""));
    let plain = plain.trim();
    if opens_with_code(inner) || plain.starts_with('`') {
        return inner.to_string();
    }
    // A declaration's keywords (`exception ConnectionRefusedError`,
    // `class queue.PriorityQueue(maxsize=0)`, `coroutine asyncio.wait(…)`)
    // stand before the name they declare: the name leads the line, as
    // every other definition's does, and the keywords follow it.
    let (keywords, plain) = match DECLARED.captures(plain).and_then(|c| c.get(1)) {
        Some(k) => (Some(plain[..k.end()].trim()), &plain[k.end()..]),
        None => (None, plain),
    };
    let Some(m) = LEADING_NAME.find(plain) else {
        return inner.to_string();
    };
    // Prose ("Default value", "See also") is not a name: one token, and
    // either code-like (`_`, `.`, `-`, a digit, a capital inside) or all
    // there is in the cell.
    let name = m.as_str();
    let rest = plain[m.end()..].trim_start();
    let code_like = name.contains(['_', '.', '-', '%', ':'])
        || name
            .chars()
            .skip(1)
            .any(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    let ok = match keywords {
        // Declared: a call's signature (`(` right after the name), or a
        // code-like name alone; "new archive (B)" and "in PL/pgSQL, …" are prose.
        // English words before a name ("not NULL", "via OpenSSL", "see
        // db.conf") declare nothing, nor does an acronym alone.
        Some(k) if k.split_whitespace().any(|w| FUNCTION_WORDS.contains(&w)) => false,
        Some(_) => {
            plain[m.end()..].starts_with('(')
                || (code_like
                    && rest.is_empty()
                    && (name.contains('_') || name.chars().any(|c| c.is_ascii_lowercase())))
        }
        None => code_like || rest.is_empty(),
    };
    if !ok {
        return inner.to_string();
    }
    let rest = rest.replace('<', "&lt;").replace('>', "&gt;");
    let rest = match keywords {
        Some(k) if rest.is_empty() => format!("({k})"),
        Some(k) => format!("{rest} ({k})"),
        None => rest,
    };
    if rest.is_empty() {
        format!("<code>{name}</code>")
    } else {
        format!("<code>{name}</code> {rest}")
    }
}

/// Whether the first text of `html` is inside a code-like element.
fn opens_with_code(html: &str) -> bool {
    let mut rest = html.trim_start();
    while let Some(tag) = rest.strip_prefix('<') {
        let Some(end) = tag.find('>') else { return false };
        let name = tag[..end].trim_start_matches('/').to_ascii_lowercase();
        if ["code", "tt", "kbd", "samp", "var"]
            .iter()
            .any(|c| name == *c || name.starts_with(&format!("{c} ")))
        {
            return true;
        }
        rest = tag[end + 1..].trim_start();
    }
    false
}

fn decode(s: &str) -> String {
    let s = NUMERIC.replace_all(s, |c: &regex::Captures| {
        let n = &c[1];
        let code = match n.strip_prefix('x') {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => n.parse().ok(),
        };
        code.and_then(char::from_u32).map(String::from).unwrap_or_default()
    });
    s.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_paragraphs_without_markup() {
        let html = "<html><head><title>19.5. Write Ahead &amp; Log</title><style>p{}</style></head>\
                    <body><h1>WAL</h1><p><code>wal_level</code> (<span>enum</span>) determines&nbsp;how much&#x20;information</p>\
                    <script>x()</script></body></html>";
        let (title, text) = html_to_text(html);
        assert_eq!(title.as_deref(), Some("19.5. Write Ahead & Log"));
        assert_eq!(text, "WAL\n\n`wal_level` (enum) determines how much information");
        let (_, table) = html_to_text("<table><tr><td>columns per table</td><td>1,600</td></tr></table>");
        assert_eq!(table, "columns per table | 1,600 |");
    }

    #[test]
    fn definition_terms_and_reference_rows_name_their_subject_as_code() {
        // A Sphinx signature: the name split over spans, a permalink mark.
        let dt = r##"<dl><dt id="os.getcwd"><span class="sig-prename">os.</span><span class="sig-name">getcwd</span><span>(</span><span>)</span><a class="headerlink" href="#os.getcwd">¶</a></dt><dd><p>Return a string representing the current working directory.</p></dd></dl>"##;
        let (_, text) = html_to_text(dt);
        assert_eq!(
            text,
            "`os.getcwd` ()\n\nReturn a string representing the current working directory."
        );
        let (_, text) =
            html_to_text("<dl><dt>shutil.copytree(src, dst, symlinks=False)</dt><dd>Copy a tree.</dd></dl>");
        assert!(
            text.starts_with("`shutil.copytree` (src, dst, symlinks=False)"),
            "{text}"
        );
        // A declaration's keywords follow the name they declare.
        let dt = r#"<dl><dt id="ConnectionRefusedError"><em class="property"><span class="pre">exception</span><span class="w"> </span></em><span class="sig-name descname"><span class="pre">ConnectionRefusedError</span></span></dt><dd><p>Raised when a connection attempt is refused.</p></dd></dl>"#;
        assert!(
            html_to_text(dt).1.starts_with("`ConnectionRefusedError` (exception)\n"),
            "{:?}",
            html_to_text(dt)
        );
        let (_, text) = html_to_text("<dl><dt>class queue.PriorityQueue(maxsize=0)</dt><dd>A queue.</dd></dl>");
        assert!(
            text.starts_with("`queue.PriorityQueue` (maxsize=0) (class)\n"),
            "{text}"
        );
        let (_, text) = html_to_text("<dl><dt>new archive (B)</dt></dl>");
        assert_eq!(text, "new archive (B)");
        let (_, text) = html_to_text("<dl><dt>int CO_NESTED</dt></dl>");
        assert_eq!(text, "`CO_NESTED` (int)");
        for prose in [
            "not NULL",
            "via OpenSSL",
            "see db.auto.conf",
            "bool NULL",
            "provisional API",
        ] {
            assert_eq!(html_to_text(&format!("<dl><dt>{prose}</dt></dl>")).1, prose);
        }
        // Prose that opens in lower case is no declaration.
        let (_, text) = html_to_text("<dl><dt>if the server is busy</dt></dl>");
        assert_eq!(text, "if the server is busy");
        let (_, text) = html_to_text("<dl><dt>see below</dt></dl>");
        assert_eq!(text, "see below");
        let (_, text) = html_to_text("<dl><dt><span>--sort-keys</span></dt><dd>Sort the output.</dd></dl>");
        assert!(text.starts_with("`--sort-keys`\n"), "{text}");
        // Already code (a setting with its type), or prose: kept.
        let (_, text) = html_to_text("<dl><dt><code>wal_level</code> (<code>enum</code>)</dt></dl>");
        assert_eq!(text, "`wal_level` (`enum`)");
        let (_, text) = html_to_text("<dl><dt>See also the notes below</dt></dl>");
        assert_eq!(text, "See also the notes below");
        // A reference table's first column; a value table's prose stays.
        let (_, text) = html_to_text("<table><tr><td>%j</td><td>Day of the year.</td></tr></table>");
        assert_eq!(text, "`%j` | Day of the year. |");
        let (_, text) = html_to_text("<table><tr><td>PYTHONPATH</td><td>Module search path.</td></tr></table>");
        assert_eq!(text, "`PYTHONPATH` | Module search path. |");
        let (_, text) = html_to_text("<p>Use <var>num</var> seconds.</p>");
        assert_eq!(text, "Use `num` seconds.");
    }
}
