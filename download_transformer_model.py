"""Download a transformer model from the Hugging Face hub into the local cache, for offline use.

    python download_transformer_model.py --transformer-model bert-base-uncased

Run it where there is network (a login or CPU node), so that the GPU job can load the model with
HF_HUB_OFFLINE=1 and spends no GPU time downloading. Only what PyTorch needs is fetched: config,
tokenizer files and one copy of the weights (model.safetensors, else pytorch_model.bin; never the
TensorFlow, Flax, ONNX or Rust copies many repos also carry). Afterwards the script proves, in a
fresh process with HF_HUB_OFFLINE=1, that the config, tokenizer and model load from the cache, and
prints where they are and how big.

Where the cache is (first that is set): --cache-dir; HF_HUB_CACHE; the legacy TRANSFORMERS_CACHE
(which transformers 5 ignores: it is mapped onto HF_HUB_CACHE here, and the output says so);
HF_HOME/hub; ~/.cache/huggingface/hub. Export the same variable in the job that uses the model.

--transformer-model may also be a local model folder: then nothing is downloaded, the folder is
only checked to load. With HF_HUB_OFFLINE=1 set, the cache is only checked (no network).
Exit 0 on success; 1 with one error line on failure (unknown model, no network after the retries,
a model that does not load).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
import time
from pathlib import Path

from multilabel import files, options
from multilabel.files import UserError

DEFAULT_MODEL = "bert-base-uncased"
RETRIES = 4  # retries of a transient hub error (network down, timeout, 429, 5xx) before giving up
RETRY_WAIT = 2.0  # seconds before the first retry; doubles each time, at most MAX_RETRY_WAIT
MAX_RETRY_WAIT = 30.0
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}

# Files a PyTorch model needs besides its weights (top level of the repo only).
CONFIG_FILES = ["config.json"]
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model"]
# One weights format, in order of preference: (single file, index of a sharded copy, shard pattern).
WEIGHT_FORMATS = [("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"),
                  ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin")]


class DownloadError(Exception):
    """A failure to report as one line."""


def resolve_cache(cache_dir: str | None, env: dict[str, str] | os._Environ[str]) -> tuple[str | None, str]:
    """Decide the hub cache folder; returns (value for HF_HUB_CACHE or None to keep the default, note).

    Must run before huggingface_hub is imported: it reads these variables once, at import.
    """
    if cache_dir:
        return str(Path(cache_dir).expanduser().resolve()), "from --cache-dir"
    hub_cache, legacy = env.get("HF_HUB_CACHE"), env.get("TRANSFORMERS_CACHE")
    if legacy and not hub_cache:
        return legacy, (f"TRANSFORMERS_CACHE={legacy} is ignored by transformers 5: using it as HF_HUB_CACHE "
                        "(set HF_HUB_CACHE instead in your jobs)")
    if legacy and hub_cache and os.path.abspath(legacy) != os.path.abspath(hub_cache):
        return None, f"TRANSFORMERS_CACHE={legacy} is ignored: HF_HUB_CACHE={hub_cache} takes precedence"
    return None, "from HF_HUB_CACHE" if hub_cache else "from HF_HOME" if env.get("HF_HOME") else "default"


def choose_files(repo_files: list[str]) -> list[str]:
    """The files of a hub repo that a PyTorch model and its tokenizer need: config, tokenizer, one weights format.

    >>> choose_files(["config.json", "vocab.txt", "model.safetensors", "pytorch_model.bin", "tf_model.h5"])
    ['config.json', 'vocab.txt', 'model.safetensors']
    """
    top = [f for f in repo_files if "/" not in f]
    wanted = [f for f in top if f in CONFIG_FILES + TOKENIZER_FILES]
    if "config.json" not in wanted:
        raise DownloadError(f"the repo has no config.json (files: {', '.join(sorted(repo_files)) or 'none'})")
    for single, index, shards in WEIGHT_FORMATS:
        if single in top:
            return wanted + [single]
        if index in top:
            return wanted + [index] + sorted(fnmatch.filter(top, shards))
    raise DownloadError("the repo has no PyTorch weights (model.safetensors or pytorch_model.bin); "
                        f"files: {', '.join(sorted(repo_files))}")


def folder_size(folder: Path) -> tuple[int, int]:
    """(number of files, bytes) in a folder, following the cache's symlinks to their blobs."""
    found = [p for p in folder.rglob("*") if p.is_file()]
    return len(found), sum(p.stat().st_size for p in found)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def is_transient(err: BaseException) -> bool:
    """True for errors worth retrying: no connection, timeouts, 429 and 5xx answers."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub.errors import HfHubHTTPError

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, httpx2.TransportError):
            return True
        if isinstance(seen, HfHubHTTPError):
            response = getattr(seen, "response", None)
            return response is not None and response.status_code in TRANSIENT_STATUS
        seen = seen.__cause__ or seen.__context__
    return False


def with_retries(what: str, fn, retries: int, wait: float):  # noqa: ANN001, ANN201 - any callable
    """Call fn(); on a transient error wait and retry (exponential backoff), at most `retries` times."""
    for attempt in range(retries):
        try:
            return fn()
        except Exception as err:
            if not is_transient(err):
                raise
            print(f"{what}: {first_line(err)}; retry {attempt + 1}/{retries} in {wait:g} s", file=sys.stderr)
            time.sleep(wait)
            wait = min(wait * 2, MAX_RETRY_WAIT)
    return fn()  # the last try: its error, if any, is the one reported


def hub_error(err: BaseException, model: str, revision: str) -> str:
    """One line explaining a hub failure."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    where = constants.ENDPOINT
    if isinstance(err, GatedRepoError):
        return f"model '{model}' is gated: accept its licence on the hub and set HF_TOKEN"
    if isinstance(err, RepositoryNotFoundError):
        return (f"model '{model}' not found on {where} (not a hub model name, and no such local folder; "
                "private models need HF_TOKEN)")
    if isinstance(err, RevisionNotFoundError):
        return f"revision '{revision}' of model '{model}' not found on {where}"
    if isinstance(err, HFValidationError):
        return f"'{model}' is neither a local folder nor a valid hub model name"
    if is_transient(err):
        return (f"cannot download '{model}' from {where}: {first_line(err)} (no network on this node? run it "
                "where there is, or set HF_HUB_OFFLINE=1 to only check the cache)")
    return f"cannot download '{model}': {first_line(err)}"


