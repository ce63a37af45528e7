"""Which words mark a label across a labelled corpus: keyness, the corpus linguist's way. For each label, the words
more frequent in the texts predict.py gave that label than in the rest of the corpus, by log-likelihood G2 (Rayson &
Garside 2000: the statistic of UCREL's log-likelihood calculator and Wmatrix), with its p-value, and the effect size
Log Ratio (Hardie 2014: log2 of the ratio of the two relative frequencies).

    python keywords.py labels.tsv --output keywords.tsv --plot keywords.png     # the corpus: the one labelled
    python keywords.py labels.tsv --input corpus.jsonl --labels anger joy --top 50 --format markdown
    python keywords.py labels.tsv --explanations expl.jsonl --output keywords.tsv   # + each word's mean number

    python keywords.py labels.3-of-8.tsv --counts counts.3-of-8.json   # an array task: count one shard's part
    python keywords.py --from-counts counts.*.json --output keywords.tsv  # then add the parts up

LABELS is predict.py's --output (finished, with its .meta.json); the texts are read from the corpus it labelled
(--input, default: the path predict.py recorded), with the same reader and columns, and refused unless its SHA-256 is
the one predict.py recorded. A row predict.py could not score is not counted. Words: multilabel/words.py (stated in
docs/findings.md). A word is listed for a label when it is over-represented in the label's texts and its G2 passes the
cut-off: p < --alpha / the number of distinct words (Bonferroni), or --alpha as it is with --no-correction.
Ranked by G2; ties by the word. With --explanations (explain.py's output on the same corpus), each keyword's mean
number for the label over its occurrences in the texts explained for it: whether the model used the word.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2

from multilabel import attribution, charts, corpus, files, labelled, options, outputs, tables, words
from multilabel.files import UserError

PROG = "keywords.py"
FORMATS = ("tsv", "markdown", "json")
COUNTS_KIND = "keywords.py counts"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_options(args)
        with outputs.claim(PROG, keyword_inputs(args), keyword_outputs(args)):
            counts = add_up(args.from_counts) if args.from_counts else count(args)
            if args.counts:
                files.write_json(args.counts, counts, "the counts")
                print(f"{PROG}: counted {counts['texts']} texts, {counts['tokens']} words; wrote {args.counts}",
                      file=sys.stderr)
                return 0
            table = keywords(counts, args.labels or counts["labels"], args.alpha, not args.no_correction, args.top)
            if args.explanations:
                table = with_mean_numbers(table, args.explanations)
            png = plot_png(table) if args.plot else None  # drawn first: a failure writes nothing
            write(table, args)
            if png:
                files.atomic_write(args.plot, png, "the plot")
        return 0
    except UserError as e:
        return files.fail(PROG, e)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("labelled", nargs="?", type=Path, help="predict.py's --output (labels.tsv, .csv or .jsonl)")
    p.add_argument("--input", help="the corpus labelled (default: the path predict.py recorded)")
    p.add_argument("--labels", nargs="+", help="only these labels (default: every label)")
    p.add_argument("--top", type=options.WHOLE_1, default=25, help="words listed a label, at most")
    p.add_argument("--alpha", type=options.Range(float, 0, 1, low_open=True, high_open=True), default=0.05,
                   help="the significance level, before the Bonferroni correction")
    p.add_argument("--no-correction", action="store_true", help="the cut-off is --alpha itself (no Bonferroni)")
    p.add_argument("--output", type=Path, help="the keywords (default: standard output)")
    p.add_argument("--format", choices=FORMATS, help="default: by --output's suffix (.md markdown, .json), else tsv")
    p.add_argument("--plot", type=Path, help="a PNG: each label's top words by G2, bars of Log Ratio")
    p.add_argument("--explanations", type=Path, help="explain.py's output: each keyword's mean number, per label")
    p.add_argument("--counts", type=Path, help="only count, into this JSON file (a shard's part; --from-counts adds)")
    p.add_argument("--from-counts", nargs="+", type=Path, metavar="COUNTS", help="add up parts counted by --counts")
    options.describe_ranges(p)
    return p.parse_args(argv)


def check_options(args: argparse.Namespace) -> None:
    if bool(args.labelled) == bool(args.from_counts):
        raise UserError("give a labelled corpus (predict.py's --output) or --from-counts COUNTS..., one of the two")
    if args.counts and (args.from_counts or args.output or args.plot or args.explanations):
        raise UserError("--counts only counts: it takes no --from-counts, --output, --plot or --explanations")


def keyword_inputs(args: argparse.Namespace) -> list[outputs.Input]:
    given = [outputs.Input(args.explanations, "the explanations (--explanations)")] if args.explanations else []
    if args.from_counts:
        return given + [outputs.Input(p, "a part's counts (--from-counts)") for p in args.from_counts]
    found = [outputs.Input(args.labelled, "the labelled corpus"),
             outputs.Input(corpus.meta_of(args.labelled), "the labelled corpus's summary")]
    source = Path(args.input) if args.input else corpus.recorded_input(args.labelled)
    return given + found + ([outputs.Input(source, "the corpus labelled")] if source else [])


def keyword_outputs(args: argparse.Namespace) -> list[outputs.Output]:
    return [outputs.Output(p, what) for p, what in ((args.output, "the keywords (--output)"),
                                                    (args.plot, "the plot (--plot)"),
                                                    (args.counts, "the counts (--counts)")) if p]


# ------------------------------------------------------------------------------------------ counting


def count(args: argparse.Namespace) -> dict:
    """Words counted in the scored texts of a labelled corpus: in all of them, and in those with each label."""
    lab = labelled.Labelled.open(args.labelled)
    rows = corpus.recorded_rows(lab.path, lab.meta["run"], args.input)
    for _ in range(lab.first_row):  # a shard's part: its rows start later in the corpus
        next(rows, None)
    in_label = {n: Counter() for n in lab.labels}
    every, texts, tokens = Counter(), dict.fromkeys(lab.labels, 0), dict.fromkeys(lab.labels, 0)
    scored = skipped = read = 0
    for got in lab.rows():
        read += 1
        row = next(rows, None)
        if row is None or row.line != got.line:
            raise UserError(f"{lab.path}: its row of line {got.line} is "
                            f"{'past the end' if row is None else f'line {row.line}'} of its corpus: not its rows")
        if not got.scored:
            skipped += 1
            continue
        found = Counter(words.words(row.text))
        scored += 1
        every.update(found)
        for name in got.predicted:
            in_label[name].update(found)
            texts[name] += 1
            tokens[name] += sum(found.values())
    if read != lab.meta["rows"]:
        raise UserError(f"{lab.path}: {read} rows, its summary says {lab.meta['rows']}: the file was changed or cut")
    return {"kind": COUNTS_KIND, "labels": lab.labels, "source": str(lab.path), "texts": scored,
            "not_scored": skipped, "tokens": sum(every.values()), "label_texts": texts, "label_tokens": tokens,
            "words": {w: [n, {k: c[w] for k, c in in_label.items() if c[w]}] for w, n in sorted(every.items())}}


def add_up(paths: list[Path]) -> dict:
    """The parts' counts, added up: the same as counting the whole corpus at once (the words sorted, as there)."""
    parts = [read_counts(p) for p in paths]
    for p, part in zip(paths[1:], parts[1:], strict=True):
        if part["labels"] != parts[0]["labels"]:
            raise UserError(f"{p}: counted with other labels than {paths[0].name}: not parts of one corpus")
    sources = [part["source"] for part in parts]
    if len(set(sources)) != len(sources):
        raise UserError(f"{paths[sources.index(next(s for s in sources if sources.count(s) > 1))]}: a part given "
                        f"twice (the same labelled file)")
    words_ = {}
    for part in parts:
        for w, (n, by) in part["words"].items():
            mine = words_.setdefault(w, [0, {}])
            mine[0] += n
            for k, c in by.items():
                mine[1][k] = mine[1].get(k, 0) + c
    labels = parts[0]["labels"]
    return {"kind": COUNTS_KIND, "labels": labels, "source": " + ".join(sources),
            **{k: sum(p[k] for p in parts) for k in ("texts", "not_scored", "tokens")},
            **{k: {n: sum(p[k][n] for p in parts) for n in labels} for k in ("label_texts", "label_tokens")},
            "words": {w: [n, dict(sorted(by.items(), key=lambda kv: labels.index(kv[0])))]
                      for w, (n, by) in sorted(words_.items())}}


