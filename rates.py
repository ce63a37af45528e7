"""How often each label is predicted in each part of a labelled corpus: per value of a column predict.py carried
(--keep-columns: a year, a community, a source), each label's rate with its 95% Wilson interval, and which labels'
rates differ between the values beyond chance.

    python predict.py MODEL --input posts.jsonl --keep-columns year --output labels.jsonl
    python rates.py labels.jsonl --by year --output rates.tsv --plot rates.png
    python rates.py labels.jsonl --by year --compare 2019 2020 --labels anger joy --format markdown

The rate of a label in a part: the texts predicted with it over the part's scored texts (a row predict.py could not
score counts in no part; an empty value is a part of its own, shown as "(empty)"). The test of difference, per
label: with --compare A B, the two parts' rates against each other (Fisher's exact test, two-sided; the output then
has those two parts' rates only); else all the parts at once (the chi-squared test of a label's counts against the
parts, a part with no scored text left out). The p-values of the labels tested are corrected for their number by
Holm's method (a family-wise 5% over the labels).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, fisher_exact, norm

from multilabel import charts, corpus, files, labelled, outputs, tables
from multilabel.files import UserError

PROG = "rates.py"
FORMATS = ("tsv", "markdown", "json")
EMPTY = "(empty)"
LEVEL = 0.95


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        inputs = [outputs.Input(args.labelled, "the labelled corpus"),
                  outputs.Input(corpus.meta_of(args.labelled), "the labelled corpus's summary")]
        outs = [outputs.Output(p, what) for p, what in ((args.output, "the rates (--output)"),
                                                          (args.plot, "the plot (--plot)")) if p]
        with outputs.claim(PROG, inputs, outs):
            lab = labelled.Labelled.open(args.labelled)
            chosen = check_choices(args, lab)
            n, k = count(lab, args.by)
            if args.compare and (missing := [v for v in args.compare if v not in n]):
                raise UserError(f"--compare {missing[0]}: no scored text has {args.by} = {missing[0]!r} (the values: "
                                f"{', '.join(list(n)[:10])}{', ...' if len(n) > 10 else ''})")
            table = rates({v: n[v] for v in args.compare} if args.compare else n, k, chosen, args.by)
            tests = differences(n, k, chosen, args.compare)
            png = plot_png(table, args.by) if args.plot else None  # drawn first: a failure writes nothing
            write(table, tests, args)
            if png:
                files.atomic_write(args.plot, png, "the plot")
        return 0
    except UserError as e:
        return files.fail(PROG, e)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("labelled", type=Path, help="predict.py's --output, made with --keep-columns")
    p.add_argument("--by", required=True, help="the kept column whose values make the parts")
    p.add_argument("--labels", nargs="+", help="only these labels (default: every label)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="test two values' rates against each other (and show only theirs)")
    p.add_argument("--output", type=Path, help="the rates and tests (default: standard output)")
    p.add_argument("--format", choices=FORMATS, help="default: by --output's suffix (.md markdown, .json), else tsv")
    p.add_argument("--plot", type=Path, help="a PNG: each label's rate per value, with its interval")
    return p.parse_args(argv)


def check_choices(args: argparse.Namespace, lab: labelled.Labelled) -> list[str]:
    if args.by not in lab.keep:
        raise UserError(f"--by {args.by}: {lab.path.name} has no kept column {args.by!r} "
                        + (f"(kept: {', '.join(lab.keep)})" if lab.keep else
                           "(none kept: label the corpus with predict.py --keep-columns)"))
    unknown = [n for n in args.labels or [] if n not in lab.labels]
    if unknown:
        raise UserError(f"--labels {unknown[0]}: not one of the model's labels")
    if args.compare and args.compare[0] == args.compare[1]:
        raise UserError(f"--compare {args.compare[0]} {args.compare[1]}: the same value twice")
    return args.labels or lab.labels


def count(lab: labelled.Labelled, by: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Per value of the column (in order of first appearance): its scored texts, and those with each label."""
    n: dict[str, int] = {}
    k: dict[str, dict[str, int]] = {}
    for row in lab.rows():
        if not row.scored:
            continue
        value = row.kept[by] or EMPTY
        n[value] = n.get(value, 0) + 1
        part = k.setdefault(value, dict.fromkeys(lab.labels, 0))
        for name in row.predicted:
            part[name] += 1
    if not n:
        raise UserError(f"{lab.path}: no scored text to count")
    return n, k


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (Wilson 1927), as statsmodels' proportion_confint(method=
    'wilson') gives it."""
    z = float(norm.ppf(1 - (1 - level) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at k = 0 the low end is 0 and at k = n the high end 1, exactly (in floats a hair off, above 0 or below 1)
    return 0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half)


def rates(n: dict[str, int], k: dict[str, dict[str, int]], chosen: list[str], by: str) -> pd.DataFrame:
    rows = []
    for name in chosen:
        for value, total in n.items():
            low, high = wilson(k[value][name], total)
            rows.append({"label": name, by: value, "texts": total, "with_label": k[value][name],
                         "rate": k[value][name] / total, "low": low, "high": high})
    return pd.DataFrame(rows)


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (each at most 1, never below the one before in order)."""
    order = np.argsort(p, kind="stable")
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def differences(n: dict[str, int], k: dict[str, dict[str, int]], chosen: list[str],
                compare: list[str] | None) -> pd.DataFrame:
    """Per label, the test of its rates differing (two values, or all of them), with Holm's correction."""
    rows = []
    for name in chosen:
        if compare:
            a, b = compare
            table = [[k[a][name], n[a] - k[a][name]], [k[b][name], n[b] - k[b][name]]]
            p = float(fisher_exact(table).pvalue)
            rows.append({"label": name, "test": f"Fisher's exact, {a} against {b}",
                         "difference": k[a][name] / n[a] - k[b][name] / n[b], "p": p})
        else:
            table = np.array([[k[v][name], n[v] - k[v][name]] for v in n])
            if len(n) < 2 or table[:, 0].sum() in (0, table.sum()):  # one part, or the label in none or all texts
                p = 1.0
            else:
                p = float(chi2_contingency(table, correction=False).pvalue)
            rows.append({"label": name, "test": f"chi-squared, {len(n)} values",
                         "difference": max(k[v][name] / n[v] for v in n) - min(k[v][name] / n[v] for v in n),
                         "p": p})
    tests = pd.DataFrame(rows)
    tests["p_holm"] = holm(tests.p.tolist())
    tests["differs"] = tests.p_holm < 1 - LEVEL
    return tests


