"""Write GoEmotions as a user would bring their own data, for prepare_data.py to turn back into the shipped files.

    python bench/goemotions_as_own_data.py ../shared/data/goemotions /tmp/own
    -> /tmp/own/goemotions_onehot.csv   text, id, split, then one 0/1 column per emotion (the raw release's shape)
       /tmp/own/goemotions_names.jsonl  {"text", "labels": [names], "id", "split"}
       /tmp/own/ekman_names.jsonl       the same with the Ekman groups' names (neutral stays neutral), and
       /tmp/own/ekman_labels.txt        their order (bert_model.py --taxonomy ekman's)
       /tmp/own/million.jsonl           --million: the train rows repeated to 1,000,000 lines, ids made unique

Never commit what it writes: it is the GoEmotions data.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from multilabel import files  # noqa: E402


def ekman_groups(data_dir: Path, labels: list[str]) -> tuple[list[str], dict[str, str]]:
    """bert_model.py --taxonomy ekman: the mapping's groups in file order, then neutral; each emotion's group."""
    groups = json.loads((data_dir / "ekman_mapping.json").read_text(encoding="utf-8"))
    group_of = {m: g for g, members in groups.items() for m in members} | {"neutral": "neutral"}
    return [*groups, "neutral"], {name: group_of[name] for name in labels}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--million", action="store_true", help="also million.jsonl (1,000,000 lines)")
    args = p.parse_args(argv)
    try:
        labels = files.read_labels(args.data_dir / files.LABELS_FILE)
        splits = {s: files.read_split(files.split_path(args.data_dir, s), len(labels)) for s in files.SPLITS}
    except files.UserError as e:
        return files.fail("goemotions_as_own_data.py", e)
    ekman, group_of = ekman_groups(args.data_dir, labels)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # (split, (text, label ids, id)) of every row, the splits in order
    rows = [(s, row) for s, split in splits.items() for row in zip(split.texts, split.labels, split.ids, strict=True)]
    with open(args.out_dir / "goemotions_onehot.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "id", "split", *labels])
        for split, (text, ids, example_id) in rows:
            on = set(ids)
            writer.writerow([text, example_id, split, *(int(j in on) for j in range(len(labels)))])
    with open(args.out_dir / "goemotions_names.jsonl", "w", encoding="utf-8") as names, \
            open(args.out_dir / "ekman_names.jsonl", "w", encoding="utf-8") as ek:
        for split, (text, ids, example_id) in rows:
            emotions = [labels[i] for i in ids]
            groups = sorted({group_of[e] for e in emotions}, key=ekman.index)
            names.write(json.dumps({"text": text, "labels": emotions, "id": example_id, "split": split}) + "\n")
            ek.write(json.dumps({"text": text, "labels": groups, "id": example_id, "split": split}) + "\n")
    (args.out_dir / "ekman_labels.txt").write_text("\n".join(ekman) + "\n", encoding="utf-8")
    if args.million:
        train = [r for s, r in rows if s == "train"]
        with open(args.out_dir / "million.jsonl", "w", encoding="utf-8") as f:
            for n in range(1_000_000):
                text, ids, example_id = train[n % len(train)]
                f.write(json.dumps({"text": text, "labels": [labels[i] for i in ids],
                                    "id": f"{example_id}-{n // len(train)}"}) + "\n")
    print(f"wrote {args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