def read_counts(path: Path) -> dict:
    counts = files.read_json(path, "a part's counts")
    if not isinstance(counts, dict) or counts.get("kind") != COUNTS_KIND:
        raise UserError(f"{path}: not counts written by keywords.py --counts")
    return counts


# ------------------------------------------------------------------------------------------ keyness


def g2(a: float, b: float, c: float, d: float) -> float:
    """Log-likelihood of a word's frequencies a (of c words) in one part and b (of d words) in the other (Rayson &
    Garside 2000): 2 * sum(O ln(O/E)), with E the frequency expected were the word as frequent in both; 0 ln 0 = 0."""
    e1, e2 = c * (a + b) / (c + d), d * (a + b) / (c + d)
    return 2 * ((a * math.log(a / e1) if a else 0.0) + (b * math.log(b / e2) if b else 0.0))


def log_ratio(a: float, b: float, c: float, d: float) -> float:
    """log2 of the ratio of the relative frequencies (Hardie 2014); a zero frequency counted as 0.5, as Hardie does."""
    return math.log2((max(a, 0.5) / c) / (max(b, 0.5) / d))


def keywords(counts: dict, chosen: list[str], alpha: float, correct: bool, top: int) -> pd.DataFrame:
    """Per label, its keywords: over-represented in its texts, G2 past the cut-off, ranked by G2 (then the word)."""
    unknown = [n for n in chosen if n not in counts["labels"]]
    if unknown:
        raise UserError(f"--labels {unknown[0]}: not one of the model's labels ({', '.join(counts['labels'][:10])}"
                        f"{', ...' if len(counts['labels']) > 10 else ''})")
    cut = alpha / max(len(counts["words"]), 1) if correct else alpha
    rows = []
    for name in chosen:
        c, d = counts["label_tokens"][name], counts["tokens"] - counts["label_tokens"][name]
        found = []
        for w, (n, by) in counts["words"].items():
            a = by.get(name, 0)
            b = n - a
            if not a or not d or a / c <= b / d:
                continue
            score = g2(a, b, c, d)
            p = float(chi2.sf(score, 1))
            if p < cut:
                found.append((-score, w, a, b, p))
        for rank, (neg, w, a, b, p) in enumerate(sorted(found)[:top], 1):
            rows.append({"label": name, "rank": rank, "word": w, "in_label": a, "in_rest": b,
                         "per_million_label": 1e6 * a / c, "per_million_rest": 1e6 * b / d,
                         "log_ratio": log_ratio(a, b, c, d), "g2": -neg, "p": p})
    table = pd.DataFrame(rows, columns=["label", "rank", "word", "in_label", "in_rest", "per_million_label",
                                        "per_million_rest", "log_ratio", "g2", "p"])
    table.attrs.update(cut=cut, correct=correct, alpha=alpha, words=len(counts["words"]),
                       texts=counts["texts"], label_texts=counts["label_texts"], chosen=chosen)
    return table


