"""INT8 quantization settings for predict.py --precision int8, side by side on a trained model and the test split.

    python bench/int8_variants.py runs/minilm-cpu/model ../shared/data/goemotions [--threads 1]

For fp32 (PyTorch) and each ONNX Runtime dynamic quantization below: test macro F1 at the model's threshold, the
mean and largest |score - fp32 score|, the share of (text, label) decisions that differ from fp32, and texts/s.
Texts are read as the model was trained to read them (its goemotions.json: truncation, or windows pooled), as
predict.py reads them; decisions and macro F1 are multilabel/decide.py's, as predict.py's and training's.
ONNX Runtime's U8S8 kernels on x86 CPUs without VNNI sum pairs of u8 x s8 products in int16 (VPMADDUBSW), which can
saturate with 8-bit weights; reduce_range (7-bit weights) keeps every pair sum within int16 on every CPU. Each
variant is exported into a temporary folder; the model folder is not changed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multilabel import decide, encoder, files, lengths  # noqa: E402

VARIANTS = {"per channel, 8 bits (before)": {"per_channel": True, "reduce_range": False},
            "per channel, reduce_range (7 bits)": {"per_channel": True, "reduce_range": True},
            "per tensor, reduce_range": {"per_channel": False, "reduce_range": True}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("data", type=Path, help="a folder with test.tsv and emotions.txt")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model, tokenizer, settings = encoder.load(args.model, torch.device("cpu"))
        labels = settings["labels"]
        num_labels = len(files.read_labels(args.data / files.LABELS_FILE))
        split = files.read_split(files.split_path(args.data, "test"), num_labels)
    except files.UserError as e:
        return files.fail("int8_variants.py", e)
    gold = files.multi_hot(split.labels, len(labels))
    reading = lengths.Reading.of(settings)
    encoded = encoder.encode(tokenizer, split.texts, reading)
    pad = encoder.pad_id(tokenizer)
    cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                if x.startswith("model name")), "?")
    flags = next((set(x.split(":", 1)[1].split()) for x in Path("/proc/cpuinfo").read_text().splitlines()
                  if x.startswith("flags")), set())
    print(f"# int8_variants.py {time.strftime('%Y-%m-%d %H:%M %Z')}: {cpu} (VNNI: "
          f"{'yes' if flags & {'avx512_vnni', 'avx_vnni'} else 'no'}), {args.threads} thread(s), "
          f"{len(split.texts)} test texts, threshold {settings['threshold']}, read as {reading.describe()}\n")
    t0 = time.perf_counter()
    reference = encoder.score(model, encoded, args.batch_size, pad, pooling=reading.pooled_by)
    rates = {"fp32 (PyTorch)": encoded.texts / (time.perf_counter() - t0)}
    scores = {"fp32 (PyTorch)": reference}
    for name, options in VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            path, _ = encoder.export_int8(model, args.model, options, folder=Path(tmp) / "int8")
            session = encoder.onnx_session(path, args.threads)
            t0 = time.perf_counter()
            scores[name] = encoder.score(session, encoded, args.batch_size, pad, pooling=reading.pooled_by)
            rates[name] = encoded.texts / (time.perf_counter() - t0)
    print("| variant | test macro F1 | mean abs diff | max abs diff | decisions flipped | texts/s |")
    print("|---|---|---|---|---|---|")
    threshold = float(settings["threshold"])
    for name, s in scores.items():
        f1 = decide.macro_f1(gold, decide.decide(s, threshold))
        diff = np.abs(s - reference)
        flipped = (decide.decide(s, threshold) != decide.decide(reference, threshold)).mean()
        print(f"| {name} | {f1:.4f} | {diff.mean():.5f} | {diff.max():.4f} | {100 * flipped:.2f}% "
              f"| {rates[name]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
