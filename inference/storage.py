"""Model bundles in object storage: ``s3://BUCKET/KEY`` (AWS or any S3-compatible server)
and ``gs://BUCKET/KEY`` (Google Cloud Storage), through one code path: fsspec, which picks
s3fs or gcsfs from the URI's scheme.

Downloads land in a local cache keyed by the object's version (S3 VersionId or ETag, GCS
generation), so a restart does not download an unchanged bundle again; when the store cannot
be reached, the newest cached copy of that URI is used with a warning. A missing object or
a refused request is a ``ModelError`` naming the URI.

Credentials are never read, stored or logged here: s3fs (botocore) and gcsfs (google-auth)
take them from their standard chains (``AWS_*`` variables, shared config files, instance
profiles; ``GOOGLE_APPLICATION_CREDENTIALS``, workload identity). The S3 endpoint is
``MLFLOW_S3_ENDPOINT_URL`` when set (the variable MLflow's own S3 artifact store reads), else
botocore's own (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, AWS itself).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from inference.runtime import current
from vocabulary.errors import ModelError

log = logging.getLogger(__name__)

# URI scheme -> fsspec protocol (and the package that implements it)
PROTOCOLS: dict[str, tuple[str, str]] = {"s3": ("s3", "s3fs"), "gs": ("gcs", "gcsfs")}
ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"


@dataclass(frozen=True)
class ObjectUri:
    """One object in a bucket: ``scheme://bucket/key``."""

    scheme: str  # "s3" or "gs"
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"

    @property
    def protocol(self) -> str:
        """The fsspec protocol that serves this scheme ("s3" or "gcs")."""
        return PROTOCOLS[self.scheme][0]

    @property
    def path(self) -> str:
        """The object as an fsspec path (no scheme)."""
        return f"{self.bucket}/{self.key}"


@dataclass(frozen=True)
class RemoteVersion:
    """What identifies the object's current content."""

    tag: str  # "version:<id>" or "etag:<etag>"
    size: int
    md5: bytes | None  # the content MD5 when the store states it (single-part ETag, GCS md5Hash)


def is_remote(ref: object) -> bool:
    """True for an ``s3://`` or ``gs://`` reference."""
    if not isinstance(ref, str):
        return False
    return urlsplit(ref).scheme.lower() in PROTOCOLS


def parse_uri(uri: str) -> ObjectUri:
    """``s3://bucket/key`` or ``gs://bucket/key``; ModelError for anything else."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in PROTOCOLS:
        raise ModelError(f"not an object-storage URI (s3:// or gs://): {uri}")
    if "@" in parts.netloc:  # never echo the URI: it holds credentials
        raise ModelError(
            f"{scheme}:// URI with credentials in it refused; use the store's credential chain"
        )
    key = parts.path.lstrip("/")
    if not parts.netloc or not key or key.endswith("/") or parts.query or parts.fragment:
        raise ModelError(f"expected {scheme}://BUCKET/KEY (one object), got {uri}")
    return ObjectUri(scheme, parts.netloc, key)


def filesystem_options(obj: ObjectUri) -> dict[str, Any]:
    """Keyword arguments for the fsspec filesystem of OBJ (no credentials among them)."""
    opts: dict[str, Any] = {"skip_instance_cache": True}  # the environment may have changed
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip()
    if obj.scheme == "s3" and endpoint:
        opts["endpoint_url"] = endpoint
    return opts


def open_filesystem(obj: ObjectUri) -> Any:
    """The fsspec filesystem for OBJ's scheme (s3fs or gcsfs), imported only now."""
    import fsspec

    protocol, package = PROTOCOLS[obj.scheme]
    try:
        return fsspec.filesystem(protocol, **filesystem_options(obj))
    except ImportError as exc:
        raise ModelError(f"{obj}: {obj.scheme}:// needs the {package} package") from exc


def default_cache_dir() -> Path:
    """The setting ``model_cache_dir`` (``inference.runtime``), else
    ``$XDG_CACHE_HOME/brainxai/models``."""
    configured = current().model_cache_dir
    if configured is not None:
        return configured
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "brainxai" / "models"


