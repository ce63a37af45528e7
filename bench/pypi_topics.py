"""A second multi-label dataset that is not GoEmotions, built from what this machine can reach: the package registry.

Each example is a Python package on PyPI: its text is the package's one-line summary, its labels are the top
levels of its "Topic :: ..." trove classifiers (Scientific/Engineering, Software Development, Internet, ...), which
authors pick themselves, several per package. Two columns come with it, for findings by a column (docs/findings.md):
`year`, the year of the package's first uploaded file (blank if none), and `licence`, the last part of its
"License :: ..." classifier ("MIT License"; several joined by " / "; blank if none). A random sample of the
registry's package names (seeded) is looked up in PyPI's JSON API; packages without a summary or a topic are left
out, and so is every package whose summary another package has too (templates such as "A small example package"),
so that no text is in two splits.

    python bench/pypi_topics.py OUT.csv [--packages 30000] [--seed 0] [--registry URL]
    python prepare_data.py OUT.csv DATA_DIR --id-column id --min-count 30

The CSV (id, text, labels, year, licence; labels joined by ",") and OUT.json beside it (the date, the counts) are
the user's own data in the project's sense: prepare_data.py splits them. PyPI changes daily, so the set is not
reproducible byte for byte; its date and counts are recorded. Not committed: the texts are the packages' authors'.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REGISTRY = "https://pypi.org/"  # its simple index at simple/, a project's JSON at pypi/NAME/json


def get(url: str, tries: int = 3) -> bytes | None:
    """The body, or None for a 404 (a name in the index whose project is gone); retried on other errors."""
    for attempt in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            if attempt == tries - 1:
                raise
        except OSError:
            if attempt == tries - 1:
                raise
        time.sleep(2**attempt)
    return None


def package_names(registry: str) -> list[str]:
    """Every project name in the registry's simple index (its HTML form)."""
    return re.findall(r'<a href="[^"]*">([^<]+)</a>', get(registry + "simple/").decode())


def topics_of(registry: str, name: str) -> tuple[str, str, list[str], str, str] | None:
    """(name, summary, top-level topics, year of the first upload, licence) of a package, or None."""
    body = get(f"{registry}pypi/{name}/json")
    if body is None:
        return None
    project = json.loads(body)
    info = project["info"]
    summary = " ".join((info.get("summary") or "").split())
    classifiers = info.get("classifiers") or []
    topics = sorted({c.split(" :: ")[1] for c in classifiers if c.startswith("Topic :: ")})
    uploads = [f["upload_time"] for files in (project.get("releases") or {}).values() for f in files
               if f.get("upload_time")]
    year = min(uploads)[:4] if uploads else ""
    licence = " / ".join(sorted({c.split(" :: ")[-1] for c in classifiers if c.startswith("License :: ")}))
    return (name, summary, topics, year, licence) if summary and topics else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="the CSV to write (id, text, labels)")
    p.add_argument("--packages", type=int, default=30000, help="package names to look up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=16, help="requests at a time")
    p.add_argument("--registry", default=REGISTRY, help="the registry's base URL (ending in /)")
    args = p.parse_args(argv)
    names = package_names(args.registry)
    sample = sorted(random.Random(args.seed).sample(names, min(args.packages, len(names))))
    print(f"{len(names)} packages in the index; looking up {len(sample)}", file=sys.stderr)
    with ThreadPoolExecutor(args.workers) as pool:
        found = [r for r in pool.map(lambda name: topics_of(args.registry, name), sample) if r is not None]
    shared = {s for s, n in Counter(r[1].casefold() for r in found).items() if n > 1}
    rows = [r for r in found if r[1].casefold() not in shared]
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "labels", "year", "licence"])
        w.writerows([name, summary, ",".join(topics), year, licence] for name, summary, topics, year, licence in rows)
    tmp.replace(args.out)
    counts = Counter(t for r in rows for t in r[2])
    facts = {"built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "index_packages": len(names),
             "looked_up": len(sample), "seed": args.seed, "with_summary_and_topic": len(found),
             "summary_shared_left_out": len(found) - len(rows), "rows": len(rows),
             "labels_per_row": round(sum(len(r[2]) for r in rows) / max(1, len(rows)), 3),
             "label_counts": dict(counts.most_common())}
    args.out.with_suffix(".json").write_text(json.dumps(facts, indent=1) + "\n")
    print(json.dumps({k: v for k, v in facts.items() if k != "label_counts"}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