def write(table: pd.DataFrame, tests: pd.DataFrame, args: argparse.Namespace) -> None:
    fmt = args.format or {".md": "markdown", ".json": "json"}.get(args.output.suffix.lower() if args.output else "",
                                                                  "tsv")
    if fmt == "tsv":
        merged = table.merge(tests, on="label")
        buf = io.StringIO()
        merged.to_csv(buf, sep="\t", index=False, lineterminator="\n", float_format="%.6g")
        text = buf.getvalue()
    elif fmt == "json":
        text = json.dumps({"by": args.by, "level": LEVEL, "rates": table.to_dict("records"),
                           "tests": tests.to_dict("records")}, indent=1, ensure_ascii=False) + "\n"
    else:
        wide = table.assign(cell=[f"{r:.3f} [{lo:.3f}, {hi:.3f}]" for r, lo, hi in zip(table.rate, table.low,
                                                                                      table.high, strict=True)])
        wide = wide.pivot(index="label", columns=args.by, values="cell")
        wide = wide.reindex(index=tests.label, columns=list(dict.fromkeys(table[args.by])))
        wide["p (Holm)"] = [f"{p:.3g}" + (" *" if d else "") for p, d in zip(tests.p_holm, tests.differs,
                                                                            strict=True)]
        texts = ", ".join(f"{v}: {t}" for v, t in dict(zip(table[args.by], table.texts, strict=True)).items())
        text = (f"Rates by {args.by}, 95% Wilson intervals (texts: {texts}); {tests.test.iloc[0]} per label, "
                f"Holm-corrected over {len(tests)} labels (* under 0.05).\n\n{tables.markdown(wide)}\n")
    if args.output:
        files.atomic_write(args.output, text, "the rates")
        print(f"{PROG}: {len(tests)} labels over {table[args.by].nunique()} values of {args.by}; "
              f"{int(tests.differs.sum())} differ (Holm, 5%); wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def plot_png(table: pd.DataFrame, by: str) -> bytes:
    """Each label's rate per value of the column, with its interval."""
    plt = charts.pyplot()
    values = list(dict.fromkeys(table[by]))
    labels = list(dict.fromkeys(table.label))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(labels) * len(values) ** 0.5 + 3), 4.5))
    width = 0.8 / len(values)
    x = np.arange(len(labels))
    for i, value in enumerate(values):
        part = table[table[by] == value].set_index("label").loc[labels]
        ax.bar(x + (i - (len(values) - 1) / 2) * width, part.rate, width,
               yerr=[part.rate - part.low, part.high - part.rate], capsize=2, label=f"{by} = {value}")
    ax.set_xticks(x, labels, rotation=60, ha="right")
    ax.set_ylabel("share of texts predicted with the label")
    ax.set_title(f"Label rates by {by}, 95% Wilson intervals")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return charts.png(fig)


if __name__ == "__main__":
    sys.exit(main())
