"""Download a hub repo (the files matching some patterns) into the HF cache, then verify it.

huggingface_hub does the transfer (and resumes its own blobs/<etag>.incomplete files); this module
adds what staging needs around it: a listing of what is already there and what will be fetched,
a free-space check, one-line errors, and a hash check of everything fetched.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
from pathlib import Path
from typing import Callable

from launchers.staging_check import check_repo
from launchers.staging_hub import human, matching, read_listing, verify_hashes

Log = Callable[[str], None]
NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ETIMEDOUT, errno.ECONNRESET}
SPACE_MARGIN = 1.02  # ask for 2% more than the payload (filesystem overhead)


class StageError(Exception):
    """One line for the user; `network` marks the hub as unreachable (later hub steps are skipped)."""

    def __init__(self, message: str, network: bool = False):
        super().__init__(message)
        self.network = network


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def hub_error(exc: BaseException, repo: str, cache: Path) -> StageError:
    """Turns whatever huggingface_hub/httpx raised into one line that says what to do."""
    from huggingface_hub import errors as e

    chain = list(_chain(exc))
    names = {c.__name__ for x in chain for c in type(x).__mro__}
    if any(isinstance(x, OSError) and x.errno == errno.ENOSPC for x in chain):
        return StageError(f"disk full while downloading {repo} into {cache} ({human(_free(cache))} free): "
                          "free some space or set HF_HOME to a bigger disk, then rerun (it resumes)")
    if any(isinstance(x, e.GatedRepoError) for x in chain):
        return StageError(f"{repo} is a gated repo: accept its terms at {endpoint()}/{repo} with your account, "
                          "log in (hf auth login, or export HF_TOKEN=...), then rerun")
    if any(isinstance(x, e.RevisionNotFoundError) for x in chain):
        return StageError(f"{repo}: the revision 'main' does not exist on {endpoint()}")
    if any(isinstance(x, e.RepositoryNotFoundError) for x in chain):
        return StageError(f"{repo} was not found on {endpoint()} (wrong id, or private: log in with "
                          "hf auth login / export HF_TOKEN=... if you have access)")
    status = next((x.response.status_code for x in chain if isinstance(x, e.HfHubHTTPError)
                   and getattr(x, "response", None) is not None), None)
    if status in (401, 403):
        return StageError(f"{repo}: access denied by {endpoint()} (HTTP {status}): log in with hf auth login "
                          "or export HF_TOKEN=... with a token that can read it")
    if names & {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "ProxyError"} or any(
            isinstance(x, socket.gaierror) or (isinstance(x, OSError) and x.errno in NETWORK_ERRNOS)
            for x in chain):
        cause = next((str(x) for x in reversed(chain) if str(x)), type(exc).__name__).splitlines()[0]
        return StageError(f"cannot reach the Hugging Face hub at {endpoint()} ({cause[:120]}): stage on a machine "
                          "with internet (the login node), or check HF_ENDPOINT / the proxy settings", network=True)
    if names & {"RemoteProtocolError", "ReadError", "ReadTimeout", "WriteError", "IncompleteRead"}:
        cause = next((str(x) for x in chain if str(x)), type(exc).__name__).splitlines()[0]
        return StageError(f"{repo}: the connection dropped during the download ({cause[:120]}); nothing partial "
                          "is kept as complete: rerun the same command to resume")
    if status is not None:
        return StageError(f"{repo}: the hub answered HTTP {status}; try again later")
    first = (str(exc).splitlines() or [""])[0][:200]
    return StageError(f"{repo}: download failed ({type(exc).__name__}: {first})")


def os_error_line(exc: OSError, where: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {where} ({human(_free(where))} free): free some space, then rerun"
    return f"cannot write {where}: {exc.strerror or exc}"


def _free(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_space(cache: Path, need: int, what: str) -> None:
    free = _free(cache)
    if need * SPACE_MARGIN > free:
        raise StageError(f"not enough disk space in {cache} for {what}: {human(need)} to download, "
                         f"{human(free)} free; free some space or set HF_HOME to a bigger disk")


def fetch_repo(cache: Path, repo: str, patterns: list[str], kind: str, command: str, log: Log,
               verify_all: bool = False, fallback: list[str] | None = None) -> Path:
    """Brings the repo's files matching `patterns` into the cache (or says why it cannot); returns the snapshot."""
    if offline_mode():
        item = check_repo(cache, repo, kind, command, patterns, fallback)
        if item.staged:
            log(f"{kind} {repo}: already there ({item.note}); HF_HUB_OFFLINE=1, nothing fetched")
            return Path(item.where)
        raise StageError(f"{kind} {repo} is not fully staged ({item.problems[0]}) and HF_HUB_OFFLINE=1 forbids "
                         "downloading: unset HF_HUB_OFFLINE and run the staging where the hub is reachable")
    try:
        plan = _dry_run(cache, repo, patterns)
    except StageError as exc:
        item = check_repo(cache, repo, kind, command, patterns, fallback)
        if not (exc.network and item.staged):
            raise
        log(f"{kind} {repo}: already there ({item.note}); the hub is unreachable, so not re-checked against it")
        return Path(item.where)
    need = [p for p in plan if p.will_download]
    have = [p for p in plan if not p.will_download]
    log(f"{kind} {repo} @ {plan[0].commit_hash[:12]}: {len(have)} file(s) already there "
        f"({human(sum(p.file_size or 0 for p in have))}), {len(need)} to fetch "
        f"({human(sum(p.file_size or 0 for p in need))})")
    for p in need:
        log(f"    fetch {p.filename} ({human(p.file_size or 0)})")
    if need:
        check_space(cache, sum(p.file_size or 0 for p in need), repo)
    snapshot = _download(cache, repo, patterns)
    _verify(cache, repo, snapshot, patterns, [p.filename for p in need], verify_all, kind, command, fallback)
    log(f"{kind} {repo}: staged in {snapshot}")
    return snapshot


def quiet_hub_logs() -> None:
    """huggingface_hub logs each retry as a warning; staging reports the outcome itself, in one line."""
    import logging

    logging.getLogger("huggingface_hub").setLevel(logging.CRITICAL + 1)


def _dry_run(cache: Path, repo: str, patterns: list[str]):
    from huggingface_hub import snapshot_download

    quiet_hub_logs()
    try:
        plan = snapshot_download(repo, cache_dir=str(cache), allow_patterns=patterns, dry_run=True)
    except Exception as exc:  # every hub failure becomes one line
        raise hub_error(exc, repo, cache) from None
    if not plan:
        raise StageError(f"{repo} has no files matching {', '.join(patterns)} on {endpoint()}")
    return plan


def _download(cache: Path, repo: str, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, cache_dir=str(cache), allow_patterns=patterns))
    except Exception as exc:
        raise hub_error(exc, repo, cache) from None


def _verify(cache: Path, repo: str, snapshot: Path, patterns: list[str], fetched: list[str], verify_all: bool,
            kind: str, command: str, fallback: list[str] | None) -> None:
    listing = read_listing(cache, repo, snapshot.name)
    if listing is not None:
        names = matching(listing, patterns) if verify_all else fetched
        bad = verify_hashes(snapshot, listing, names)
        if bad:
            raise StageError(f"{repo}: corrupt download: {'; '.join(bad)}; rerun to fetch again")
    item = check_repo(cache, repo, kind, command, patterns, fallback)
    if not item.staged:
        raise StageError(f"{repo}: incomplete after download: {'; '.join(item.problems)}; rerun to resume")