def download(model: str, revision: str, retries: int, wait: float) -> Path:
    """Download what a PyTorch model needs into the hub cache; returns the snapshot folder."""
    from huggingface_hub import HfApi, snapshot_download

    info = with_retries("hub", lambda: HfApi().model_info(model, revision=revision), retries, wait)
    repo_files = [s.rfilename for s in info.siblings or []]
    wanted = choose_files(repo_files)
    print(f"Downloading {len(wanted)} of the {len(repo_files)} files of {model} (revision {revision}, "
          f"commit {info.sha[:12]}): {', '.join(wanted)}", flush=True)
    # revision stays the branch name: the cache then records refs/<revision>, which offline loads use.
    folder = with_retries("download", lambda: snapshot_download(model, revision=revision, allow_patterns=wanted),
                          retries, wait)
    return Path(folder)


def check_loads(model: str, revision: str | None) -> tuple[Path, str]:
    """Load config, tokenizer and model without network; returns (folder, one-line description)."""
    import transformers
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    transformers.logging.set_verbosity_error()  # e.g. "unused weights of the pre-training heads"
    kwargs = {} if revision is None else {"revision": revision, "local_files_only": True}
    # never the model's own code, never a question on standard input (files.check_no_model_code said why before)
    config = AutoConfig.from_pretrained(model, trust_remote_code=False, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=False, **kwargs)
    net = AutoModel.from_pretrained(model, trust_remote_code=False, **kwargs)
    n_params = sum(p.numel() for p in net.parameters())
    if revision is None:
        folder = Path(model)
    else:
        from huggingface_hub import try_to_load_from_cache

        folder = Path(str(try_to_load_from_cache(model, "config.json", revision=revision))).parent
    what = (f"{type(net).__name__} ({config.model_type}, {n_params / 1e6:.1f}M parameters), "
            f"{type(tokenizer).__name__} (vocabulary {len(tokenizer)})")
    return folder, what


