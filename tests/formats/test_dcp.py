"""torch.distributed.checkpoint folders, written here with DCP on the CPU in one process."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from sparsecheck.cli import main
from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import plant_changes, tiny_llama_state_dict, write_checkpoint


def _save_dcp(folder: Path, state: dict[str, torch.Tensor]) -> Path:
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "assuming ... a single process"
        dcp.save(state, checkpoint_id=str(folder))
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("dcp")
    base = tiny_llama_state_dict(dtype=torch.bfloat16)
    tuned, masks = plant_changes(base, 0.25, seed=3)
    return {
        "base_dcp": _save_dcp(root / "base_dcp", base),
        "tuned_dcp": _save_dcp(root / "tuned_dcp", tuned),
        "base_hf": write_checkpoint(root / "base_hf", base),
        "sparsity": 1 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values()),
    }


def _result(tmp_path: Path, base: Path, tuned: Path, *more: str) -> Any:
    report = tmp_path / "r.json"
    code = main(["diff", str(base), str(tuned), "--json", str(report), "-q", *more])
    assert code in (ExitCode.OK, ExitCode.CHECKS_FAILED)
    [check] = json.loads(report.read_text())["checks"]
    return check["result"]


def test_a_dcp_folder_equals_the_same_weights_saved_by_transformers_layout(
    checkpoints: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _result(tmp_path, checkpoints["base_hf"], checkpoints["base_dcp"], "--policy", "exact")
    capsys.readouterr()
    assert result["fields"]["sparsity"] == 1.0 and result["fields"]["tensors"] == 21
    assert result["fields"]["dtypes"] == "bfloat16"


def test_two_dcp_folders_give_the_planted_sparsity(
    checkpoints: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _result(tmp_path, checkpoints["base_dcp"], checkpoints["tuned_dcp"])
    capsys.readouterr()
    assert result["fields"]["sparsity"] == pytest.approx(checkpoints["sparsity"], abs=1e-12)


def test_a_tensor_in_row_chunks_is_assembled(tmp_path: Path) -> None:
    """A tensor stored as two row chunks, as two ranks' shards are: the metadata of a saved
    pair of halves is rewritten to name them chunks of one tensor."""
    import pickle

    from torch.distributed.checkpoint.metadata import (
        ChunkStorageMetadata,
        MetadataIndex,
        TensorStorageMetadata,
    )

    from sparsecheck.checkpoints._dcp import DcpReader

    whole = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    folder = _save_dcp(tmp_path / "halves", {"top": whole[:2].clone(), "bottom": whole[2:].clone()})
    metadata = pickle.loads((folder / ".metadata").read_bytes())
    top, bottom = (metadata.state_dict_metadata.pop(k) for k in ("top", "bottom"))
    chunks = [
        ChunkStorageMetadata(torch.Size([0, 0]), torch.Size([2, 4])),
        ChunkStorageMetadata(torch.Size([2, 0]), torch.Size([4, 4])),
    ]
    metadata.state_dict_metadata["w"] = TensorStorageMetadata(top.properties, torch.Size([6, 4]), chunks)
    storage = metadata.storage_data
    storage[MetadataIndex("w", torch.Size([0, 0]))] = storage.pop(MetadataIndex("top", torch.Size([0, 0])))
    storage[MetadataIndex("w", torch.Size([2, 0]))] = storage.pop(MetadataIndex("bottom", torch.Size([0, 0])))
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    reader = DcpReader(str(folder), folder)
    assert list(reader.tensors()) == ["w"]
    assert (reader.read("w") == whole.numpy()).all()
    assert bottom.size == torch.Size([4, 4])


def test_a_corrupt_metadata_file_is_one_line(
    tmp_path: Path, checkpoints: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ".metadata").write_bytes(b"not a pickle")
    code = main(["diff", str(checkpoints["base_hf"]), str(broken)])
    out = capsys.readouterr().err
    assert code == ExitCode.USAGE_ERROR
    assert f"{broken / '.metadata'}: not readable torch.distributed.checkpoint metadata" in out
