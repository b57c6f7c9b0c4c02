"""Object-storage URIs without a network: parsing, which fsspec implementation serves each
scheme (gs:// goes through gcsfs on the same code path as s3:// through s3fs), the endpoint
and cache settings. No filesystem object is created for gs:// here: gcsfs would look for
Google credentials, which may mean asking a metadata server off this machine."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from inference.registry import resolve_model
from inference.storage import (
    ObjectUri,
    default_cache_dir,
    filesystem_options,
    is_remote,
    local_path,
    parse_uri,
)
from plugin.settings import load_settings
from vocabulary.errors import ModelError


def test_parse_s3_and_gs_uris() -> None:
    assert parse_uri("s3://models/brainxai/m.pt") == ObjectUri("s3", "models", "brainxai/m.pt")
    gs = parse_uri("gs://bucket-1/a/b/model.pt")
    assert (gs.bucket, gs.key, gs.protocol, gs.path) == ("bucket-1", "a/b/model.pt", "gcs",
                                                          "bucket-1/a/b/model.pt")  # fmt: skip
    assert str(parse_uri("S3://b/k.pt")) == "s3://b/k.pt"


@pytest.mark.parametrize(
    "uri", ["s3://bucket", "s3://bucket/", "gs://bucket/dir/", "s3:///key.pt", "s3://b/k?x=1"]
)
def test_a_uri_that_names_no_single_object_is_refused(uri: str) -> None:
    with pytest.raises(ModelError, match="BUCKET/KEY"):
        parse_uri(uri)


def test_credentials_in_a_uri_are_refused_without_echoing_them() -> None:
    with pytest.raises(ModelError) as info:
        parse_uri("s3://AKIDEXAMPLE:s3cr3t@bucket/m.pt")
    assert "s3cr3t" not in str(info.value) and "AKIDEXAMPLE" not in str(info.value)


def test_is_remote_only_for_object_storage_schemes() -> None:
    assert is_remote("s3://b/k.pt") and is_remote("gs://b/k.pt")
    assert not is_remote("models:/brainxai-densenet169@champion")
    assert not is_remote("models/brainxai-densenet169.pt")
    assert not is_remote("file:///tmp/m.pt")
    assert not is_remote(Path("s3:/b/k.pt"))
    assert local_path("models/x.pt") == Path("models/x.pt")


def test_each_scheme_selects_its_fsspec_implementation() -> None:
    import gcsfs
    import s3fs

    gcs_class = fsspec.get_filesystem_class(parse_uri("gs://b/k.pt").protocol)
    s3_class = fsspec.get_filesystem_class(parse_uri("s3://b/k.pt").protocol)
    assert issubclass(gcs_class, gcsfs.GCSFileSystem)
    assert issubclass(s3_class, s3fs.S3FileSystem)


def test_the_s3_endpoint_comes_from_mlflows_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert filesystem_options(parse_uri("s3://b/k.pt"))["endpoint_url"] == "http://127.0.0.1:9000"
    assert "endpoint_url" not in filesystem_options(parse_uri("gs://b/k.pt"))
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL")
    assert "endpoint_url" not in filesystem_options(parse_uri("s3://b/k.pt"))


def test_cache_dir_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRAINXAI_MODEL_CACHE_DIR", str(tmp_path / "c"))
    load_settings()  # hands the setting to inference.runtime
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BRAINXAI_MODEL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_settings()
    assert default_cache_dir() == tmp_path / "xdg" / "brainxai" / "models"


def test_resolve_model_routes_bad_object_uris_to_model_error() -> None:
    with pytest.raises(ModelError, match="expected gs://BUCKET/KEY"):
        resolve_model("gs://bucket-only/")