def with_mean_numbers(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The table with each keyword's mean number for its label (explain.py's, over the word's occurrences in the
    texts explained for that label; empty where it has none)."""
    total: dict[tuple[str, str], list[float]] = {}
    for e in attribution.read_lines(path):
        if e["label"] is not None:
            for word, _, _, number in e["words"]:
                total.setdefault((e["label"], words.form(word)), []).append(number)
    means = [float(np.mean(total[k])) if k in total else float("nan") for k in zip(table.label, table.word,
                                                                                  strict=True)]
    out = table.assign(mean_number=means)
    out.attrs = table.attrs
    return out


# ------------------------------------------------------------------------------------------ writing


def write(table: pd.DataFrame, args: argparse.Namespace) -> None:
    fmt = args.format or {".md": "markdown", ".json": "json"}.get(args.output.suffix.lower() if args.output else "",
                                                                  "tsv")
    cut = (f"p < {table.attrs['alpha']:g} / {table.attrs['words']} distinct words (Bonferroni) = "
           f"{table.attrs['cut']:.3g}" if table.attrs["correct"] else f"p < {table.attrs['alpha']:g} (uncorrected)")
    if fmt == "tsv":
        buf = io.StringIO()
        table.to_csv(buf, sep="\t", index=False, lineterminator="\n", float_format="%.6g")
        text = buf.getvalue()
    elif fmt == "json":
        records = table.astype(object).where(table.notna(), None).to_dict("records")  # NaN: null
        text = json.dumps({"cut_off": cut, "texts": table.attrs["texts"], "label_texts": table.attrs["label_texts"],
                           "keywords": records}, indent=1, ensure_ascii=False) + "\n"
    else:
        blocks = [f"Keywords per label: G2 (log-likelihood), {cut}; over-represented words only, ranked by G2. "
                  f"{table.attrs['texts']} texts."]
        for name in table.attrs["chosen"]:
            part = table[table.label == name].drop(columns="label").set_index("rank")
            blocks.append(f"### {name} ({table.attrs['label_texts'][name]} texts)\n\n" +
                          (tables.markdown(part, "{:.3g}") if len(part) else "(no word past the cut-off)"))
        text = "\n\n".join(blocks) + "\n"
    if args.output:
        files.atomic_write(args.output, text, "the keywords")
        print(f"{PROG}: {len(table)} keywords for {table.label.nunique()} of {len(table.attrs['chosen'])} labels "
              f"({cut}); wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def plot_png(table: pd.DataFrame, per_label: int = 10) -> bytes:
    """Each label's top words by G2, as bars of their Log Ratio."""
    plt = charts.pyplot()
    chosen = [n for n in table.attrs["chosen"] if (table.label == n).any()] or table.attrs["chosen"][:1]
    cols = min(3, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(chosen):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, chosen, strict=False):
        part = table[table.label == name].head(per_label)[::-1]
        ax.barh(part.word, part.log_ratio, color="tab:blue")
        ax.set_title(f"{name}: top {len(part)} by G2", fontsize="medium")
        ax.set_xlabel("Log Ratio (log2 of the relative frequencies)")
    fig.tight_layout()
    return charts.png(fig)


if __name__ == "__main__":
    sys.exit(main())
