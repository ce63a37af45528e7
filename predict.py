"""Label texts with a model saved by bert_model.py: a few on the command line, or a corpus of any size.

    python predict.py MODEL "I love this!" "What on earth?"
    python predict.py MODEL --threshold tuned "I love this!"
    python predict.py MODEL --input corpus.txt --output labels.tsv          # one text a line
    python predict.py MODEL --input posts.parquet --text-column body --id-column post_id --output labels.jsonl
    python predict.py MODEL --input corpus.txt --output labels.tsv --shard 3/8 --resume   # part 3 of 8
    python predict.py --merge --output labels.tsv                           # the 8 parts, in input order

MODEL is the SAVE_FP folder bert_model.py wrote (a Hugging Face model folder with goemotions.json).
A label is predicted when its sigmoid score is strictly above the threshold: the model's own (0.3
unless trained otherwise), a number given with --threshold, or the per-label thresholds tuned on dev
(--threshold tuned). The input is read, tokenized and scored a chunk at a time and the output written
as it goes, so memory does not grow with the corpus. A row that cannot be scored (empty, broken, bad
bytes) still gets an output row, with the reason in the `error` column. --output FILE appears under
its name only when complete; --resume continues a stopped run after its last complete chunk. The corpus
(its rows, the output streamed, resumed, sharded and merged) is multilabel/corpus.py's. Details: docs/predict.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from multilabel import corpus, decide, encoder, files, labelled, lengths, options, outputs
from multilabel.checkpoint import EXIT_REQUEUE, StopSignals
from multilabel.corpus import Row
from multilabel.files import UserError

PROG = "predict.py"
CHUNK_SIZE = corpus.CHUNK_SIZE  # texts read, tokenized, scored and written at a time: memory is bounded by this
BATCH_SIZE = 64          # texts per forward pass (sorted by length within a chunk)
THRESHOLD_CHOICE = replace(options.THRESHOLD, words=("model", "tuned"))  # --threshold: a number, or the model's own


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.merge:
            return corpus.merge_only(args, PROG)
        return label(args)
    except UserError as e:
        return files.fail(PROG, e)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="the model folder bert_model.py saved (SAVE_FP)")
    p.add_argument("texts", nargs="*", help="texts to classify (before or after the options)")
    corpus.add_input_options(p)
    p.add_argument("--keep-columns", nargs="+", default=[], metavar="COLUMN",
                   help="input columns carried into the output (a year, a community: rates.py compares by them)")
    p.add_argument("--output", type=Path, help="write here (TSV, CSV or JSONL by suffix), complete or not at all")
    p.add_argument("--format", choices=["table", "tsv", "csv", "jsonl"],
                   help="default: from --output's suffix; a table on standard output")
    p.add_argument("--top-k", type=options.WHOLE_0,
                   help="only the K highest scores (default: every label's; the table: 3)")
    p.add_argument("--threshold", type=THRESHOLD_CHOICE, default="model",
                   help="'model' (the saved one, default), 'tuned' (per label, from dev) or a number")
    p.add_argument("--at-least-one", action="store_true",
                   help="where no label passes its threshold, predict the top one (off, as in the paper)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"], default="fp32",
                   help="fp32 (the pipeline's scores); bf16 autocast; fp16 (--cuda); int8: ONNX Runtime, CPU")
    p.add_argument("--cuda", action="store_true")
    p.add_argument("--threads", type=options.WHOLE_1,
                   help="CPU threads (default: torch's, i.e. OMP_NUM_THREADS or the cores)")
    p.add_argument("--batch-size", type=options.WHOLE_1, default=BATCH_SIZE)
    p.add_argument("--chunk-size", type=options.WHOLE_1, default=CHUNK_SIZE,
                   help="texts read, scored and written at a time")
    corpus.add_run_options(p)
    options.describe_ranges(p)
    return p.parse_intermixed_args(argv)


def check_options(args: argparse.Namespace) -> None:
    if not args.model:
        raise UserError("no model: give the model folder bert_model.py saved, then the texts or --input FILE")
    if args.cuda and not torch.cuda.is_available():
        raise UserError("--cuda given but PyTorch sees no CUDA device")
    if args.precision == "fp16" and not args.cuda:
        raise UserError("--precision fp16 needs --cuda (on a CPU use bf16 or int8)")
    if args.precision == "int8" and args.cuda:
        raise UserError("--precision int8 is the CPU path (ONNX Runtime); on a GPU use fp16 or bf16")
    if args.input and args.texts:
        raise UserError("give texts on the command line or --input, not both")
    if not args.input and not args.texts:
        raise UserError("no texts: give some on the command line, --input FILE, or --input - for standard input")
    if args.input and args.input != "-":  # read more than once (checked, counted, checksummed): a file, not a pipe
        if not Path(args.input).exists():
            raise UserError(f"{args.input}: no such file")
        files.regular_file(args.input, " (a stream: --input - reads standard input, once)")
    if args.keep_columns and not args.input:
        raise UserError("--keep-columns needs --input FILE (the columns are the input's)")
    if args.resume and not args.output:
        raise UserError("--resume needs --output (standard output cannot be resumed)")
    if args.shard and (not args.input or args.input == "-"):
        raise UserError("--shard needs --input FILE (standard input cannot be split)")


# ------------------------------------------------------------------------------------------ the run


def label(args: argparse.Namespace) -> int:
    check_options(args)
    shard = corpus.parse_shard(args.shard)
    fmt = corpus.output_format(str(args.output) if args.output else None, args.format)
    top_k = args.top_k if args.top_k is not None else (3 if fmt == "table" else 0)
    out_path = corpus.shard_path(args.output, shard) if args.output and shard else args.output
    with outputs.claim(PROG, label_inputs(args), corpus.declared(out_path)):
        return label_into(args, out_path, fmt, top_k, shard)


def label_into(args: argparse.Namespace, out_path: Path | None, fmt: str, top_k: int,
               shard: tuple[int, int] | None) -> int:
    """label(), with the outputs checked and locked."""
    if corpus.complete(out_path, args.resume):
        print(f"{PROG}: {out_path} is already complete", file=sys.stderr)
        return 0
    if args.input and args.input != "-":  # a missing column or an unreadable file, before the model loads
        next(iter(rows_of(args)), None)
    device = torch.device("cuda" if args.cuda else "cpu")
    scorer, tokenizer, settings = load_scorer(args, device)
    if args.input == "-":  # UTF-16 or binary input refused before the output begins (its start peeked, not read)
        files.check_encoding("-", sys.stdin.buffer)
    try:
        return run(args, scorer, tokenizer, settings, fmt, top_k, out_path, shard, device)
    except OSError as e:
        raise UserError(files.write_error(Path(e.filename or out_path or "-"), "the output", 0, e)) from None


def run(args: argparse.Namespace, scorer, tokenizer, settings: dict, fmt: str, top_k: int, out_path: Path | None,
        shard: tuple[int, int] | None, device: torch.device) -> int:
    """Read, score and write a chunk at a time, from where a stopped run got to; exit 99 on a stop signal."""
    labels, thresholds = settings["labels"], decide.thresholds(args.threshold, settings, args.model)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    top_k = min(top_k, len(labels))  # --top-k beyond the labels: every label, ranked
    reading = lengths.Reading.of(settings)
    span = corpus.Span.of(lambda: rows_of(args), args.chunk_size, shard)
    this_run = run_settings(args, fmt, top_k) if out_path else None  # what a resumed run and a shard's parts share
    keep = tuple(args.keep_columns)
    labelled.check_keep(keep, labels, top_k, fmt)
    out = open_output(args, out_path, this_run, labelled.header(fmt, labels, top_k, keep))
    stop = StopSignals() if out_path else None
    progress = corpus.Progress(PROG, span.rows, out.counts.rows)
    for chunk in span.chunks(rows_of(args), out.chunks_done):
        encoded = encoder.encode(tokenizer, [r.text for r in chunk if not r.error], reading)
        scores = encoder.score(scorer, encoded, args.batch_size, encoder.pad_id(tokenizer), device, amp,
                               reading.pooled_by)
        note_capped(chunk, encoded, reading)
        out.write(labelled.format_chunk(chunk, scores, labels, thresholds, top_k, fmt, args.at_least_one), chunk)
        progress.update(len(chunk))
        if stop and stop.signal:
            progress.close()
            print(f"{PROG}: {out.stopped(stop.signal, EXIT_REQUEUE)}", file=sys.stderr)
            return EXIT_REQUEUE
    progress.close()
    seconds = time.monotonic() - progress.start
    if out_path:
        out.finish({**summary(args, labels, thresholds, fmt, top_k), "run": this_run, **span.part(out.chunks_done)})
    note = "; at least one label per text (--at-least-one)" if args.at_least_one else ""
    print(f"{PROG}: {out.counts.summary()}; {progress.rate():.1f} texts/s over {seconds:.1f} s{note}"
          + (f"; wrote {out_path}" if out_path else ""), file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------ its parts


def rows_of(args: argparse.Namespace) -> Iterator[Row]:
    """The texts on the command line, or --input's rows (corpus.read_rows), bad ones carried."""
    if args.texts:
        return (corpus.checked(i, str(i), t) for i, t in enumerate(args.texts, 1))
    return corpus.read_rows(args.input, args.input_format, args.text_column, args.id_column,
                            tuple(args.keep_columns))


