"""A small Hub-compatible HTTP server for the tests, spoken to by the real `huggingface_hub` client.

It serves model repositories held in memory as git-like histories: every commit is a full snapshot of the
repo's files under a 40-hex sha, and branches and tags name commits. It answers the subset of the Hub's HTTP
API that `huggingface_hub` 2.x uses to resolve, list, download and push (see `file_download.py`,
`_snapshot_download.py`, `hf_api.py` and `_commit_api.py`), with the Hub's status codes and the
`X-Error-Code` / `X-Error-Message` headers its client turns into typed errors:

- an invalid token is refused everywhere with 401 "Invalid credentials in Authorization header";
- a missing or private repo is 401 `RepoNotFound` for an anonymous caller and 404 for an authenticated one;
- the content of a gated repo is 401 (anonymous) or 403 (no access) `GatedRepo`; its listing is public;
- writing needs a token of the repo's namespace owner, otherwise 403.

Every file is served as a regular git blob (never LFS or Xet): `ETag` is its git blob sha, `HEAD` and
`GET /resolve/` carry `X-Repo-Commit`, and `Range` requests are answered with 206. Uploads are told to travel
inside the commit ("regular" upload mode). Every request is logged in `HubServer.requests`.

Example:
    ```py
    >>> server = HubServer()
    >>> server.add_model("alice/tiny", Path("tiny_model_folder"))
    >>> point_client_at(server.url, monkeypatch)  # in a test
    >>> server.stop()
    ```
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = (
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
)
RANGE = re.compile(r"bytes=(\d*)-(\d*)")
INVALID_TOKEN = "Invalid credentials in Authorization header"


def git_blob_sha(data: bytes) -> str:
    """The git object id of a file's content, which the Hub uses as the ETag of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, keyed by its posix path relative to `folder`."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    title: str
    author: str
    parent: str | None
    date: str = field(default_factory=_now)


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    gated: bool = False
    granted: set[str] = field(default_factory=set)  # users let through the gate
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.repo_id.split("/")[0]

    def resolve(self, revision: str) -> Commit | None:
        """The commit a branch, a tag, a full sha or an unambiguous short sha (7+ hex digits) names."""
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [s for s in self.commits if s.startswith(revision)]
            sha = matches[0] if len(matches) == 1 else None
        return self.commits.get(sha) if sha else None

    def history(self, commit: Commit) -> list[Commit]:
        """`commit` and its ancestors, newest first."""
        chain = [commit]
        while chain[-1].parent is not None:
            chain.append(self.commits[chain[-1].parent])
        return chain


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # percent-decoded, without the query string
    range: str | None
    authenticated: bool  # a token was sent
    status: int