def fetch(uri: str, cache_dir: Path | None = None) -> Path:
    """A local copy of the object at URI, downloaded only if the cache lacks this version."""
    obj = parse_uri(uri)
    folder = (cache_dir or default_cache_dir()) / _digest(str(obj))
    fs = open_filesystem(obj)
    try:
        remote = _remote_version(fs, obj)
    except FileNotFoundError as exc:
        raise ModelError(f"model not found: {obj} (no such bucket or key)") from exc
    except PermissionError as exc:
        raise ModelError(f"access to {obj} refused: check the store's credentials") from exc
    except storage_errors() as exc:
        cached = _newest(folder)
        if cached is None:
            raise ModelError(f"cannot reach {obj}: {_reason(exc)}") from exc
        log.warning("%s unreachable (%s); using the cached copy %s", obj, _reason(exc),
                    cached.name)  # fmt: skip
        return cached
    target = folder / f"{_digest(remote.tag)}{Path(obj.key).suffix}"
    if target.is_file() and target.stat().st_size == remote.size:
        log.info("model %s: cached copy of %s", obj, remote.tag)
        return target
    _download(fs, obj, remote, target)
    log.info("model %s: downloaded %d bytes (%s)", obj, remote.size, remote.tag)
    return target


def local_path(ref: str | Path) -> Path:
    """REF as a local file: fetched when it is an s3:// or gs:// URI."""
    return fetch(ref) if isinstance(ref, str) and is_remote(ref) else Path(ref)


def store_file(local: Path, dest: str | Path) -> str:
    """Copy LOCAL to DEST, an s3:// or gs:// URI or a local path; what was written."""
    if not (isinstance(dest, str) and is_remote(dest)):
        out = Path(dest)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, out)
        return str(out)
    obj = parse_uri(dest)
    fs = open_filesystem(obj)
    try:
        fs.put_file(str(local), obj.path)
    except storage_errors() as exc:
        raise ModelError(f"cannot upload to {obj}: {_reason(exc)}") from exc
    log.info("model uploaded to %s", obj)
    return str(obj)


def cached_content(sha256: str, cache_dir: Path | None = None) -> Path:
    """Where a file whose content has this SHA-256 is (or would be) cached."""
    return (cache_dir or default_cache_dir()) / "sha256" / f"{sha256}.pt"


def keep_content(local: Path, sha256: str, cache_dir: Path | None = None) -> Path:
    """Copy LOCAL (whose SHA-256 the caller checked) into the content cache; the copy."""
    target = cached_content(sha256, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        shutil.copyfile(local, part)
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
    return target


def _remote_version(fs: Any, obj: ObjectUri) -> RemoteVersion:
    fs.invalidate_cache(obj.path)
    info = fs.info(obj.path)
    if info.get("type") == "directory":
        raise FileNotFoundError(obj.path)
    version = info.get("VersionId") or info.get("generation")
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if version and version != "null":
        tag = f"version:{version}"
    elif etag:
        tag = f"etag:{etag}"
    else:  # no identity from the store: the size and time are the best left
        tag = f"stat:{info.get('size')}:{info.get('LastModified') or info.get('updated')}"
    return RemoteVersion(tag, int(info.get("size") or 0), _stated_md5(info, etag))


def _stated_md5(info: dict[str, Any], etag: str) -> bytes | None:
    """The MD5 the store states: GCS md5Hash (base64) or a single-part S3 ETag (hex)."""
    if info.get("md5Hash"):
        return base64.b64decode(str(info["md5Hash"]))
    if "ETag" in info and len(etag) == 32 and "-" not in etag:
        with contextlib.suppress(ValueError):
            return bytes.fromhex(etag)
    return None


def _download(fs: Any, obj: ObjectUri, remote: RemoteVersion, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        fs.get_file(obj.path, str(part))
        size = part.stat().st_size
        if size != remote.size:
            raise ModelError(f"download of {obj} incomplete ({size} of {remote.size} bytes)")
        if remote.md5 is not None and _file_md5(part) != remote.md5:
            raise ModelError(f"download of {obj} does not match its MD5 (changed meanwhile?)")
        part.replace(target)
    except FileNotFoundError as exc:
        raise ModelError(f"model not found: {obj} (removed during download)") from exc
    except storage_errors() as exc:
        raise ModelError(f"cannot download {obj}: {_reason(exc)}") from exc
    finally:
        part.unlink(missing_ok=True)


def _newest(folder: Path) -> Path | None:
    """The most recently cached copy in FOLDER, if any."""
    copies = [p for p in folder.glob("*") if p.is_file() and not p.name.endswith(".part")]
    return max(copies, key=lambda p: p.stat().st_mtime) if copies else None


def storage_errors() -> tuple[type[BaseException], ...]:
    """What a failing store raises: OS errors plus the SDKs' own (when installed)."""
    errors: list[type[BaseException]] = [OSError, ValueError]
    with contextlib.suppress(ImportError):
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    with contextlib.suppress(ImportError):
        from google.auth.exceptions import GoogleAuthError

        errors.append(GoogleAuthError)
    return tuple(errors)


def _reason(exc: BaseException) -> str:
    """A one-line cause for the error message (SDK messages carry no secrets)."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _file_md5(path: Path) -> bytes:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()
