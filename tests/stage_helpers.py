"""Helpers for the staging tests: a hub cache laid out as huggingface_hub writes it, a closed port, and a
fake hub (a small HTTP server speaking the few hub endpoints huggingface_hub uses to download a repo;
a fake because the real hub cannot be reached from CI)."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = "nld-test/tiny-diffusion"
COMMIT = "7d3c0b5e9a1f2468ace013579bdf2468ace01357"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


def repo_files(ckpt: Path) -> dict[str, bytes]:
    """A checkpoint folder as the files of a hub repo (paths with '/')."""
    return {p.relative_to(ckpt).as_posix(): p.read_bytes() for p in sorted(ckpt.rglob("*")) if p.is_file()}


def listing(files: dict[str, bytes]) -> dict[str, dict]:
    """What the hub's tree endpoint says per file (safetensors are LFS files, as on the hub)."""
    out = {}
    for name, data in files.items():
        if name.endswith(".safetensors"):
            out[name] = {"size": len(data), "blob_id": git_blob_id(lfs_pointer(data)),
                         "lfs_sha256": hashlib.sha256(data).hexdigest(), "lfs_size": len(data)}
        else:
            out[name] = {"size": len(data), "blob_id": git_blob_id(data)}
    return out


def build_hub_cache(ckpt: Path, hub: Path, repo: str = REPO, commit: str = COMMIT, with_tree: bool = True) -> Path:
    """<hub>/models--org--name/{blobs,snapshots/<commit>,refs/main[,trees/<commit>.json]}; returns the snapshot.

    Blobs are named by etag (sha256 for LFS files, git blob sha1 otherwise) and snapshot files are relative
    symlinks into blobs/, exactly as huggingface_hub stores a download."""
    folder = hub / ("models--" + repo.replace("/", "--"))
    files = repo_files(ckpt)
    entries = listing(files)
    snapshot = folder / "snapshots" / commit
    for name, data in files.items():
        blob = folder / "blobs" / (entries[name].get("lfs_sha256") or entries[name]["blob_id"])
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    if with_tree:
        (folder / "trees").mkdir(exist_ok=True)
        (folder / "trees" / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": entries}))
    return snapshot


def closed_port() -> int:
    """A port nothing listens on (bound then released; connecting is refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FakeHub:
    """Serves `files` as repo `repo` at commit `commit`. Knobs: `status` answers every request with an
    error (404 repo not found, 403 gated); `cut_after` ends each safetensors download after that many bytes;
    `corrupt` serves zeros of the right size; `claimed_sizes` announces other sizes in listings and headers."""

    files: dict[str, bytes]
    repo: str = REPO
    commit: str = COMMIT
    status: int | None = None
    cut_after: int | None = None
    corrupt: set[str] = field(default_factory=set)
    claimed_sizes: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub.handle(self, head=True)

            def do_GET(self):
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- endpoints --------------------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = h.path.split("?")[0]
        self.requests.append(f"{h.command} {path}")
        if self.status is not None:
            code = {404: "RepoNotFound", 403: "GatedRepo"}.get(self.status, "")
            return self._send(h, self.status, json.dumps({"error": "fake hub error"}).encode(),
                              {"X-Error-Code": code, "X-Error-Message": "fake hub error"}, head)
        api = f"/api/models/{self.repo}"
        if path.startswith(f"{api}/revision/"):
            body = {"id": self.repo, "sha": self.commit, "siblings": [{"rfilename": n} for n in self.files]}
            return self._send(h, 200, json.dumps(body).encode(), {}, head)
        if path.startswith(f"{api}/tree/"):
            entries = listing(self.files)
            tree = [{"type": "file", "path": n, "size": self.claimed_sizes.get(n, e["size"]), "oid": e["blob_id"],
                     **({"lfs": {"oid": e["lfs_sha256"], "size": self.claimed_sizes.get(n, e["size"]),
                                 "pointerSize": 130}}
                        if "lfs_sha256" in e else {})} for n, e in entries.items()]
            return self._send(h, 200, json.dumps(tree).encode(), {}, head)
        prefix = f"/{self.repo}/resolve/"
        if path.startswith(prefix):
            name = path[len(prefix):].split("/", 1)[1]
            if name in self.files:
                return self._file(h, name, head)
        self._send(h, 404, b"{}", {"X-Error-Code": "EntryNotFound"}, head)

    def _file(self, h: BaseHTTPRequestHandler, name: str, head: bool) -> None:
        data = self.files[name]
        entry = listing({name: data})[name]
        etag = entry.get("lfs_sha256") or entry["blob_id"]
        headers = {"X-Repo-Commit": self.commit, "ETag": f'"{etag}"'}
        if "lfs_sha256" in entry:
            headers.update({"X-Linked-Etag": f'"{etag}"',
                            "X-Linked-Size": str(self.claimed_sizes.get(name, len(data)))})
        if name in self.corrupt:
            data = bytes(len(data))
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes=") and not head:
            start = int(rng[6:].split("-")[0])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if head:
            return self._send(h, 200, data, headers, head=True)
        if self.cut_after is not None and name.endswith(".safetensors"):
            h.send_response(206 if start else 200)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body[: self.cut_after])
            h.wfile.flush()
            h.close_connection = True
            return
        self._send(h, 206 if start else 200, body, headers, head)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, body: bytes, headers: dict, head: bool) -> None:
        h.send_response(code)
        for k, v in {**headers, "Content-Length": str(len(body)), "Content-Type": "application/json"}.items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(body)