class HubServer:
    """A Hub-compatible server on 127.0.0.1 (a free port), run by a daemon thread until `stop()`.

    Args:
        tokens: token -> user name; the default knows two users, `alice` and `bob`.
    """

    ALICE = "hf_alice_token"
    BOB = "hf_bob_token"

    def __init__(self, tokens: dict[str, str] | None = None):
        self.tokens = tokens if tokens is not None else {self.ALICE: "alice", self.BOB: "bob"}
        self.repos: dict[str, Repo] = {}
        self.requests: list[LoggedRequest] = []
        self.interruptions: dict[tuple[str, str], int] = {}  # (repo_id, path) -> bytes sent before dropping
        self.lock = threading.RLock()
        self._counter = itertools.count()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        """Forget every repo and every logged request."""
        with self.lock:
            self.repos.clear()
            self.requests.clear()
            self.interruptions.clear()

    def interrupt(self, repo_id: str, path: str, after_bytes: int) -> None:
        """Make the next whole GET of `path` drop the connection after `after_bytes` bytes of content."""
        self.interruptions[(repo_id, path)] = after_bytes

    # ---------------------------------------------------------------- content

    def create_repo(self, repo_id: str, *, private: bool = False, gated: bool = False) -> Repo:
        """An empty repo whose `main` holds one commit with a `.gitattributes`, as on the Hub."""
        with self.lock:
            repo = self.repos[repo_id] = Repo(repo_id, private=private, gated=gated)
            self.commit(repo_id, {".gitattributes": GITATTRIBUTES}, message="initial commit")
            return repo

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        message: str = "Upload files",
        deleted: tuple[str, ...] = (),
        author: str | None = None,
    ) -> str:
        """Commit `files` (added or overwritten) and `deleted` paths or folders on `branch`; returns the sha."""
        with self.lock:
            repo = self.repos[repo_id]
            parent = repo.commits.get(repo.branches.get(branch, ""))
            snapshot = {} if parent is None else dict(parent.files)
            for path in deleted:
                snapshot = {
                    k: v
                    for k, v in snapshot.items()
                    if k != path and not k.startswith(path.rstrip("/") + "/")
                }
            snapshot.update(files)
            digest = json.dumps([next(self._counter), parent and parent.sha, message, sorted(snapshot)])
            sha = hashlib.sha1(digest.encode() + b"".join(snapshot.values())).hexdigest()
            repo.commits[sha] = Commit(sha, snapshot, message, author or repo.owner, parent and parent.sha)
            repo.branches[branch] = sha
            return sha

    def add_model(
        self,
        repo_id: str,
        folder: Path,
        *,
        extra_files: dict[str, bytes] | None = None,
        private: bool = False,
        gated: bool = False,
    ) -> str:
        """Create `repo_id` (if needed) and commit the files of `folder` (plus `extra_files`) on main."""
        if repo_id not in self.repos:
            self.create_repo(repo_id, private=private, gated=gated)
        return self.commit(
            repo_id, {**read_folder(folder), **(extra_files or {})}, message=f"Add {folder.name}"
        )

    def create_tag(self, repo_id: str, tag: str, revision: str = "main") -> None:
        repo = self.repos[repo_id]
        repo.tags[tag] = repo.resolve(revision).sha

    def create_branch(self, repo_id: str, branch: str, revision: str = "main") -> None:
        repo = self.repos[repo_id]
        repo.branches[branch] = repo.resolve(revision).sha

    # ---------------------------------------------------------------- request log

    def file_requests(self, repo_id: str, method: str = "GET") -> list[LoggedRequest]:
        """The logged `/resolve/` requests of `repo_id` with `method`."""
        prefix = f"/{repo_id}/resolve/"
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    def downloaded_files(self, repo_id: str) -> set[str]:
        """Paths of `repo_id` whose content was served by a GET, whole or from an offset (a resumed download).

        A GET of a closed range from byte 0 (`bytes=0-N`, how a safetensors header is read) is not counted.
        """
        served = set()
        for r in self.file_requests(repo_id):
            start, _, end = (r.range or "bytes=0-").removeprefix("bytes=").partition("-")
            if r.status in (200, 206) and not (start == "0" and end):
                served.add(r.path.split("/resolve/", 1)[1].split("/", 1)[1])
        return served


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HubTestServer/1.0"

    # ---------------------------------------------------------------- plumbing

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def log_message(self, format, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.logged_path = unquote(url.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        self._route(method, [unquote(p) for p in url.path.split("/")[1:]])

    def _route(self, method: str, parts: list[str]) -> None:
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth else None
        self.user = self.hub.tokens.get(token) if token else None
        if token and self.user is None:
            return self._error(401, None, INVALID_TOKEN)
        with self.hub.lock:
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                action = parts[4] if len(parts) > 4 else "revision"
                handler = getattr(self, f"_{method.lower()}_{action}", None)
                if handler is not None:
                    return handler("/".join(parts[2:4]), parts[5:])
            elif method == "POST" and parts == ["api", "repos", "create"]:
                return self._create_repo()
            elif method == "POST" and parts == ["api", "validate-yaml"]:
                return self._validate_yaml()
            elif method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(
                    "/".join(parts[:2]), parts[3], "/".join(parts[4:]), head=method == "HEAD"
                )
        self._error(404, None, "Sorry, we can't find the page you are looking for.")

    def _send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
    ):
        # Logged before answering, so that a test reading the log after a call sees every request of it.
        self.hub.requests.append(
            LoggedRequest(
                self.command,
                self.logged_path,
                self.headers.get("Range"),
                "Authorization" in self.headers,
                status,
            )
        )
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, payload, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _error(
        self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None
    ) -> None:
        extra = {"X-Error-Message": message, "Content-Type": "application/json", **(headers or {})}
        if code is not None:
            extra["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), extra, head=self.command == "HEAD")

    # ---------------------------------------------------------------- access rules

    def _readable(self, repo_id: str) -> Repo | None:
        """The repo if the caller may see it; otherwise answers 401 (anonymous) or 404, as the Hub does."""
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and self.user != repo.owner):
            self._error(401 if self.user is None else 404, "RepoNotFound", "Repository not found")
            return None
        return repo

    def _writable(self, repo_id: str) -> Repo | None:
        repo = self._readable(repo_id)
        if repo is not None and self.user != repo.owner:
            self._error(403, None, f"You don't have the rights to write to {repo_id}")
            return None
        return repo

    def _commit_at(self, repo: Repo, revision: str) -> Commit | None:
        commit = repo.resolve(revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    # ---------------------------------------------------------------- read API

    def _get_revision(self, repo_id: str, rest: list[str]) -> None:
        """GET /api/models/{repo_id}[/revision/{revision}]: the model info at a commit."""
        repo = self._readable(repo_id)
        commit = repo and self._commit_at(repo, rest[0] if rest else "main")
        if commit is None:
            return
        blobs = self.query.get("blobs", "").lower() in ("1", "true")
        siblings = [
            {"rfilename": p, **({"size": len(d), "blobId": git_blob_sha(d)} if blobs else {})}
            for p, d in sorted(commit.files.items())
        ]
        self._json(
            {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo.owner,
                "sha": commit.sha,
                "lastModified": commit.date,
                "createdAt": repo.history(commit)[-1].date,
                "private": repo.private,
                "gated": "auto" if repo.gated else False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            }
        )

    def _get_tree(self, repo_id: str, rest: list[str]) -> None:
        """GET /api/models/{repo_id}/tree/{revision}[/{path}]: files and folders, one level or recursive."""
        repo = self._readable(repo_id)
        commit = repo and self._commit_at(repo, rest[0])
        if commit is None:
            return
        base = "/".join(rest[1:]).strip("/")
        prefix = f"{base}/" if base else ""
        inside = {p: d for p, d in commit.files.items() if p.startswith(prefix)}
        if base and not inside:
            return self._error(404, "EntryNotFound", f"{base} does not exist on {rest[0]}")
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        entries: dict[str, dict] = {}
        for path, data in sorted(inside.items()):
            relative = path[len(prefix) :].split("/")
            depth = len(relative) if recursive else 1
            for i in range(1, min(depth, len(relative) - 1) + 1):
                folder = prefix + "/".join(relative[:i])
                entries[folder] = {
                    "type": "directory",
                    "oid": git_blob_sha(folder.encode()),
                    "size": 0,
                    "path": folder,
                }
            if recursive or len(relative) == 1:
                entries[path] = {"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": path}
        self._json(list(entries.values()))

    def _get_refs(self, repo_id: str, rest: list[str]) -> None:
        repo = self._readable(repo_id)
        if repo is None:
            return

        def refs(names: dict[str, str], kind: str) -> list[dict]:
            return [
                {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": s} for n, s in sorted(names.items())
            ]

        self._json(
            {
                "branches": refs(repo.branches, "heads"),
                "tags": refs(repo.tags, "tags"),
                "converts": [],
                "pullRequests": [],
            }
        )

    def _get_commits(self, repo_id: str, rest: list[str]) -> None:
        """GET /api/models/{repo_id}/commits/{revision}: the history, newest first."""
        repo = self._readable(repo_id)
        commit = repo and self._commit_at(repo, rest[0])
        if commit is None:
            return
        self._json(
            [
                {
                    "id": c.sha,
                    "title": c.title,
                    "message": "",
                    "authors": [{"user": c.author}],
                    "date": c.date,
                }
                for c in repo.history(commit)
            ]
        )

    def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        """HEAD/GET /{repo_id}/resolve/{revision}/{path}: a file's content at a commit, with `Range` support."""
        repo = self._readable(repo_id)
        commit = repo and self._commit_at(repo, revision)
        if commit is None:
            return
        if repo.gated and self.user != repo.owner and self.user not in repo.granted:
            if self.user is None:
                message = f"Access to model {repo_id} is restricted. You must be authenticated to access it."
            else:
                message = f"Access to model {repo_id} is restricted and you are not in the authorized list."
            return self._error(401 if self.user is None else 403, "GatedRepo", message)
        headers = {"X-Repo-Commit": commit.sha}
        if path not in commit.files:
            return self._error(404, "EntryNotFound", "Entry not found", headers)
        data = commit.files[path]
        headers |= {
            "ETag": f'"{git_blob_sha(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        match = RANGE.fullmatch(self.headers.get("Range", "").replace(" ", ""))
        if head or match is None:
            cut = None if head else self.hub.interruptions.pop((repo_id, path), None)
            if cut is not None:  # a network failure mid-transfer: announce all, send part, hang up
                self._send(200, data, headers, head=True)
                self.wfile.write(data[:cut])
                self.close_connection = True
                return
            return self._send(200, data, headers, head=head)
        start, end = match.groups()
        first, last = (
            (len(data) - int(end), len(data) - 1) if not start else (int(start), int(end or len(data) - 1))
        )
        if first >= len(data) or first > last:
            return self._error(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{len(data)}"})
        last = min(last, len(data) - 1)
        headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        self._send(206, data[first : last + 1], headers)

    # ---------------------------------------------------------------- write API

    def _create_repo(self) -> None:
        """POST /api/repos/create {name, organization, private | visibility}."""
        payload = json.loads(self.body or b"{}")
        namespace = payload.get("organization") or self.user
        repo_id = f"{namespace}/{payload['name']}"
        if self.user is None:
            return self._error(401, None, "You must be authenticated to create a repository")
        if namespace != self.user:
            return self._error(
                403, None, f"You don't have the rights to create a model under the namespace {namespace}"
            )
        if repo_id in self.hub.repos:
            return self._json(
                {"error": "You already created this model repo", "url": f"{self.hub.url}/{repo_id}"}, 409
            )
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        self.hub.create_repo(repo_id, private=private)
        self._json({"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _post_branch(self, repo_id: str, rest: list[str]) -> None:
        """POST /api/models/{repo_id}/branch/{branch} {startingPoint}."""
        repo = self._writable(repo_id)
        if repo is None:
            return
        branch = "/".join(rest)
        if branch in repo.branches:
            return self._error(409, None, "Reference already exists")
        start = self._commit_at(repo, json.loads(self.body or b"{}").get("startingPoint", "main"))
        if start is not None:
            repo.branches[branch] = start.sha
            self._json({})

    def _post_preupload(self, repo_id: str, rest: list[str]) -> None:
        """POST /api/models/{repo_id}/preupload/{revision}: every file travels inside the commit."""
        repo = self._writable(repo_id)
        commit = repo and self._commit_at(repo, rest[0])
        if commit is None:
            return
        files = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_sha(commit.files[f["path"]]) if f["path"] in commit.files else None,
            }
            for f in json.loads(self.body)["files"]
        ]
        self._json({"files": files, "commitOid": commit.sha})

    def _post_commit(self, repo_id: str, rest: list[str]) -> None:
        """POST /api/models/{repo_id}/commit/{branch}: an NDJSON header line, then one line per operation."""
        repo = self._writable(repo_id)
        branch = rest[0]
        if repo is None or self._commit_at(repo, branch) is None:
            return
        if branch not in repo.branches:
            return self._error(400, None, f"Invalid rev id: {branch} is not a branch")
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent and not repo.branches[branch].startswith(parent):
            return self._error(412, None, "A commit has happened since. Please refresh and try again.")
        files, deleted = {}, []
        for op in lines[1:]:
            if op["key"] == "file":
                files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
            elif op["key"] in ("deletedFile", "deletedFolder"):
                deleted.append(op["value"]["path"])
            else:
                return self._error(
                    400, None, f"Unsupported commit operation {op['key']}: every upload is regular"
                )
        sha = self.hub.commit(
            repo_id, files, branch=branch, message=header["summary"], deleted=tuple(deleted), author=self.user
        )
        self._json(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    def _validate_yaml(self) -> None:
        """POST /api/validate-yaml: the card's YAML front matter must be a mapping."""
        content = json.loads(self.body)["content"]
        match = re.match(r"^---\n(.*?)\n---", content, re.DOTALL)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            metadata = err
        if metadata is not None and not isinstance(metadata, dict):
            return self._json(
                {"errors": [{"message": f"invalid YAML front matter: {metadata}"}], "warnings": []}, 400
            )
        self._json({"errors": [], "warnings": []})


def point_client_at(url: str, monkeypatch, hf_home: Path | None = None) -> None:
    """Make `huggingface_hub`, here and in subprocesses, talk to the Hub at `url`: online, without a token.

    `huggingface_hub` reads `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `HF_HUB_CACHE` and the token path when it is
    imported, so the module constants are patched for this process and the environment for subprocesses.

    Args:
        url: the endpoint, e.g. `HubServer.url`.
        monkeypatch: the test's `monkeypatch`, which undoes everything at the end of the test.
        hf_home: the test's Hugging Face home; its `hub` folder becomes the cache.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    if hf_home is not None:
        monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
