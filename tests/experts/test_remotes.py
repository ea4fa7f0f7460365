"""Push and pull: file:// end to end, and hf:// against a local stand-in of the Hub's HTTP API.

The stand-in (`FakeHub`) is a small http.server on 127.0.0.1 speaking the endpoints the real
huggingface_hub client calls for what t2 does: create a repo, validate card YAML, preupload +
NDJSON commit (regular-file mode; the Hub's LFS/Xet transfer is the client's own business), repo
info, tree listing, and HEAD/GET `resolve`. t2 talks to it through an unmodified `HfApi`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch

from t2cli.errors import BadInputError, IntegrityError, NotFoundError
from t2cli.experts.manifest import Manifest
from t2cli.experts.manifest_fields import MANIFEST_FILE, Z_FILE
from t2cli.experts.registry import Registry
from t2cli.experts.remotes import pull, push
from t2cli.experts.remotes.base import parse_remote
from t2cli.experts.versions import STAGING_PREFIX
from tests.helpers import make_expert

TOKEN = "hf_t2_test_token"


# ---- the Hub stand-in ---------------------------------------------------------------------------


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def snapshot(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        commit = self.branches.get(revision, revision)
        return (commit, self.commits[commit]) if commit in self.commits else None


class FakeHub:
    """Repos held in memory; writes need the bearer token, reads are public."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.url = ""

    def commit(self, repo: FakeRepo, branch: str, files: dict[str, bytes]) -> str:
        parent = repo.branches.get(branch, "")
        oid = hashlib.sha1(f"{parent}{len(repo.commits)}{sorted(files)}".encode()).hexdigest()
        repo.commits[oid] = files
        repo.branches[branch] = oid
        return oid

    def head_files(self, repo_id: str) -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.branches["main"]]


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # a stuck client cannot hold a server thread for ever
    hub: FakeHub

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    # -- plumbing

    def reply(
        self, status: int, payload: object = None, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        if payload is not None:
            body = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status: int, code: str, headers: dict[str, str] | None = None) -> None:
        self.reply(status, {"error": code}, {"X-Error-Code": code, **(headers or {})})

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self.reply(401, {"error": "Invalid credentials"})
        return False

    def route(self) -> None:
        path = unquote(urlparse(self.path).path)
        self.hub.calls.append(f"{self.command} {path}")
        with self.hub.lock:
            for method, pattern, handler in ROUTES:
                match = re.fullmatch(pattern, path)
                if match and self.command == method:
                    return handler(self, *match.groups())
        self.reply(404, {"error": f"no route for {self.command} {path}"})

    do_GET = do_HEAD = do_POST = route

    def repo(self, repo_id: str) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self.error(404, "RepoNotFound")
        return repo

    def snapshot(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        repo = self.repo(repo_id)
        if repo is None:
            return None
        found = repo.snapshot(revision)
        if found is None:
            self.error(404, "RevisionNotFound")
        return found

    # -- endpoints

    def create_repo(self) -> None:
        if not self.authorized():
            return
        payload = json.loads(self.body())
        repo_id = f"{payload['organization']}/{payload['name']}"
        if repo_id in self.hub.repos:  # the Hub names the existing repo, and HfApi reads it
            return self.reply(409, {"error": "You already created this model repo", "url": f"{self.hub.url}/{repo_id}"})
        repo = self.hub.repos[repo_id] = FakeRepo()
        self.hub.commit(repo, "main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
        self.reply(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id})

    def validate_yaml(self) -> None:
        self.body()
        self.reply(200, {})

    def repo_info(self, repo_id: str, revision: str = "main") -> None:
        found = self.snapshot(repo_id, revision)
        if found:
            commit, files = found
            self.reply(200, {"id": repo_id, "sha": commit, "siblings": [{"rfilename": p} for p in sorted(files)]})

    def tree(self, repo_id: str, revision: str, prefix: str | None) -> None:
        found = self.snapshot(repo_id, revision)
        if found:
            entries = [
                {"type": "file", "path": p, "size": len(data), "oid": git_blob_sha(data)}
                for p, data in sorted(found[1].items())
                if prefix is None or p.startswith(prefix.rstrip("/") + "/")
            ]
            self.reply(200, entries)

    def preupload(self, repo_id: str, revision: str) -> None:
        if not self.authorized():
            return
        found = self.snapshot(repo_id, revision)
        if found:
            files = found[1]
            wanted = json.loads(self.body())["files"]
            self.reply(
                200,
                {
                    "files": [
                        {
                            "path": f["path"],
                            "uploadMode": "regular",
                            "shouldIgnore": False,
                            "oid": git_blob_sha(files[f["path"]]) if f["path"] in files else None,
                        }
                        for f in wanted
                    ]
                },
            )

    def commit(self, repo_id: str, revision: str) -> None:
        if not self.authorized():
            return
        lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
        found = self.snapshot(repo_id, revision)
        if not found:
            return
        head, files = found
        header = lines[0]["value"]
        if header.get("parentCommit", head) != head:
            return self.reply(412, {"error": "A commit has happened since. Please refresh and try again."})
        files = dict(files)
        for line in lines[1:]:
            if line["key"] != "file":
                return self.reply(400, {"error": f"stand-in does not support {line['key']}"})
            files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        oid = self.hub.commit(self.hub.repos[repo_id], revision, files)
        self.reply(200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{oid}", "commitOid": oid})

    def resolve(self, repo_id: str, revision: str, path: str) -> None:
        found = self.snapshot(repo_id, revision)
        if found:
            commit, files = found
            if path not in files:
                return self.error(404, "EntryNotFound", {"X-Repo-Commit": commit})
            data = files[path]
            headers = {
                "X-Repo-Commit": commit,
                "ETag": f'"{git_blob_sha(data)}"',
                "Content-Type": "application/octet-stream",
            }
            self.reply(200, headers=headers, body=data)


_REPO = r"([^/]+/[^/]+)"
ROUTES = [
    ("POST", r"/api/repos/create", HubHandler.create_repo),
    ("POST", r"/api/validate-yaml", HubHandler.validate_yaml),
    ("GET", rf"/api/models/{_REPO}", HubHandler.repo_info),
    ("GET", rf"/api/models/{_REPO}/revision/([^/]+)", HubHandler.repo_info),
    ("GET", rf"/api/models/{_REPO}/tree/([^/]+)(?:/(.+))?", HubHandler.tree),
    ("POST", rf"/api/models/{_REPO}/preupload/([^/]+)", HubHandler.preupload),
    ("POST", rf"/api/models/{_REPO}/commit/([^/]+)", HubHandler.commit),
    ("HEAD", rf"/{_REPO}/resolve/([^/]+)/(.+)", HubHandler.resolve),
    ("GET", rf"/{_REPO}/resolve/([^/]+)/(.+)", HubHandler.resolve),
    # Dataset repos (task data: tests/tasks/test_hubdata.py, test_mbpp.py); one namespace for model and
    # dataset repos is enough here.
    ("GET", rf"/api/datasets/{_REPO}", HubHandler.repo_info),
    ("GET", rf"/api/datasets/{_REPO}/revision/([^/]+)", HubHandler.repo_info),
    ("GET", rf"/api/datasets/{_REPO}/tree/([^/]+)(?:/(.+))?", HubHandler.tree),
    ("HEAD", rf"/datasets/{_REPO}/resolve/([^/]+)/(.+)", HubHandler.resolve),
    ("GET", rf"/datasets/{_REPO}/resolve/([^/]+)/(.+)", HubHandler.resolve),
]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    state = FakeHub()
    handler = type("BoundHubHandler", (HubHandler,), {"hub": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    # The token reaches the stand-in the way it reaches the Hub: huggingface_hub reads HF_TOKEN itself.
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Online, but only to this stand-in (tests/conftest.py keeps every other test offline).
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub's default endpoint is the stand-in, as HF_ENDPOINT makes it (read at import there).
    monkeypatch.setenv("HF_ENDPOINT", state.url)
    monkeypatch.setattr(constants, "ENDPOINT", state.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", state.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def api(hub: FakeHub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url)


# ---- parsing ------------------------------------------------------------------------------------


def test_parse_remote() -> None:
    assert parse_remote("hf://me/bank").repo_id == "me/bank"
    assert parse_remote("hf://me/bank@v2").revision == "v2"
    assert parse_remote("file:///srv/t2%20reg").path == Path("/srv/t2 reg")
    for bad in ("hf://bank", "hf://me/bank@", "file://relative/path", "s3://bucket/x", "/abs/path"):
        with pytest.raises(BadInputError):
            parse_remote(bad)


# ---- file:// ------------------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "local")


def test_file_push_pull_round_trip(local: Registry, tmp_path: Path) -> None:
    local.publish(make_expert(seed=0))
    local.publish(make_expert(seed=1))
    url = f"file://{tmp_path / 'remote'}"
    pushed = push(local, "arc@1", url)
    assert (pushed.action, pushed.spec, pushed.model_slug) == ("pushed", "arc@1", "tiny-llama")
    assert push(local, "arc", url).spec == "arc@2"
    assert push(local, "arc@2", url).action == "unchanged"
    assert Registry(tmp_path / "remote").catalog() == {"tiny-llama": {"arc": [1, 2]}}

    other = Registry(tmp_path / "other")
    pulled = pull(other, url, "arc")
    assert (pulled.action, pulled.spec) == ("pulled", "arc@2")
    assert pull(other, url, "arc@2").action == "unchanged"
    assert pull(other, url, "arc@1").action == "pulled"
    theirs, mine = other.resolve("arc@2").load(), local.resolve("arc@2").load()
    assert theirs.manifest == mine.manifest
    assert all(torch.equal(theirs.z[k], mine.z[k]) for k in mine.z)


def test_file_pull_refuses_tampered_remote_and_installs_nothing(local: Registry, tmp_path: Path) -> None:
    remote = Registry(tmp_path / "remote")
    ref = remote.publish(make_expert())
    data = bytearray((ref.path / Z_FILE).read_bytes())
    data[-1] ^= 0x01
    (ref.path / Z_FILE).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="checksum mismatch on z.safetensors"):
        pull(local, f"file://{remote.root}", "arc")
    assert local.catalog() == {}
    assert not list(local.root.rglob(f"{STAGING_PREFIX}*"))


def test_file_push_refuses_a_different_version_with_the_same_number(local: Registry, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'remote'}"
    local.publish(make_expert(seed=0))
    push(local, "arc", url)
    elsewhere = Registry(tmp_path / "elsewhere")
    elsewhere.publish(make_expert(seed=9))
    with pytest.raises(IntegrityError, match="already exists .* with other content"):
        push(elsewhere, "arc@1", url)
    with pytest.raises(IntegrityError, match="already exists .* with other content"):
        pull(elsewhere, url, "arc@1")


def test_file_remote_errors(local: Registry, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        pull(local, f"file://{tmp_path / 'nowhere'}", "arc")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="expert 'arc' not found in file://"):
        pull(local, f"file://{tmp_path / 'empty'}", "arc")
    with pytest.raises(NotFoundError, match="expert 'arc' not found"):
        push(local, "arc", f"file://{tmp_path / 'empty'}")


# ---- hf:// against the stand-in -----------------------------------------------------------------


def test_hub_push_pull_round_trip_with_card(local: Registry, tmp_path: Path, hub: FakeHub, api) -> None:
    adapter = tmp_path / "adapter_config.json"
    adapter.write_text('{"r": 16}')
    local.publish(make_expert(seed=0, metrics={"accuracy": 0.61}), extra_files={"adapter_config.json": adapter})
    local.publish(make_expert(seed=1, metrics={"accuracy": 0.64}))
    local.publish(make_expert("gsm8k", task="gsm8k", description="Solves | grade-school math."))

    assert push(local, "arc@1", "hf://me/bank", api=api).action == "pushed"
    assert push(local, "arc", "hf://me/bank", api=api).spec == "arc@2"
    assert push(local, "gsm8k", "hf://me/bank", api=api).action == "pushed"
    files = hub.head_files("me/bank")
    assert {p for p in files if p.startswith("tiny-llama/arc/1/")} == {
        f"tiny-llama/arc/1/{name}" for name in (Z_FILE, MANIFEST_FILE, "adapter_config.json")
    }
    assert files["tiny-llama/arc/2/z.safetensors"] == (local.resolve("arc@2").path / Z_FILE).read_bytes()
    card = files["README.md"].decode()
    assert "library_name: t2" in card
    assert "| `arc` | 1, 2 | tiny-llama | arc | accuracy 0.64 |" in card
    assert "Solves \\| grade-school math." in card
    assert "t2 registry pull hf://me/bank arc" in card

    commits = len(hub.repos["me/bank"].commits)
    assert push(local, "arc@2", "hf://me/bank", api=api).action == "unchanged"
    assert len(hub.repos["me/bank"].commits) == commits  # no empty commit

    other = Registry(tmp_path / "other")
    pulled = pull(other, "hf://me/bank", "arc", api=api)
    assert (pulled.action, pulled.spec) == ("pulled", "arc@2")
    assert pull(other, "hf://me/bank", "arc@1", api=api).action == "pulled"
    assert pull(other, "hf://me/bank", "arc@1", api=api).action == "unchanged"
    first = other.resolve("arc@1").load()
    assert first.manifest == local.resolve("arc@1").load().manifest
    assert (other.resolve("arc@1").path / "adapter_config.json").read_text() == '{"r": 16}'
    assert other.verify() == []


def test_hub_pull_at_a_pinned_revision(local: Registry, tmp_path: Path, hub: FakeHub, api) -> None:
    local.publish(make_expert(seed=0))
    local.publish(make_expert(seed=1))
    push(local, "arc@1", "hf://me/bank", api=api)
    pinned = hub.repos["me/bank"].branches["main"]
    push(local, "arc@2", "hf://me/bank", api=api)
    other = Registry(tmp_path / "other")
    assert pull(other, f"hf://me/bank@{pinned}", "arc", api=api).spec == "arc@1"
    with pytest.raises(NotFoundError, match="arc@2 not found in hf://me/bank@"):
        pull(other, f"hf://me/bank@{pinned}", "arc@2", api=api)
    with pytest.raises(NotFoundError, match="revision 'nope' not found"):
        pull(other, "hf://me/bank@nope", "arc", api=api)


def test_hub_pull_refuses_tampered_files_and_installs_nothing(
    local: Registry, tmp_path: Path, hub: FakeHub, api
) -> None:
    local.publish(make_expert())
    push(local, "arc", "hf://me/bank", api=api)
    files = hub.head_files("me/bank")
    data = bytearray(files["tiny-llama/arc/1/z.safetensors"])
    data[-1] ^= 0x01
    files["tiny-llama/arc/1/z.safetensors"] = bytes(data)
    other = Registry(tmp_path / "other")
    with pytest.raises(IntegrityError, match="checksum mismatch on z.safetensors"):
        pull(other, "hf://me/bank", "arc", api=api)
    assert other.catalog() == {}
    assert not list(other.root.rglob(f"{STAGING_PREFIX}*"))


def test_hub_push_refuses_other_content_under_the_same_version(
    local: Registry, tmp_path: Path, hub: FakeHub, api
) -> None:
    local.publish(make_expert(seed=0))
    push(local, "arc", "hf://me/bank", api=api)
    elsewhere = Registry(tmp_path / "elsewhere")
    elsewhere.publish(make_expert(seed=3))
    commits = len(hub.repos["me/bank"].commits)
    with pytest.raises(IntegrityError, match=r"arc@1 \(tiny-llama\) already exists in hf://me/bank with other content"):
        push(elsewhere, "arc", "hf://me/bank", api=api)
    assert len(hub.repos["me/bank"].commits) == commits
    remote = Manifest.from_yaml(hub.head_files("me/bank")["tiny-llama/arc/1/manifest.yaml"].decode())
    assert remote.sha256 == local.resolve("arc@1").load().manifest.sha256


def test_hub_errors_are_one_line_t2_errors(
    local: Registry, tmp_path: Path, hub: FakeHub, api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import HfApi

    local.publish(make_expert())
    with pytest.raises(NotFoundError, match="remote hf://me/missing not found"):
        pull(local, "hf://me/missing", "arc", api=api)
    push(local, "arc", "hf://me/bank", api=api)
    with pytest.raises(NotFoundError, match="expert 'gsm8k' not found in hf://me/bank; known: arc"):
        pull(local, "hf://me/bank", "gsm8k", api=api)
    with pytest.raises(BadInputError, match="push to a branch"):
        push(local, "arc", f"hf://me/bank@{'a' * 40}", api=api)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    local.publish(make_expert(seed=4))
    with pytest.raises(NotFoundError, match=r"no access to hf://me/bank \(HTTP 401\)"):
        push(local, "arc@2", "hf://me/bank", api=api)
    closed = HfApi(endpoint="http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(NotFoundError, match="cannot reach http://127.0.0.1:9 for hf://me/bank"):
        pull(local, "hf://me/bank", "arc", api=closed)