def report(model: str, folder: Path, what: str) -> None:
    n_files, n_bytes = folder_size(folder)
    print(f"OK: {model} loads offline: {what}")
    print(f"Location: {folder} ({n_files} files, {human(n_bytes)})")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transformer-model", default=DEFAULT_MODEL,
                        help=f"hub model name or local model folder (default: {DEFAULT_MODEL})")
    parser.add_argument("--revision", default="main", help="hub branch, tag or commit (default: main)")
    parser.add_argument("--cache-dir", help="hub cache folder (default: HF_HUB_CACHE, TRANSFORMERS_CACHE, "
                                            "HF_HOME/hub or ~/.cache/huggingface/hub)")
    parser.add_argument("--retries", type=options.WHOLE_0, default=RETRIES,
                        help=f"retries of a transient hub error, with exponential backoff (default: {RETRIES})")
    parser.add_argument("--retry-wait", type=options.NON_NEGATIVE, default=RETRY_WAIT,
                        help=f"seconds before the first retry (default: {RETRY_WAIT:g})")
    options.describe_ranges(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if os.path.isdir(os.path.expanduser(args.transformer_model)):  # a local model folder: nothing to download
            return check_folder(Path(args.transformer_model).expanduser().resolve())
        return fetch(args)
    except UserError as e:
        return files.fail("download_transformer_model.py", e)


def check_folder(folder: Path) -> int:
    files.check_no_model_code(folder)
    try:
        _, what = check_loads(str(folder), None)
    except Exception as err:
        raise UserError(f"{folder} does not load as a model: {first_line(err)}") from None
    report(str(folder), folder, what)
    return 0


def fetch(args: argparse.Namespace) -> int:
    """Into the cache (or, with HF_HUB_OFFLINE=1, only checked there), then proven to load offline."""
    model = args.transformer_model
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise UserError(f"no such model folder: {model}")
    # The cache location must be in the environment before huggingface_hub is imported.
    hub_cache, note = resolve_cache(args.cache_dir, os.environ)
    if hub_cache:
        os.environ["HF_HUB_CACHE"] = hub_cache
    from huggingface_hub import constants
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # its own retry warnings; ours are printed below
    if note.startswith("TRANSFORMERS_CACHE"):
        print(f"Note: {note}")
    print(f"Cache: {constants.HF_HUB_CACHE} ({note if not note.startswith('TRANSFORMERS_CACHE') else 'mapped'})")
    if constants.HF_HUB_OFFLINE:  # only check what is in the cache (this is also the check run below)
        files.check_no_model_code(model, args.revision)
        try:
            folder, what = check_loads(model, args.revision)
        except Exception as err:
            raise UserError(f"{model} (revision {args.revision}) does not load from the cache "
                            f"{constants.HF_HUB_CACHE} with HF_HUB_OFFLINE=1: {first_line(err)}") from None
        report(model, folder, what)
        return 0
    try:
        folder = download(model, args.revision, args.retries, args.retry_wait)
    except DownloadError as err:
        raise UserError(f"{model}: {err}") from None
    except Exception as err:
        raise UserError(hub_error(err, model, args.revision)) from None
    n_files, n_bytes = folder_size(folder)
    print(f"Downloaded {n_files} files, {human(n_bytes)}, to {folder}", flush=True)
    # Prove the model loads exactly as the GPU job will load it: a fresh process, HF_HUB_OFFLINE=1.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": constants.HF_HUB_CACHE}
    check = subprocess.run([sys.executable, os.path.abspath(__file__), "--transformer-model", model,
                            "--revision", args.revision], env=env, stdout=subprocess.PIPE, text=True)
    print("\n".join(line for line in check.stdout.splitlines() if not line.startswith("Cache: ")), flush=True)
    if check.returncode != 0:
        return 1
    print(f"To use it offline: export HF_HUB_CACHE={constants.HF_HUB_CACHE} HF_HUB_OFFLINE=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
