"""multilabel/corpus.py on its own: a second corpus tool (word counts per text, its own columns) written through the
same Output, stopped and resumed to the same bytes, sharded and merged to the same bytes as one run; what predict.py's
tests do not already hold of it. No model, no torch."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT))

from multilabel import corpus, files, outputs  # noqa: E402
from multilabel.files import UserError  # noqa: E402

PROG = "words.py"


def text_of(chunk: list[corpus.Row], fmt: str) -> str:
    """The tool's own rows: each text's word counts (JSONL), or its three most common words (TSV)."""
    counts = [Counter(re.findall(r"\w+", row.text.lower())) for row in chunk]
    if fmt == "jsonl":
        return "".join(json.dumps({"id": row.id, "line": row.line, "words": dict(c), "error": row.error},
                                  ensure_ascii=False) + "\n" for row, c in zip(chunk, counts, strict=True))
    return corpus.delimited([[row.id, str(row.line), ",".join(w for w, _ in c.most_common(3)), row.error]
                             for row, c in zip(chunk, counts, strict=True)], fmt)


def words(source: Path, out_path: Path, chunk_size: int, shard: tuple[int, int] | None = None, resume: bool = False,
          stop_after: int | None = None) -> int:
    """The tool: predict.py's loop with other columns. Returns the chunks written, stopping (as a kill would, the
    output left open) after stop_after of them."""
    fmt = corpus.output_format(str(out_path), None)
    path = corpus.shard_path(out_path, shard) if shard else out_path
    with outputs.claim(PROG, [outputs.Input(source, "the input")], corpus.declared(path)):
        if corpus.complete(path, resume):
            return 0
        span = corpus.Span.of(lambda: corpus.read_rows(str(source), "auto"), chunk_size, shard)
        run = {"input_sha256": files.sha256(source), "chunk_size": chunk_size, "format": fmt}
        head = "" if fmt == "jsonl" else corpus.delimited([["id", "line", "top words", "error"]], fmt)
        out = corpus.Output(path, {**run, "shard": shard and f"{shard[0]}/{shard[1]}"}, head, resume)
        for chunk in span.chunks(corpus.read_rows(str(source), "auto"), out.chunks_done):
            out.write(text_of(chunk, fmt), chunk)
            if out.chunks_done == stop_after:
                out.f.write(b'{"id": "half a chunk')  # killed mid-write: past what the progress file says
                out.f.close()
                return out.chunks_done
        out.finish({"tool": PROG, "run": run, **span.part(out.chunks_done)})
        return out.chunks_done


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """60 texts a line, some blank (bad rows, carried), one a line of bad UTF-8."""
    lines = [f"text {i} says {'hello ' * (i % 4)}world".encode() if i % 9 else b"   " for i in range(1, 61)]
    lines[20] = b"caf\xe9 latin-1"
    path = tmp_path / "texts.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".tsv", ".csv"])
def test_a_second_tool_resumes_and_merges_to_the_bytes_of_one_run(source: Path, tmp_path: Path, suffix: str):
    whole = tmp_path / f"whole{suffix}"
    assert words(source, whole, 7) == 9  # 60 rows in chunks of 7
    meta = json.loads(corpus.meta_of(whole).read_text())
    assert meta["rows"] == 60 and meta["scored"] == 53 and meta["chunks"] == [0, 9] and meta["input_rows"] is None
    assert set(meta["bad"]) == {"empty text", "not valid UTF-8"}

    stopped = tmp_path / f"stopped{suffix}"
    assert words(source, stopped, 7, stop_after=3) == 3
    with pytest.raises(UserError, match=r"stopped\..*\.partial: a stopped run's output: --resume continues it"):
        words(source, stopped, 7)
    with pytest.raises(UserError, match=re.escape("written with other settings (chunk size 7, this run has 8)")):
        words(source, stopped, 8, resume=True)
    assert words(source, stopped, 7, resume=True, stop_after=9) == 9  # stopped again, after its last chunk's text
    assert words(source, stopped, 7, resume=True) == 9  # the half-written bytes cut off
    assert stopped.read_bytes() == whole.read_bytes()
    assert not corpus.partial_of(stopped).exists() and not corpus.progress_of(stopped).exists()
    assert json.loads(corpus.meta_of(stopped).read_text())["bad"] == meta["bad"]
    assert words(source, stopped, 7, resume=True) == 0  # complete already

    parts = tmp_path / "parts" / f"words{suffix}"
    parts.parent.mkdir()
    for k in (1, 2, 3):
        words(source, parts, 7, shard=(k, 3), stop_after=1)
        words(source, parts, 7, shard=(k, 3), resume=True)
    said = corpus.merge(parts, PROG)
    assert said.startswith(f"merged 3 shards into {parts}: 60 rows, 53 scored, 7 not scored; empty text: 6 (lines 9, ")
    assert parts.read_bytes() == whole.read_bytes()


def test_merge_refuses_parts_of_other_runs_and_names_the_tool(source: Path, tmp_path: Path):
    out = tmp_path / "words.jsonl"
    words(source, out, 7, shard=(1, 2))
    words(source, out, 8, shard=(2, 2))
    with pytest.raises(UserError, match=re.escape("words.2-of-2.jsonl: made with other settings than "
                                                  "words.1-of-2.jsonl (chunk size 7, this run has 8): not parts")):
        corpus.merge(out, PROG)
    corpus.meta_of(tmp_path / "words.2-of-2.jsonl").write_text("{}")
    with pytest.raises(UserError, match=re.escape("(made by an older words.py?); rerun that shard")):
        corpus.merge(out, PROG)
    assert not out.exists()


def test_a_shard_is_whole_chunks_of_the_unsharded_run():
    spans = [corpus.shard_chunks(60, 7, (k, 4)) for k in (1, 2, 3, 4)]
    assert spans == [(0, 2), (2, 4), (4, 6), (6, 9)]
    rows = [corpus.Row(i, str(i), "x") for i in range(1, 61)]
    span = corpus.Span.of(lambda: rows, 7, (4, 4))
    assert (span.rows, span.input_rows) == (18, 60)
    assert [r.line for c in span.chunks(rows, done=1) for r in c] == list(range(50, 61))
    assert span.part(3) == {"chunks": [6, 9], "input_rows": 60}


def test_the_kind_of_a_bad_row_leaves_out_what_differs_from_row_to_row():
    assert corpus.kind_of("expected 3 tab-separated columns (text, labels, id), found 2 (lines 4-5: ...)") == \
        "expected N tab-separated columns"
    assert corpus.kind_of("a NUL character (U+0000)") == "a NUL character"
    assert corpus.kind_of("not valid UTF-8: byte 0xe9 at 3") == "not valid UTF-8"
    counts = corpus.Counts()
    counts.add([corpus.Row(i, str(i), "", "empty text") for i in range(1, 8)])
    assert counts.summary() == "7 rows, 0 scored, 7 not scored; empty text: 7 (lines 1, 2, 3, 4, 5, ...)"
