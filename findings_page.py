"""A page a person reads: texts with their labels and, label by label, their words coloured by explain.py's numbers
(red raises the label's score, blue lowers it), then keywords.py's and rates.py's tables and plots. One HTML file,
self-contained: its style and its one small script inline, plots embedded, nothing fetched from a network.

    python explain.py MODEL --input corpus.jsonl --output expl.jsonl
    python findings_page.py expl.jsonl --output findings.html [--texts 200] [--keywords keywords.json]
        [--rates rates.json] [--image keywords.png rates.png]

The texts are read from the corpus explain.py explained (the path it recorded, or --input), refused unless its
SHA-256 is the one recorded. --texts: the first N texts explained (a page of a million texts is not a page).
--keywords and --rates: keywords.py's and rates.py's --format json output.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path

from multilabel import attribution, corpus, files, options, outputs
from multilabel.files import UserError

PROG = "findings_page.py"

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
.text { border-top: 1px solid #ddd; padding: .6em 0; }
.meta { color: #666; font-size: 85%; }
.expl { display: none; }
.expl.shown { display: block; }
mark { border-radius: 3px; padding: 0 1px; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
"""

SCRIPT = """
function show(label) {
  document.querySelectorAll('.expl').forEach(function (e) {
    e.classList.toggle('shown', label === '' || e.dataset.label === label);
  });
}
document.getElementById('label').addEventListener('change', function (e) { show(e.target.value); });
show(document.getElementById('label').value);
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("explanations", type=Path, help="explain.py's --output (finished, with its .meta.json)")
    p.add_argument("--output", type=Path, required=True, help="the page (.html)")
    p.add_argument("--input", help="the corpus explained (default: the path explain.py recorded)")
    p.add_argument("--texts", type=options.WHOLE_1, default=200, help="the first N texts explained")
    p.add_argument("--keywords", type=Path, help="keywords.py --format json's output")
    p.add_argument("--rates", type=Path, help="rates.py --format json's output")
    p.add_argument("--image", type=Path, nargs="+", default=[], help="PNG plots to embed (keywords.py, rates.py)")
    options.describe_ranges(p)
    args = p.parse_args(argv)
    try:
        source = Path(args.input) if args.input else corpus.recorded_input(args.explanations)
        inputs = [outputs.Input(args.explanations, "the explanations"),
                  outputs.Input(corpus.meta_of(args.explanations), "the explanations' summary"),
                  *(outputs.Input(x, "a table or plot") for x in [args.keywords, args.rates, *args.image] if x),
                  *([outputs.Input(source, "the corpus explained")] if source else [])]
        with outputs.claim(PROG, inputs, [outputs.Output(args.output, "the page (--output)")]):
            page = build(args)
            files.atomic_write(args.output, page, "the page")
        print(f"{PROG}: wrote {args.output}", file=sys.stderr)
        return 0
    except UserError as e:
        return files.fail(PROG, e)


def build(args: argparse.Namespace) -> str:
    explained = explanations(args.explanations, args.texts)
    texts = corpus_texts(args.explanations, args.input, {line for line, _ in explained})
    labels = sorted({e["label"] for _, es in explained for e in es if e["label"] is not None})
    choose = "".join(f'<option value="{html.escape(n)}">{html.escape(n)}</option>' for n in labels)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>Findings</title>", f"<style>{STYLE}</style></head><body>",
             f"<h1>Findings</h1><p>{len(explained)} texts of {html.escape(args.explanations.name)}. Words coloured "
             "by their number for the label: red raises its score, blue lowers it, the stronger the more.</p>",
             f'<p><label>Label: <select id="label"><option value="">every label</option>{choose}</select></label>'
             "</p>"]
    for line, es in explained:
        parts.append(text_block(line, texts[line], es))
    if args.keywords:
        parts.append(keywords_block(args.keywords))
    if args.rates:
        parts.append(rates_block(args.rates))
    for image in args.image:
        if image.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            raise UserError(f"{image}: not a PNG")
        data = base64.b64encode(image.read_bytes()).decode()
        parts.append(f'<p><img alt="{html.escape(image.name)}" src="data:image/png;base64,{data}"></p>')
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def explanations(path: Path, limit: int) -> list[tuple[int, list[dict]]]:
    """The first `limit` texts' lines of explain.py's output, grouped by text (input line)."""
    out: list[tuple[int, list[dict]]] = []
    for e in attribution.read_lines(path):
        if out and out[-1][0] == e["line"]:
            out[-1][1].append(e)
        elif len(out) == limit:
            break
        else:
            out.append((e["line"], [e]))
    return out


def corpus_texts(path: Path, given: str | None, wanted: set[int]) -> dict[int, str]:
    """The texts of the lines wanted, read as explain.py read them, from the corpus it recorded (checked)."""
    meta_path = corpus.meta_of(path)
    if not meta_path.is_file():
        raise UserError(f"{path}: no {meta_path.name} beside it: not a finished explain.py --output")
    meta = files.read_json(meta_path, "explain.py's summary")
    if not isinstance(meta, dict) or not isinstance(meta.get("run"), dict) or "input_sha256" not in meta["run"]:
        raise UserError(f"{meta_path}: not explain.py's summary")
    found = {}
    for row in corpus.recorded_rows(path, meta["run"], given):
        if row.line in wanted:
            found[row.line] = row.text
            if len(found) == len(wanted):
                break
    return found


def text_block(line: int, text: str, es: list[dict]) -> str:
    first = es[0]
    head = (f'<div class="meta">{html.escape(str(first["id"]))} (line {line}): '
            + (", ".join(f'{html.escape(e["label"])} {e["score"]:.2f}' for e in es if e["label"] is not None)
               or html.escape(first["error"] or "no label predicted")) + "</div>")
    blocks = [f'<div class="expl" data-label="{html.escape(e["label"])}"><b>{html.escape(e["label"])}</b>: '
              f"{highlighted(text, e['words'])}</div>" for e in es if e["label"] is not None]
    plain = "" if blocks else f"<div>{html.escape(text)}</div>"
    return f'<div class="text" data-line="{line}">{head}{"".join(blocks)}{plain}</div>'


def highlighted(text: str, numbered: list) -> str:
    """The text as given, each word in a <mark> coloured by its number (alpha: its share of the largest)."""
    top = max((abs(v) for *_, v in numbered), default=0.0) or 1.0
    out, at = [], 0
    for _, start, end, value in numbered:
        out.append(html.escape(text[at:start]))
        alpha = min(1.0, abs(value) / top)
        colour = f"rgba(220,50,47,{alpha:.2f})" if value > 0 else f"rgba(38,139,210,{alpha:.2f})"
        out.append(f'<mark style="background:{colour}" data-weight="{value}">{html.escape(text[start:end])}</mark>')
        at = end
    out.append(html.escape(text[at:]))
    return "".join(out).replace("\r\n", "<br>").replace("\n", "<br>")


def keywords_block(path: Path) -> str:
    data = files.read_json(path, "keywords.py's json")
    if not isinstance(data, dict) or "keywords" not in data:
        raise UserError(f"{path}: not keywords.py --format json's output")
    rows = "".join(f"<tr><td>{html.escape(k['label'])}</td><td>{k['rank']}</td><td>{html.escape(k['word'])}</td>"
                   f"<td>{k['in_label']}</td><td>{k['in_rest']}</td><td>{k['log_ratio']:.2f}</td>"
                   f"<td>{k['g2']:.1f}</td></tr>" for k in data["keywords"])
    return (f"<h2>Keywords per label</h2><p>{html.escape(data['cut_off'])}</p><table><tr><th>label</th><th>rank</th>"
            f"<th>word</th><th>in label</th><th>in rest</th><th>Log Ratio</th><th>G2</th></tr>{rows}</table>")


def rates_block(path: Path) -> str:
    data = files.read_json(path, "rates.py's json")
    if not isinstance(data, dict) or "rates" not in data:
        raise UserError(f"{path}: not rates.py --format json's output")
    by = data["by"]
    rows = "".join(f"<tr><td>{html.escape(r['label'])}</td><td>{html.escape(str(r[by]))}</td><td>{r['texts']}</td>"
                   f"<td>{r['rate']:.3f}</td><td>{r['low']:.3f} to {r['high']:.3f}</td></tr>" for r in data["rates"])
    tests = "".join(f"<tr><td>{html.escape(t['label'])}</td><td>{html.escape(t['test'])}</td><td>{t['p_holm']:.3g}"
                    f"</td></tr>" for t in data["tests"])
    return (f"<h2>Rates by {html.escape(by)}</h2><table><tr><th>label</th><th>{html.escape(by)}</th><th>texts</th>"
            f"<th>rate</th><th>95% interval</th></tr>{rows}</table><table><tr><th>label</th><th>test</th>"
            f"<th>p (Holm)</th></tr>{tests}</table>")


if __name__ == "__main__":
    sys.exit(main())
