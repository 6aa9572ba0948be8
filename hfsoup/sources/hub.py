"""Hub repositories as ingredient sources: resolve a reference to a commit, read metadata, download weights.

A Hub ingredient is a reference `user/name` or `user/name@revision` (a branch, a tag or a commit sha).
[`HubSource`] resolves it to a commit sha once, then pins every download to that commit. Everything goes
through `huggingface_hub`, so its cache, `HF_TOKEN` (or an explicit token), `HF_ENDPOINT` and
`HF_HUB_OFFLINE` work as everywhere else in the ecosystem: a file in the cache is never fetched again, an
interrupted transfer resumes, and a cached ingredient loads offline.

Only what a soup needs is fetched: the config and tokenizer files, then the safetensors weights (and their
index). Tensor names, dtypes and shapes come from the safetensors headers read with HTTP range requests, so a
compatibility check downloads no weights. Pickle weights are never downloaded, and no code file is either,
so no remote code can run. Every `huggingface_hub` failure is translated in one place, `hub_errors`, into
an `hfsoup.errors` exception whose message is one line saying what to do; only a weight file whose header
cannot be parsed is reported where it is read, naming the file. Pushing is in `push.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, constants, get_cached_repo_tree, snapshot_download, try_to_load_from_cache
from huggingface_hub import errors as hf_errors

from ..errors import (
    HubAuthError,
    HubError,
    HubUnreachableError,
    IngredientNotFoundError,
    RepoNotFoundError,
    RevisionNotFoundError,
    first_line,
)
from .safetensors import (
    TensorInfo,
    invalid_safetensors,
    read_json_object,
    read_tensor_infos,
    select_weight_files,
)

__all__ = ["HubSource", "hub_errors"]

logger = logging.getLogger(__name__)

# What `metadata_dir` downloads: the config, the model card, every file a tokenizer may be saved as, and the
# weights index.
METADATA_FILES = [
    "config.json",
    "README.md",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "spm.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "chat_template.jinja",
    constants.SAFETENSORS_INDEX_FILE,
]


@contextmanager
def hub_errors(reference: str) -> Iterator[None]:
    """Translate the `huggingface_hub` and network errors raised inside into `hfsoup.errors`, one line each.

    Args:
        reference: what was being fetched or pushed (`user/name` or `user/name@revision`), for the messages.

    Raises:
        `HubAuthError`: gated repo, missing or rejected token, or a token without the needed rights.
        `RepoNotFoundError`: no such repository (or the token cannot see it).
        `RevisionNotFoundError`: no such branch, tag or commit.
        `HubUnreachableError`: the Hub cannot be reached, or offline mode is on, and the files are not cached.
        `HubError`: any other answer of the Hub.
    """
    repo_id = reference.partition("@")[0]
    endpoint = constants.ENDPOINT
    login = "log in with `hf auth login`, set HF_TOKEN or pass --token"
    try:
        yield
    except hf_errors.GatedRepoError as err:
        raise HubAuthError(
            f"{repo_id} is gated: accept its conditions at {endpoint}/{repo_id}, then use a token of that account "
            f"({login})",
            repo_id,
        ) from err
    except hf_errors.RepositoryNotFoundError as err:
        if not _sent_token(err):
            raise HubAuthError(
                f"{repo_id} was not found on {endpoint}, or it is private and no token was sent: check the name, "
                f"or {login}",
                repo_id,
            ) from err
        raise RepoNotFoundError(
            f"{repo_id} was not found on {endpoint} (or your token cannot see it): check the repository name",
            repo_id,
        ) from err
    except hf_errors.RevisionNotFoundError as err:
        raise RevisionNotFoundError(
            f"{reference}: no such revision in {repo_id}: give a branch, a tag or a commit sha of the repository",
            repo_id,
        ) from err
    except hf_errors.HfHubHTTPError as err:
        raise _http_error(err, reference, repo_id, login) from err
    except (
        hf_errors.OfflineModeIsEnabled,
        hf_errors.LocalEntryNotFoundError,
        hf_errors.RevisionResolutionError,
        httpx2.TransportError,
    ) as err:
        if constants.is_offline_mode():
            raise HubUnreachableError(
                f"HF_HUB_OFFLINE is set and {reference} needs the Hub (only files already in the cache "
                f"{constants.HF_HUB_CACHE} work offline): unset HF_HUB_OFFLINE",
                repo_id,
            ) from err
        raise HubUnreachableError(
            f"cannot reach the Hub at {endpoint} for {reference} ({type(err).__name__}), and the local cache "
            "cannot serve it: check your connection, proxy or HF_ENDPOINT",
            repo_id,
        ) from err


def _http_error(err: hf_errors.HfHubHTTPError, reference: str, repo_id: str, login: str) -> HubError:
    """The hfsoup error of an HTTP error answer of the Hub, by its status."""
    endpoint = constants.ENDPOINT
    status = err.response.status_code
    detail = first_line(Exception(err.server_message or str(err)))
    if status == 401 and not _sent_token(err):
        return HubAuthError(f"{reference} needs a Hugging Face token: {login}", repo_id)
    if status == 401:
        return HubAuthError(
            f"{endpoint} rejected the token ({detail}): check HF_TOKEN or --token, or log in again with "
            "`hf auth login`",
            repo_id,
        )
    if status == 403:
        return HubAuthError(
            f"{reference}: the token is not allowed to do this ({detail}); use a token with the needed "
            f"access (write access to {repo_id.split('/')[0]} to push)",
            repo_id,
        )
    if status >= 500:
        return HubUnreachableError(
            f"{endpoint} failed with HTTP {status} on {reference}: try again later", repo_id
        )
    return HubError(f"{reference}: {endpoint} answered HTTP {status}: {detail}", repo_id)


def _sent_token(err: hf_errors.HfHubHTTPError) -> bool:
    return "authorization" in err.response.request.headers


class HubSource:
    """A Hub repository at a resolved commit, whose files are fetched on demand into the Hugging Face cache.

    The revision is resolved to a commit sha on construction (one API call; offline, from the cache), and
    every later download is pinned to that sha, so all files of an ingredient come from the same commit.

    Args:
        repo_id: `user/name`.
        revision: a branch, a tag or a commit sha; the default branch if `None`.
        token: a Hub token, `None` for the saved login or `HF_TOKEN`, `False` to send none.

    Attributes:
        reference: the reference as written, e.g. `"alice/bert-mrpc@main"`.
        revision: the resolved commit sha (40 hex digits).

    Raises:
        `RepoNotFoundError`, `RevisionNotFoundError`, `HubAuthError`, `HubUnreachableError`: see `hub_errors`.

    Example:
        ```python
        >>> source = HubSource("alice/bert-mrpc", "main")
        >>> source.revision
        '5f1c0e1e2d9d3c1b2a8e4f6a7b9c0d1e2f3a4b5c'
        >>> infos = source.tensor_infos()  # no weight downloaded
        >>> files = source.weight_files()  # now the safetensors files are
        ```
    """

    def __init__(self, repo_id: str, revision: str | None = None, *, token: str | bool | None = None):
        self.repo_id = repo_id
        self.reference = repo_id if revision is None else f"{repo_id}@{revision}"
        self._token = token
        self._api = HfApi(token=token)
        with hub_errors(self.reference):
            self.revision: str = self._api.resolve_revision(repo_id, revision=revision).resolved
        logger.info("Resolved %s to commit %s", self.reference, self.revision)

    def metadata_dir(self) -> Path:
        """The cached snapshot folder of the commit, holding its config, tokenizer files and weights index.

        Only these small files are downloaded, on the first call.

        Raises:
            `IngredientNotFoundError`: the repository has no `config.json`.
            `UnsafeWeightsError`: its `config.json` is not a JSON object.
        """
        return self._metadata_dir

    @cached_property
    def _metadata_dir(self) -> Path:
        folder = self._download(METADATA_FILES)
        if not (folder / constants.CONFIG_NAME).is_file():
            raise IngredientNotFoundError(
                f"{self.reference} has no {constants.CONFIG_NAME}, so it is not a transformers model repository; "
                "push the model with `model.push_to_hub(...)` or `model.save_pretrained(folder)`",
                reference=self.reference,
            )
        self._config = read_json_object(
            folder / constants.CONFIG_NAME, f"{self.reference}/{constants.CONFIG_NAME}"
        )
        return folder

    def tensor_infos(self) -> dict[str, TensorInfo]:
        """Every tensor's dtype and shape, from the safetensors headers, without downloading any weight.

        A header is read from the cached file when the weights were downloaded already, otherwise with an
        HTTP range request.

        Raises:
            `UnsafeWeightsError`: the repository has only pickle weights, or a header is not a valid one.
        """
        infos: dict[str, TensorInfo] = {}
        for name in self._weight_names:
            cached = try_to_load_from_cache(self.repo_id, name, revision=self.revision)
            if isinstance(cached, str):
                infos.update(read_tensor_infos(Path(cached)))
                continue
            infos.update(self._remote_header(name))
        return infos

    def _remote_header(self, name: str) -> dict[str, TensorInfo]:
        """The tensors declared by the header of the weight file `name`, read with HTTP range requests.

        Only the header travels, so a file whose tensors do not cover it exactly (a truncated upload) is
        noticed when it is downloaded and opened, not here.
        """
        with hub_errors(self.reference):
            try:
                header = self._api.parse_safetensors_file_metadata(self.repo_id, name, revision=self.revision)
                return {k: TensorInfo(dtype=v.dtype, shape=tuple(v.shape)) for k, v in header.tensors.items()}
            except hf_errors.SafetensorsParsingError as error:
                # Its first sentence, without the repo and revision the message repeats.
                detail = first_line(error).split("): ")[-1].split(". ")[0].rstrip(".")
                raise invalid_safetensors(f"{self.reference}/{name}", detail) from error
            # huggingface_hub parses a JSON header that is not an object (a list, a tensor given as a number)
            # without checking its type, and fails with these.
            except (AttributeError, TypeError, ValueError) as error:
                detail = "its header is not a JSON object of tensors with a dtype, a shape and offsets"
                raise invalid_safetensors(f"{self.reference}/{name}", detail) from error

    def weight_files(self) -> list[Path]:
        """Download the safetensors weights of the commit (all shards), and return their local paths.

        Raises:
            `UnsafeWeightsError`: the repository has only pickle weights.
        """
        folder = self._download(self._weight_names)
        return [folder / name for name in self._weight_names]

    @cached_property
    def _weight_names(self) -> list[str]:
        """The weight files `from_pretrained` would load from this commit (see `select_weight_files`)."""
        self.metadata_dir()
        files = set(self._repo_files())

        def read_json(name: str) -> dict:
            return read_json_object(self._download([name]) / name, f"{self.reference}/{name}")

        return select_weight_files(
            self.reference,
            files.__contains__,
            [name for name in files if "/" not in name],
            read_json,
            self._config.get("transformers_weights"),
        )

    def snapshot(self) -> Path:
        """Download the metadata and the weights of the commit; the local snapshot folder (a model folder)."""
        return self._download([*METADATA_FILES, *self._weight_names])

    def _repo_files(self) -> list[str]:
        """The paths of every file of the commit, from the listing the first snapshot download cached."""
        with hub_errors(self.reference):
            try:
                return [file.path for file in get_cached_repo_tree(self.repo_id, revision=self.revision)]
            # No cached listing: the cache was filled by another tool, or is read-only.
            except hf_errors.CachedRepoTreeNotFoundError:
                return self._api.list_repo_files(self.repo_id, revision=self.revision)

    def _download(self, filenames: list[str]) -> Path:
        """Download those of `filenames` that exist in the commit (resuming partial files); the snapshot folder."""
        with hub_errors(self.reference):
            folder = snapshot_download(
                self.repo_id, revision=self.revision, allow_patterns=filenames, token=self._token
            )
        return Path(folder)

    def __repr__(self) -> str:
        return f"HubSource({self.reference!r}, revision={self.revision[:7]!r})"
