import pytest
import torch
from safetensors.torch import load_file

from esc.models import load_model, tiny_random_model
from esc.weights import latest, load_into, publish, to_bytes, write_safetensors


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


def test_a_wrong_shape_is_refused_before_anything_is_copied(tmp_path):
    source, target = tiny_random_model(100, seed=1), tiny_random_model(100, seed=2)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    last = list(state)[-1]
    state[last] = torch.zeros(3, 3)  # every other tensor fits
    path = publish(state, tmp_path, 1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    for bad in (path, to_bytes(state)):
        with pytest.raises(ValueError, match=f"{last} is \\(3, 3\\)"):
            load_into(target, bad)
        assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_bytes_and_file_load_the_same_weights(tmp_path):
    source = tiny_random_model(100, seed=1)
    path = publish(source.state_dict(), tmp_path, 1)
    from_file, from_bytes = tiny_random_model(100, seed=2), tiny_random_model(100, seed=3)
    load_into(from_file, path)
    load_into(from_bytes, to_bytes(source.state_dict()))
    for name, weight in source.state_dict().items():
        assert torch.equal(from_file.state_dict()[name], weight)
        assert torch.equal(from_bytes.state_dict()[name], weight)


def test_our_safetensors_writer_is_read_back_by_safetensors(tmp_path):
    tensors = {
        "f32": torch.randn(3, 5),
        "bf16": torch.randn(4, 2).to(torch.bfloat16),
        "i64": torch.arange(7),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "flag": torch.tensor([True, False, True]),
    }
    write_safetensors(tensors, tmp_path / "w.safetensors")
    back = load_file(str(tmp_path / "w.safetensors"))
    assert back.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name


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


def _mapped_from(tensor: torch.Tensor, path) -> bool:
    """Whether the tensor's memory lies in a mapping of `path` (Linux /proc/self/maps)."""
    address = tensor.data_ptr()
    with open("/proc/self/maps") as maps:
        lines = maps.read().splitlines()
    for line in lines:
        span, *_, name = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in span.split("-"))
        if start <= address < end:
            return name.strip() == str(path)
    return False


def test_shared_pages_serve_the_file_and_writes_stay_private(tmp_path):
    source, target = tiny_random_model(100, seed=1), tiny_random_model(100, seed=2)
    path = publish(source.state_dict(), tmp_path, 1)
    parameters = dict(target.named_parameters())
    load_into(target, path, share_pages=True)
    assert dict(target.named_parameters()) == parameters  # the same Parameter objects (optimizers hold them)
    for name, weight in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], weight), name
    embedding = target.get_input_embeddings().weight
    assert _mapped_from(embedding, path.resolve())
    assert target.get_output_embeddings().weight is embedding  # tied weights stay tied
    with torch.no_grad():
        embedding.add_(1.0)  # copy-on-write: the file keeps the published weights
    published = load_file(str(path))["model.embed_tokens.weight"]
    assert torch.equal(published, source.get_input_embeddings().weight)
    assert not torch.equal(embedding, published)
