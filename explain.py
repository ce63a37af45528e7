"""Why a text got a label: for each text and each label explained, a number for every word of the text (as given:
its span in the text), by leave-one-word-out occlusion or Integrated Gradients, through the model as predict.py
scores the text (the same windows and pooling). multilabel/attribution.py holds the methods.

    python explain.py MODEL "I hate waiting, thanks a lot [NAME]"               # the top words, on the terminal
    python explain.py MODEL --input corpus.jsonl --output explanations.jsonl    # every text, its predicted labels
    python explain.py MODEL --input corpus.tsv --labels anger joy --method ig --ig-steps 64 --output expl.jsonl
    python explain.py MODEL --input corpus.txt --output expl.jsonl --shard 3/8 --resume   # as predict.py
    python explain.py --merge --output expl.jsonl

Output: JSON lines, one for each text and label explained, in input order: {"id", "line", "label", "score" (the
label's score for the text), "method", "words": [[word as written, start, end, number], ...] (text[start:end] is
the word; code points), "delta" (IG's convergence delta; null for occlusion), "error"}. A text with no label to
explain (none predicted) is one line with "label": null; a row that cannot be read is one line with its reason in
"error", as in predict.py. The output is complete or resumable, sharded and merged as predict.py's
(multilabel/corpus.py). Details, and which method is more faithful: docs/findings.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from multilabel import attribution, corpus, decide, encoder, files, lengths, options, outputs
from multilabel.checkpoint import EXIT_REQUEUE, StopSignals
from multilabel.corpus import Row
from multilabel.files import UserError

PROG = "explain.py"
CHUNK_SIZE = 256  # texts explained and written at a time (each takes many forward passes)
BATCH_SIZE = 64   # windows a forward pass
THRESHOLD_CHOICE = replace(options.THRESHOLD, words=("model", "tuned"))
METHODS = ("occlusion", "ig")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.merge:
            return corpus.merge_only(args, PROG)
        return explain(args)
    except UserError as e:
        return files.fail(PROG, e)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="the model folder bert_model.py saved (SAVE_FP)")
    p.add_argument("texts", nargs="*", help="texts to explain (before or after the options)")
    corpus.add_input_options(p, stdin=False)
    p.add_argument("--output", type=Path, help="the explanations (JSON lines), complete or not at all")
    p.add_argument("--labels", nargs="+", default=["predicted"],
                   help="'predicted' (each text's predicted labels, the default), 'all', or label names")
    p.add_argument("--threshold", type=THRESHOLD_CHOICE, default="model",
                   help="what 'predicted' means: 'model' (the saved threshold), 'tuned' or a number")
    p.add_argument("--method", choices=METHODS, default="occlusion",
                   help="occlusion: leave one word out; ig: Integrated Gradients over the embeddings")
    p.add_argument("--ig-steps", type=options.Range(int, low=2, high=1000), default=50,
                   help="--method ig: steps of the path integral (more: a smaller convergence delta)")
    p.add_argument("--baseline", choices=["pad", "mask"], default="pad",
                   help="--method ig: the text's tokens in the baseline, [PAD] or [MASK] (special tokens kept)")
    p.add_argument("--top", type=options.WHOLE_1, default=5, help="words shown a label on the terminal")
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--threads", type=options.WHOLE_1, help="CPU threads (default: torch's)")
    p.add_argument("--batch-size", type=options.WHOLE_1, default=BATCH_SIZE, help="windows a forward pass")
    p.add_argument("--chunk-size", type=options.WHOLE_1, default=CHUNK_SIZE, help="texts explained at a time")
    corpus.add_run_options(p)
    options.describe_ranges(p)
    return p.parse_intermixed_args(argv)


def check_options(args: argparse.Namespace) -> tuple[int, int] | None:
    if not args.model:
        raise UserError("no model: give the model folder bert_model.py saved, then the texts or --input FILE")
    if args.cuda and not torch.cuda.is_available():
        raise UserError("--cuda given but PyTorch sees no CUDA device")
    if bool(args.input) == bool(args.texts):
        raise UserError("give texts on the command line or --input FILE, one of the two")
    if args.input:
        if args.input == "-":
            raise UserError("--input -: explain.py reads a file (its rows are counted and checksummed)")
        if not Path(args.input).exists():
            raise UserError(f"{args.input}: no such file")
        files.regular_file(args.input)
    if (args.resume or args.shard) and not args.output:
        raise UserError("--resume and --shard need --output")
    if args.output and args.output.suffix.lower() not in (".jsonl", ".ndjson"):
        raise UserError(f"--output {args.output}: explanations are JSON lines (.jsonl)")
    return corpus.parse_shard(args.shard)


# ------------------------------------------------------------------------------------------ the run


def explain(args: argparse.Namespace) -> int:
    shard = check_options(args)
    out_path = corpus.shard_path(args.output, shard) if args.output and shard else args.output
    inputs = [outputs.Input(Path(args.model), "the model folder", folder=True),
              *([outputs.Input(Path(args.input), "the input (--input)")] if args.input else [])]
    with outputs.claim(PROG, inputs, corpus.declared(out_path)):
        if corpus.complete(out_path, args.resume):
            print(f"{PROG}: {out_path} is already complete", file=sys.stderr)
            return 0
        if args.input:
            next(iter(rows_of(args)), None)  # a missing column or an unreadable file, before the model loads
        if args.threads:
            torch.set_num_threads(args.threads)
        device = torch.device("cuda" if args.cuda else "cpu")
        model, tokenizer, settings = encoder.load(args.model, device)
        chosen = chosen_labels(args.labels, settings["labels"])
        return run(args, model, tokenizer, settings, chosen, out_path, shard, device)


def run(args: argparse.Namespace, model, tokenizer, settings: dict, chosen: list[int] | None,  # noqa: ANN001
        out_path: Path | None, shard: tuple[int, int] | None, device: torch.device) -> int:
    """Explain a chunk of texts at a time, written as it goes; exit 99 on a stop signal (resume where it stopped)."""
    labels = settings["labels"]
    thresholds = decide.thresholds(args.threshold, settings, args.model)
    reading = lengths.Reading.of(settings)
    span = corpus.Span.of(lambda: rows_of(args), args.chunk_size, shard)
    this_run = run_settings(args) if out_path else None
    out = open_output(args, out_path, this_run)
    stop = StopSignals() if out_path else None
    progress = corpus.Progress(PROG, span.rows, out.counts.rows)
    for chunk in span.chunks(rows_of(args), out.chunks_done):
        lines = []
        for row in chunk:
            lines += explain_row(args, model, tokenizer, row, reading, labels, thresholds, chosen, device)
        out.write("".join(lines), chunk)
        progress.update(len(chunk))
        if stop and stop.signal:
            progress.close()
            print(f"{PROG}: {out.stopped(stop.signal, EXIT_REQUEUE)}", file=sys.stderr)
            return EXIT_REQUEUE
    progress.close()
    seconds = time.monotonic() - progress.start
    if out_path:
        out.finish({"model": str(args.model), "input": args.input, "shard": args.shard, "method": args.method,
                    "run": this_run, **span.part(out.chunks_done)})
    print(f"{PROG}: {out.counts.summary()}; {progress.rate():.2f} texts/s over {seconds:.1f} s"
          + (f"; wrote {out_path}" if out_path else ""), file=sys.stderr)
    return 0


def explain_row(args: argparse.Namespace, model, tokenizer, row: Row, reading: lengths.Reading,  # noqa: ANN001
                labels: list[str], thresholds: np.ndarray, chosen: list[int] | None,
                device: torch.device) -> list[str]:
    """The output lines of one row: one a label explained, or one saying why there is none."""
    if row.error:
        return [show(attribution.line(row.id, row.line, error=row.error), args)]
    read = attribution.Reading.of(tokenizer, row.text, reading)
    if read.capped:
        row.note = f"long text: read its first {reading.max_windows} windows, {read.capped} tokens unread"
    pooling, pad = reading.pooled_by, encoder.pad_id(tokenizer)
    base = attribution.window_logits(model, read, pad, args.batch_size, device)
    scores = attribution.text_scores(base, pooling)
    targets = chosen if chosen is not None else \
        [int(j) for j in np.flatnonzero(decide.decide(scores[None, :], thresholds)[0])]
    if not targets:
        return [show(attribution.line(row.id, row.line, error=row.note), args)]
    deltas = None
    if args.method == "ig":
        baseline = tokenizer.mask_token_id if args.baseline == "mask" else pad
        numbers, deltas = attribution.integrated_gradients(model, read, targets, pooling, pad, baseline,
                                                              args.ig_steps, args.batch_size, device)
    else:
        numbers = attribution.occlusion(model, read, base, targets, pooling, pad, args.batch_size, device)
    return [show(attribution.line(
        row.id, row.line, labels[j], round(float(scores[j]), 6), args.method,
        [[row.text[s:e], s, e, round(float(v), 6)] for (s, e), v in zip(read.spans, numbers[:, c], strict=True)],
        None if deltas is None else round(float(deltas[c]), 6), row.note), args) for c, j in enumerate(targets)]


def show(text: str, args: argparse.Namespace) -> str:
    """The JSON line; on the terminal (texts on the command line, no --output), the label and its top words."""
    if args.output or args.input:
        return text
    obj = json.loads(text)
    if obj["label"] is None:
        return f"{obj['line']}: {obj['error'] or 'no label predicted'}\n"
    top = sorted(obj["words"], key=lambda w: -w[3])[:args.top]
    words = ", ".join(f"{w} {v:+.3f}" for w, _, _, v in top)
    return f"{obj['line']}: {obj['label']} {obj['score']:.2f}: {words}\n"


# ------------------------------------------------------------------------------------------ its parts


def chosen_labels(choice: list[str], labels: list[str]) -> list[int] | None:
    """None: each text's predicted labels; else the indexes of the labels asked for."""
    if choice == ["predicted"]:
        return None
    if choice == ["all"]:
        return list(range(len(labels)))
    unknown = [n for n in choice if n not in labels]
    if unknown:
        raise UserError(f"--labels {unknown[0]}: not one of the model's labels ({', '.join(labels[:10])}"
                        f"{', ...' if len(labels) > 10 else ''})")
    return [labels.index(n) for n in choice]


def rows_of(args: argparse.Namespace) -> Iterator[Row]:
    if args.texts:
        return (corpus.checked(i, str(i), t) for i, t in enumerate(args.texts, 1))
    return corpus.read_rows(args.input, args.input_format, args.text_column, args.id_column)


def open_output(args: argparse.Namespace, out_path: Path | None, run: dict | None) -> corpus.Output | corpus.Stream:
    if not out_path:
        return corpus.Stream("")
    out = corpus.Output(out_path, {**run, "shard": args.shard}, "", args.resume)
    if out.chunks_done:
        print(f"{PROG}: {out.resuming()}", file=sys.stderr)
    return out


def run_settings(args: argparse.Namespace) -> dict:
    """What a resumed run shares with the run it continues, and the shards of one run with one another."""
    source = Path(args.input).resolve()
    return {"model": str(Path(args.model).resolve()), "model_sha256": encoder.fingerprint(Path(args.model)),
            "input": str(source), "input_size": source.stat().st_size, "input_sha256": files.sha256(source),
            **{k: getattr(args, k) for k in ("input_format", "text_column", "id_column", "labels", "threshold",
                                             "method", "ig_steps", "baseline", "batch_size", "chunk_size")}}


if __name__ == "__main__":
    sys.exit(main())