def open_output(args: argparse.Namespace, out_path: Path | None, run: dict | None,
                head: str) -> corpus.Output | corpus.Stream:
    """--output (resumed where a stopped run got to, with the same settings and shard), else standard output."""
    if not out_path:
        return corpus.Stream(head)
    out = corpus.Output(out_path, {**run, "shard": args.shard}, head, args.resume)
    if out.chunks_done:
        print(f"{PROG}: {out.resuming()}", file=sys.stderr)
    return out


def summary(args: argparse.Namespace, labels: list[str], thresholds: np.ndarray, fmt: str, top_k: int) -> dict:
    """The output's meta.json, less what corpus.Output and merge add (the run, its chunks, the counts)."""
    return {"model": str(args.model), "input": args.input, "shard": args.shard, "precision": args.precision,
            "thresholds": dict(zip(labels, [round(float(t), 6) for t in thresholds], strict=True)),
            "at_least_one": args.at_least_one, "format": fmt, "top_k": top_k}


def load_scorer(args: argparse.Namespace, device: torch.device) -> tuple:
    """(scorer, tokenizer, settings): the model in PyTorch, or its INT8 export in ONNX Runtime."""
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer, settings = encoder.load(args.model, device)
    if args.precision != "int8":
        return model, tokenizer, settings
    onnx_path, exported = encoder.export_int8(model, Path(args.model))
    if exported:
        print(f"{PROG}: exported the INT8 model to {onnx_path} (once; the PyTorch files are untouched)",
              file=sys.stderr)
    return encoder.onnx_session(onnx_path, torch.get_num_threads()), tokenizer, settings


