"""Fixtures: a planted pair on disk, served over HTTP and from an S3 server, both on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from remote_servers import RangeServer, range_server

from sparsecheck.testing import PlantedPair, planted_pair

pytest.importorskip("fsspec", reason="the remote extra: pip install 'sparsecheck[remote]'")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> PlantedPair:
    """A sharded planted pair, bigger than the default so headers are a small part of the files."""
    root = tmp_path_factory.mktemp("remote")
    return planted_pair(root, layout="sharded", fraction=0.2, hidden=128, intermediate=256, vocab=256)


@pytest.fixture
def http(pair: PlantedPair) -> Iterator[RangeServer]:
    with range_server(pair.base.parent) as server:
        yield server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with dummy credentials in the environment."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = pytest.MonkeyPatch()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        saved.setenv(key, value)
    try:
        yield endpoint
    finally:
        saved.undo()
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, pair: PlantedPair, request: pytest.FixtureRequest) -> str:
    """A fresh bucket holding the pair under ``base/`` and ``tuned/``; returns ``s3://BUCKET``."""
    import boto3

    bucket = "ckpt-" + request.node.name.lower().replace("_", "-")[:40]
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=bucket)
    for side in (pair.base, pair.tuned):
        for file in sorted(Path(side).iterdir()):
            client.upload_file(str(file), bucket, f"{side.name}/{file.name}")
    return f"s3://{bucket}"
