"""Where bert_model.py's training time goes: torch.profiler over its own loop, ops grouped by kind.

    python bench/profile_train.py                       # MiniLM-L6, 512 real training examples, batch 16
    python bench/profile_train.py --model bert-base --examples 160
    python bench/profile_train.py --bert-model-args --precision fp32     # anything more for bert_model.py

Runs bert_model.main (one epoch, its defaults) on a random sample of the real train set, with tiny dev/test
files, under torch.profiler; prints the share of CPU time per group of operators (matmuls, attention,
optimizer, gradient clipping, embedding gradients, ...) and the top operators by self time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import throughput  # noqa: E402  (bench/throughput.py: the sample, the models)

from multilabel import files  # noqa: E402

GROUPS = [  # first match wins: (group, substrings of the operator's name)
    ("gradient clipping", ("clip_grad", "linalg_vector_norm", "aten::norm", "_foreach_norm")),
    ("optimizer (AdamW)", ("adam", "_foreach_", "lerp", "addcdiv", "addcmul")),
    ("embedding (and its gradient)", ("embedding",)),
    ("matmuls (linear, bmm, backward)", ("mm", "linear", "matmul", "mkldnn", "onednn", "addmm", "baddbmm")),
    ("attention (sdpa)", ("attention", "_softmax", "softmax")),
    ("layer norm", ("layer_norm",)),
    ("gelu / tanh", ("gelu", "tanh")),
    ("dropout", ("dropout", "bernoulli", "native_dropout")),
    ("dtype casts (autocast)", ("aten::to", "_to_copy", "copy_")),
    ("zeroing / filling", ("zero", "fill_")),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="minilm, bert-base, or a model folder")
    p.add_argument("--data", type=Path, default=throughput.DEFAULT_DATA)
    p.add_argument("--examples", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--bert-model-args", nargs=argparse.REMAINDER, default=[],
                   help="more options for bert_model.py (e.g. --precision fp32)")
    args = p.parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    import bert_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model == "minilm":
            model = throughput.minilm_dir()
        elif args.model == "bert-base":
            model = throughput.make_random_bert(tmp / "bert-base", throughput.minilm_dir(), "base")
        else:
            model = Path(args.model)
        sample = throughput.write_sample(args.data, tmp / "sample", args.examples, seed=0)
        argv_bm = [*map(str, files.folder_files(sample)),
                   str(tmp / "out"), "--transformer-model", str(model), "--epochs", "1",
                   "--batch-size", str(args.batch_size), "--metrics-file", str(tmp / "m.json"), *args.bert_model_args]
        # profile only the training loop: from the batching of epoch 1 to the first evaluation
        state = {}
        batches, evaluate = bert_model.length_grouped_batches, bert_model.evaluate

        def start(*a, **kw):
            state["prof"] = profile(activities=[ProfilerActivity.CPU])
            state["prof"].__enter__()
            state["t0"] = time.perf_counter()
            return batches(*a, **kw)

        def stop(*a, **kw):
            if "t1" not in state:
                state["t1"] = time.perf_counter()
                state["prof"].__exit__(None, None, None)
            return evaluate(*a, **kw)

        bert_model.length_grouped_batches, bert_model.evaluate = start, stop
        if bert_model.main(argv_bm) != 0:
            return 1
    events = state["prof"].key_averages()
    wall = state["t1"] - state["t0"]
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    groups: dict[str, float] = defaultdict(float)
    for e in events:
        name = e.key.lower()
        group = next((g for g, keys in GROUPS if any(k in name for k in keys)), "other")
        groups[group] += e.self_cpu_time_total / 1e6
    print(f"\n# profile of bert_model.py's training loop: {args.model}, {args.examples} examples, batch "
          f"{args.batch_size}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# wall time of the loop {wall:.1f} s; operator self time {total:.1f} s (the rest: Python, the "
          f"profiler itself, waiting)\n")
    print("| group of operators | self CPU s | share of the loop's wall time |\n|---|---|---|")
    for g, s in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"| {g} | {s:.2f} | {100 * s / wall:.0f}% |")
    print(f"| (not in an operator: Python, data, profiler) | {wall - total:.2f} | {100 * (wall - total) / wall:.0f}% |")
    for e in events:  # ranges torch annotates itself: their total includes the operators inside
        if e.key.startswith("Optimizer."):
            print(f"| (range {e.key}, total incl. its operators) | {e.cpu_time_total / 1e6:.2f} | "
                  f"{100 * e.cpu_time_total / 1e6 / wall:.0f}% |")
    print("\n" + events.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=50))
    return 0


if __name__ == "__main__":
    sys.exit(main())
