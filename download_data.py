"""Download the GoEmotions data (Demszky et al., ACL 2020) into DATA_DIR, verified by SHA-256.

    python download_data.py ./data
    python download_data.py ./data --base-url /path/to/a/copy/of/goemotions/data   # or file:// or http(s)://

Writes train.tsv, dev.tsv, test.tsv, emotions.txt, ekman_mapping.json and sentiment_dict.json from
google-research's goemotions/data/ at a pinned commit. Every file is checked against a pinned SHA-256.
A file is written to a temporary name in DATA_DIR and renamed into place only once its checksum
matches, so an interrupted, truncated or corrupt download never leaves a file under its final name.
A file already in DATA_DIR is kept if its checksum matches and downloaded again otherwise; when
everything is in place the script touches no network.

Exit status: 0 when every file is in place and verified, 1 on a failed download (one line on stderr),
2 on bad arguments, 130 when interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import requests
from tqdm import tqdm

from multilabel import files, options, outputs
from multilabel.files import UserError

# -----------------------------------------------------------------------------
# Knobs (all can be changed on the command line)

# The commit the original download script pinned. The SHA-256s below are what guard the content:
# a mirror or another commit is fine as long as the bytes are the same.
COMMIT = "e56477f83f3389390bfb888602bdb71515699378"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/google-research/google-research/{COMMIT}/goemotions/data/"
BASE_URL_ENV = "GOEMOTIONS_BASE_URL"  # environment variable naming a mirror; --base-url wins over it
FILES = {  # file name -> SHA-256 of the upstream bytes
    "train.tsv": "1c254a142be5c00e80d819b9ae1bbd36d94b2eeb8f4b1271846508d57e57d9c5",
    "dev.tsv": "575489c079c9de1097062a01738f998590d6b7ead66dd1c9fd1d2ba01fd8bc62",
    "test.tsv": "0587b2dd8b27b97352adbfc3fb083d46005c8946657fdc2b1ca8b1cc7f1f8be4",
    "emotions.txt": "45c3ef86782d2a4d7fedcd6d8c111aa0d0e94720689bd164fac94fefb4495a89",
    "ekman_mapping.json": "d6b1fea382917c1685c42e1324a0344106be9390f52a3850ce032656d103a328",
    "sentiment_dict.json": "801f6f028082141bd38541a4b14d65b33bdc55d29c7b2aaa029fefecf206f76b",
}
CONNECT_TIMEOUT = 30.0  # seconds to open a connection (a busy cluster login node can be slow)
READ_TIMEOUT = 60.0  # seconds of silence from the server before giving up on an attempt
RETRIES = 5  # extra attempts after a connection error, a timeout, HTTP 429 or 5xx (never on other 4xx)
BACKOFF = 1.0  # seconds before the first retry; doubles for each further retry
MAX_BACKOFF = 60.0  # cap on one wait
CHUNK_SIZE = 1 << 16


class DownloadError(Exception):
    """A file could not be fetched or verified; the message is the one line shown to the user."""


class RetryableError(Exception):
    """A failed attempt worth repeating (HTTP 429 or 5xx)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_kind(base_url: str) -> str:
    """'http' for http(s):// URLs, 'local' for file:// URLs and plain folders."""
    scheme = urlparse(base_url).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme in ("file", "") or len(scheme) == 1:  # len 1: a Windows drive letter such as C:
        return "local"
    raise DownloadError(f"unsupported base URL {base_url!r}: use http(s)://, file:// or a folder")


def local_path(base_url: str, name: str) -> Path:
    parsed = urlparse(base_url)
    folder = Path(url2pathname(unquote(parsed.path))) if parsed.scheme.lower() == "file" else Path(base_url)
    return folder / name


def file_url(base_url: str, name: str) -> str:
    return base_url.rstrip("/") + "/" + name


def _write_chunks(chunks, out, digest, bar) -> int:
    size = 0
    for chunk in chunks:
        out.write(chunk)
        digest.update(chunk)
        bar.update(len(chunk))
        size += len(chunk)
    return size


def fetch_http(session: requests.Session, url: str, out, digest_factory, progress: bool, desc: str,
               timeout: tuple[float, float], retries: int, backoff: float):
    """Stream url into the open binary file `out`, retrying transient failures. Returns the digest."""
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), MAX_BACKOFF))
        out.seek(0)
        out.truncate()
        digest = digest_factory()
        try:
            # identity: no gzip, so Content-Length is the real size and the progress bar is right
            with session.get(url, stream=True, timeout=timeout, headers={"Accept-Encoding": "identity"}) as r:
                if r.status_code == 429 or r.status_code >= 500:
                    raise RetryableError(f"HTTP {r.status_code} {r.reason}")
                if r.status_code != 200:
                    raise DownloadError(f"HTTP {r.status_code} {r.reason} for {url} (not retried)")
                total = int(r.headers.get("Content-Length", 0)) or None
                with tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not progress,
                          leave=False) as bar:
                    _write_chunks(r.iter_content(CHUNK_SIZE), out, digest, bar)
            return digest
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                RetryableError) as e:
            last_error = e
        except requests.RequestException as e:  # a bad URL and the like: retrying will not help
            raise DownloadError(f"{url}: {e}") from None
    reason = str(last_error).splitlines()[0] if str(last_error) else type(last_error).__name__
    raise DownloadError(f"{url}: failed after {retries + 1} attempts; last error: {reason}")


