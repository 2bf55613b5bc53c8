import pytest
import torch

from esc.models import load_model, tiny_random_model
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


def test_a_published_version_with_extras_is_a_model_folder(tmp_path):
    model, tokenizer = load_model("tiny-random", seed=3)

    def extras(folder):
        assert not (tmp_path / "LATEST").exists()  # written before the version becomes visible
        model.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    publish(model.state_dict(), tmp_path, 1, extras)
    loaded, _ = load_model(str(tmp_path / "v1"))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
