import pytest
import torch

from esc.models import tiny_random_model
from esc.weights import latest, load_into, publish


def test_publish_then_latest_then_load(tmp_path):
    assert latest(tmp_path) is None
    source, target = tiny_random_model(100, seed=1), tiny_random_model(100, seed=2)
    publish(source.state_dict(), tmp_path, 1)
    path = publish(source.state_dict(), tmp_path, 2)
    assert latest(tmp_path) == (2, path)
    assert not list(tmp_path.glob(".*partial"))
    load_into(target, path)
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_version_zero_and_mismatched_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="start at 1"):
        publish({}, tmp_path, 0)
    path = publish({"not.a.weight": torch.zeros(2)}, tmp_path, 1)
    with pytest.raises(ValueError, match="do not fit the model"):
        load_into(tiny_random_model(100), path)
