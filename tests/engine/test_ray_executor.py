"""``--executor ray``: reducers' ``prepare`` as Ray tasks on a local Ray instance (2 CPUs, started
and stopped here) gives one process's results, entry for entry."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_workers import RecorderPlugin, _mask_file, folder, results

from sparsecheck.testing import run_spec

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sparsecheck[ray]'")

__all__ = ["folder"]  # the fixture, shared with the local workers' tests


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray head with 2 CPUs on 127.0.0.1 (``ray start --block``, its own process group,
    ended by this fixture); its address is in RAY_ADDRESS while it runs."""
    ray_cli = Path(sys.executable).with_name("ray")
    temp = tmp_path_factory.mktemp("ray")
    with socket.socket() as probe:  # a free port for the head
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    command = [
        str(ray_cli),
        "start",
        "--head",
        "--block",
        "--num-cpus",
        "2",
        "--node-ip-address",
        "127.0.0.1",
    ]
    command += ["--port", str(port), "--include-dashboard", "false", "--disable-usage-stats"]
    log = (temp / "ray-start.log").open("w")
    head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    previous = os.environ.get("RAY_ADDRESS")
    try:
        _wait_for_port(port, head, temp / "ray-start.log")
        os.environ["RAY_ADDRESS"] = f"127.0.0.1:{port}"
        yield f"127.0.0.1:{port}"
    finally:
        if previous is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = previous
        head.terminate()  # ray start --block stops the head's processes when it ends
        try:
            head.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)  # anything of this head left over
        log.close()


def _wait_for_port(port: int, head: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start failed:\n{log.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the Ray head did not open port {port} in 120 s:\n{log.read_text()}")


@pytest.fixture
def connected(ray_cluster: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test process connected to the instance, its workers able to import the test plugin
    (sparsecheck then uses this connection and leaves it open)."""
    import ray

    here = str(Path(__file__).parent)
    env_vars = {"PYTHONPATH": here, "RAY_AUTH_MODE": "disabled"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(address=ray_cluster, runtime_env={"env_vars": env_vars}, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_tasks_give_the_results_of_one_process(folder: Path, connected: None) -> None:
    one = results(folder, 1)
    mask_one = _mask_file(folder / "out" / "mask.safetensors")
    spec = folder / "every.sparsecheck.yaml"
    session = run_spec(spec, options={"no_cache": True, "executor": "ray"})
    on_ray = {
        o.check.id: {"status": o.status.value, **o.result.to_dict()} for o in session.outcomes if o.result
    }
    assert on_ray == one
    mask_ray = _mask_file(folder / "out" / "mask.safetensors")
    assert mask_ray[0] == mask_one[0]
    assert mask_ray[1].keys() == mask_one[1].keys()
    assert all(np.array_equal(mask_ray[1][name], packed) for name, packed in mask_one[1].items())
    # prepare ran in Ray's worker processes, and update in storage order here
    recorder = folder / "recorder.sparsecheck.yaml"
    recorder.write_text(
        "version: 1\ncheckpoints: {tuned: tuned}\nchecks:\n"
        "  - {id: rec, metric: recorder, args: {tuned: tuned}}\n",
        encoding="utf-8",
    )
    options = {"no_cache": True, "executor": "ray"}
    (outcome,) = run_spec(recorder, plugins=[RecorderPlugin()], options=options).outcomes
    (local,) = run_spec(
        recorder, plugins=[RecorderPlugin()], options={"no_cache": True, "workers": 1}
    ).outcomes
    assert outcome.result is not None and local.result is not None
    assert outcome.result.fields["in_workers"] >= 1
    assert outcome.result.fields["names"] == local.result.fields["names"]