def fetch_local(path: Path, out, digest_factory, progress: bool, desc: str):
    """Copy a file from a local mirror into the open binary file `out`. Returns the digest."""
    digest = digest_factory()
    try:
        with open(path, "rb") as src, tqdm(total=path.stat().st_size, desc=desc, unit="B", unit_scale=True,
                                           disable=not progress, leave=False) as bar:
            _write_chunks(iter(lambda: src.read(CHUNK_SIZE), b""), out, digest, bar)
    except OSError as e:
        raise DownloadError(f"{path}: cannot read from mirror: {e.strerror or e}") from None
    return digest


def download_file(name: str, expected_sha256: str, data_dir: Path, base_url: str,
                  session: requests.Session | None, timeout: tuple[float, float], retries: int,
                  backoff: float, progress: bool) -> int:
    """Fetch one file into data_dir/name through a temporary file beside it, renamed into place once its checksum
    matches (files.atomic_write). Returns its size."""
    size = 0

    def fetch(tmp: Path) -> None:
        nonlocal size
        with open(tmp, "xb") as out:
            if session is None:
                digest = fetch_local(local_path(base_url, name), out, hashlib.sha256, progress, name)
            else:
                digest = fetch_http(session, file_url(base_url, name), out, hashlib.sha256, progress, name,
                                    timeout, retries, backoff)
            size = out.tell()
        if digest.hexdigest() != expected_sha256:
            raise DownloadError(f"{name}: checksum mismatch from {base_url} (got sha256 "
                                f"{digest.hexdigest()}, expected {expected_sha256}); nothing written")

    try:
        files.atomic_write(data_dir / name, fetch, name)
    except UserError as e:
        raise DownloadError(str(e)) from None
    return size


def download_all(data_dir: Path, base_url: str,
                 timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT), retries: int = RETRIES,
                 backoff: float = BACKOFF, progress: bool = True) -> tuple[int, int, int]:
    """Make data_dir hold every file in FILES with the right checksum.

    Returns (files downloaded, files already in place, bytes downloaded). Raises DownloadError."""
    kind = source_kind(base_url)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{data_dir}: cannot create data folder: {e.strerror or e}") from None
    missing = [name for name, sha in FILES.items()
               if not ((data_dir / name).is_file() and sha256_of(data_dir / name) == sha)]
    if not missing:
        return 0, len(FILES), 0
    session = requests.Session() if kind == "http" else None
    total_bytes = 0
    try:
        with tqdm(total=len(missing), desc="files", unit="file", disable=not progress) as files_bar:
            for name in missing:
                total_bytes += download_file(name, FILES[name], data_dir, base_url, session, timeout, retries,
                                             backoff, progress)
                files_bar.update(1)
    finally:
        if session is not None:
            session.close()
    return len(missing), len(FILES) - len(missing), total_bytes


def not_prepared_data(data_dir: Path) -> str:
    """'' for a folder GoEmotions may be downloaded into; one that prepare_data.py made holds someone's own data."""
    return f"a folder of prepared data ({files.DATASET_FILE})" if (data_dir / files.DATASET_FILE).exists() else ""


def parse_timeout(value: str) -> tuple[float, float]:
    """'60' -> (60, 60); '30,60' -> connect 30 s, read 60 s; each a number > 0 (options.POSITIVE)."""
    parts = value.split(",")
    try:
        if len(parts) in (1, 2):
            seconds = [options.POSITIVE(p) for p in parts]
            return (seconds[0], seconds[-1])
    except argparse.ArgumentTypeError:
        pass
    raise argparse.ArgumentTypeError(f"expected SECONDS or CONNECT,READ, each {options.POSITIVE}, got {value!r}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="folder for the data (created)")
    parser.add_argument("--base-url", default=None,
                        help=f"mirror of goemotions/data/: http(s):// URL, file:// URL or folder "
                             f"(default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})")
    parser.add_argument("--timeout", type=parse_timeout, default=(CONNECT_TIMEOUT, READ_TIMEOUT),
                        metavar="SECONDS|CONNECT,READ",
                        help=f"network timeouts in seconds, each {options.POSITIVE} (default {CONNECT_TIMEOUT:g},"
                             f"{READ_TIMEOUT:g})")
    parser.add_argument("--retries", type=options.WHOLE_0, default=RETRIES,
                        help=f"retries after a connection error, timeout, HTTP 429/5xx (default {RETRIES})")
    parser.add_argument("--backoff", type=options.NON_NEGATIVE, default=BACKOFF,
                        help=f"seconds before the first retry, doubled for each next (default {BACKOFF:g})")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (default: shown when stderr is a terminal)")
    options.describe_ranges(parser)
    args = parser.parse_args(argv)
    base_url = args.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    progress = not args.no_progress and sys.stderr.isatty()

    signal.signal(signal.SIGTERM, _interrupt)  # a cluster's kill: clean up like Ctrl-C
    start = time.monotonic()
    try:
        with outputs.claim("download_data.py", [], [outputs.Output(args.data_dir, "DATA_DIR", folder=True,
                                                                   ours=not_prepared_data)]):
            downloaded, present, size = download_all(args.data_dir, base_url, args.timeout, args.retries,
                                                     args.backoff, progress)
    except (DownloadError, UserError) as e:
        print(f"download_data.py: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("download_data.py: interrupted; no partial file left under a final name", file=sys.stderr)
        return 130
    source = f" from {base_url}" if downloaded else ""
    print(f"{args.data_dir}: {len(FILES)} files verified (sha256): {downloaded} downloaded "
          f"({size / 1e6:.1f} MB){source}, {present} already in place, {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
