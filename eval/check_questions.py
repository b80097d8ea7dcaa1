#!/usr/bin/env python3
"""Checks a RAG question set against the pages of its corpus.

    python3 eval/check_questions.py --root /usr/share/doc/python3.11/html eval/python311-rag.jsonl

Each line of the JSONL file is one question:
  {"id": "py001", "split": "dev", "kind": "function", "question": "...",
   "answers": ["os.getcwd"], "pages": ["library/os.html"]}
An unanswerable question has "kind": "unanswerable", "answers": [] and
"pages": [].

What it checks, and exits 1 on the first kind of failure it prints:
  - every line parses, has the fields above, ids are unique, the split is
    one of --splits;
  - an answerable question names at least one answer and one page, every
    page exists under --root, and at least one accepted answer occurs in the
    text of at least one of its pages on word boundaries (HTML stripped,
    case and whitespace ignored, "128 MB" = "128MB"), the same rule
    `upshift eval rag` matches answers with;
  - an unanswerable question has no answers and no pages.
It prints per split how many answerable and unanswerable questions there are.
"""

import argparse
import collections
import html.parser
import json
import os
import re
import sys

FIELDS = {"id", "split", "kind", "question", "answers", "pages"}


# Inline elements join their text to the next ("os." + "getcwd"); any other
# tag separates words.
INLINE = {"a", "abbr", "b", "cite", "code", "em", "i", "kbd", "samp", "small", "span", "strong", "sub", "sup", "tt", "var"}


class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        if tag not in INLINE:
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.skip:
            self.skip -= 1
        if tag not in INLINE:
            self.parts.append(" ")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def normalise(text):
    """Lower case, one space between words, no space between a number and its unit."""
    text = re.sub(r"\s+", " ", text.replace("`", "").lower())
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)
    return re.sub(r"(\d) +(?=[a-z%])", r"\1", text)


def page_text(path):
    parser = _Text()
    with open(path, encoding="utf-8", errors="replace") as f:
        parser.feed(f.read())
    return normalise("".join(parser.parts))


def occurs(answer, text):
    needle = normalise(answer.strip())
    if re.fullmatch(r"-?[\d.]+", needle):
        # A number only needs to stand apart from other digits: 4 is in 4mb.
        pattern = r"(?<!\d)" + re.escape(needle) + r"(?!\d|\.\d)"
    else:
        pattern = r"(?<![\w])" + re.escape(needle) + r"(?![\w])"
    return re.search(pattern, text) is not None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="directory the pages are relative to")
    ap.add_argument("--splits", default="", help="comma-separated allowed splits (default: any)")
    ap.add_argument("file")
    args = ap.parse_args()
    allowed = {s for s in args.splits.split(",") if s}
    errors, seen, cache = [], set(), {}
    counts = collections.Counter()
    with open(args.file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                q = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"line {n}: not JSON: {e}")
                continue
            missing = FIELDS - q.keys()
            if missing:
                errors.append(f"line {n}: missing {sorted(missing)}")
                continue
            qid = q["id"]
            if qid in seen:
                errors.append(f"{qid}: duplicate id")
            seen.add(qid)
            if allowed and q["split"] not in allowed:
                errors.append(f"{qid}: split {q['split']!r} not in {sorted(allowed)}")
            if not q["question"].strip():
                errors.append(f"{qid}: empty question")
            if q["kind"] == "unanswerable":
                counts[(q["split"], "unanswerable")] += 1
                if q["answers"] or q["pages"]:
                    errors.append(f"{qid}: unanswerable but has answers or pages")
                continue
            counts[(q["split"], "answerable")] += 1
            if not q["answers"] or not q["pages"]:
                errors.append(f"{qid}: answerable but no answers or no pages")
                continue
            found = False
            for page in q["pages"]:
                path = os.path.join(args.root, page)
                if not os.path.isfile(path):
                    errors.append(f"{qid}: page {page} not found under {args.root}")
                    continue
                if path not in cache:
                    cache[path] = page_text(path)
                if any(occurs(a, cache[path]) for a in q["answers"]):
                    found = True
            if not found:
                errors.append(f"{qid}: none of {q['answers']} occurs in {q['pages']}")
    splits = sorted({s for s, _ in counts})
    for s in splits:
        print(f"{s:10} answerable {counts[(s, 'answerable')]:4}  unanswerable {counts[(s, 'unanswerable')]:4}")
    total_a = sum(v for (s, k), v in counts.items() if k == "answerable")
    total_u = sum(v for (s, k), v in counts.items() if k == "unanswerable")
    print(f"{'all':10} answerable {total_a:4}  unanswerable {total_u:4}")
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"{len(errors)} problem(s)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