def label_inputs(args: argparse.Namespace) -> list[outputs.Input]:
    """The model folder (loaded whole: an output inside it would change its fingerprint) and the input file."""
    found = [outputs.Input(Path(args.model), "the model folder", folder=True)]
    if args.input and args.input != "-":
        found.append(outputs.Input(Path(args.input), "the input (--input)"))
    return found


def run_settings(args: argparse.Namespace, fmt: str, top_k: int) -> dict:
    """What a resumed run must share with the run it continues, and the shards of one run with one another: the
    model and the input by content (SHA-256), and every option that shapes the output."""
    source = Path(args.input).resolve() if args.input and args.input != "-" else None
    return {"model": str(Path(args.model).resolve()), "model_sha256": encoder.fingerprint(Path(args.model)),
            "input": str(source or args.input or args.texts), "input_size": source.stat().st_size if source else None,
            "input_sha256": files.sha256(source) if source else None,
            **{k: getattr(args, k) for k in ("input_format", "text_column", "id_column", "threshold", "at_least_one",
                                             "precision", "batch_size", "chunk_size")},
            **({"keep_columns": args.keep_columns} if args.keep_columns else {}),  # (older outputs: none kept)
            "format": fmt, "top_k": top_k}


def note_capped(chunk: list[Row], encoded: encoder.Encoded, reading: lengths.Reading) -> None:
    """A text read in windows but longer than --max-windows of them is scored on what was read, and its row says so
    (in the error column; its scores are there)."""
    if reading.long_texts != "windows":
        return
    scored = iter(encoded.capped)
    for row in chunk:
        if not row.error and (unread := next(scored)):
            row.note = f"long text: read its first {reading.max_windows} windows, {unread} tokens unread"


if __name__ == "__main__":
    sys.exit(main())
