"""The decode step's linear layers (esc/backends/decode_linear.py): the compiled kernel against torch's
product, and DecodeLinear on a stand-in model with a tied output layer."""

import logging
import platform

import pytest
import torch
import torch.nn.functional as F

from esc.backends import decode_linear
from esc.backends.decode_linear import (
    KERNEL_ROWS,
    ONEDNN_FROM,
    ONEDNN_HEAD_FROM,
    DecodeLinear,
    kernel_product,
    use_decode_linear,
)

needs_kernel = pytest.mark.skipif(decode_linear.kernel() is None, reason="no C compiler for the kernel")


def forget() -> None:
    """Drop the cached library and kernel, so the next call builds or loads them again."""
    decode_linear.library.cache_clear()
    decode_linear.kernel.cache_clear()


class Tied(torch.nn.Module):
    """Embeddings, a biased inner layer and an output layer sharing the embeddings' weight, with
    transformers' accessors."""

    def __init__(self, vocab=300, width=24):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, width)
        self.inner = torch.nn.Sequential(torch.nn.Linear(width, width))
        self.head = torch.nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight

    def get_output_embeddings(self):
        return self.head


@needs_kernel
@pytest.mark.parametrize("rows", [1, 2, 7, 8, 9, 16])
@pytest.mark.parametrize("width", [16, 37, 576])
@pytest.mark.parametrize("outputs", [1, 31, 33, 1536])
def test_the_kernel_gives_torch_s_product(rows, width, outputs):
    torch.manual_seed(rows * width + outputs)
    x, w = torch.randn(rows, width), torch.randn(outputs, width)
    got = kernel_product(x, w)
    assert got.shape == (rows, outputs)
    assert torch.allclose(got, F.linear(x, w), atol=1e-4, rtol=1e-5)


@needs_kernel
def test_a_row_s_result_does_not_depend_on_the_rows_beside_it():
    torch.manual_seed(1)
    x, w = torch.randn(16, 576), torch.randn(200, 576)
    alone = torch.cat([kernel_product(x[i : i + 1], w) for i in range(16)])
    assert torch.equal(kernel_product(x, w), alone)  # bit for bit, where MKL's blocking may differ


@needs_kernel
def test_a_strided_input_is_read_as_its_values():
    w = torch.randn(40, 24)
    last = torch.randn(8, 5, 24)[:, -1, :]  # the last position of a prefill: not contiguous
    assert torch.allclose(kernel_product(last, w), last @ w.T, atol=1e-5)


def test_a_strided_prefill_input_is_read_as_its_values_by_every_path():
    model = Tied()
    use_decode_linear(model)
    for rows in (3, 8, 20):  # torch's product, the kernel (or oneDNN for the output layer), oneDNN
        last = torch.randn(rows, 5, 24)[:, -1:, :]  # the last position of a prefill: not contiguous
        with torch.inference_mode():
            got, inner = model.head(last), model.inner(last)
        assert torch.allclose(got, last @ model.embed.weight.T, atol=1e-5)
        assert torch.allclose(inner, last @ model.inner[0].weight.T + model.inner[0].bias, atol=1e-5)


def test_it_holds_the_model_s_own_parameters_and_keeps_the_state_dict_and_the_tie():
    model = Tied()
    keys = list(model.state_dict())
    inner = model.inner[0]
    assert use_decode_linear(model) == 2
    assert isinstance(model.head, DecodeLinear) and isinstance(model.inner[0], DecodeLinear)
    assert model.head.weight is model.embed.weight
    assert model.inner[0].weight is inner.weight and model.inner[0].bias is inner.bias
    assert list(model.state_dict()) == keys
    assert use_decode_linear(model) == 0  # once is enough
    onednn = decode_linear._has_onednn()
    assert (model.head.onednn_from == ONEDNN_HEAD_FROM) is onednn
    assert (model.inner[0].onednn_from == ONEDNN_FROM) is onednn


@pytest.mark.parametrize("rows", [1, 3, 8, 16, 17, 32, 33, 64])
def test_every_row_count_gives_what_f_linear_gives_by_the_path_it_should(rows, monkeypatch):
    model = Tied()
    use_decode_linear(model)
    paths = []
    product = decode_linear.kernel_product
    monkeypatch.setattr(decode_linear, "kernel_product", lambda *a: paths.append("kernel") or product(*a))
    onednn = torch.ops.mkldnn._linear_pointwise
    onednn_path = lambda *a: paths.append("onednn") or onednn(*a)  # noqa: E731
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", onednn_path)
    x = torch.randn(rows, 24)
    with torch.inference_mode():
        got, inner = model.head(x), model.inner(x)
    assert torch.allclose(got, x @ model.embed.weight.T, atol=1e-5)
    assert torch.allclose(inner, x @ model.inner[0].weight.T + model.inner[0].bias, atol=1e-5)
    if rows in KERNEL_ROWS and decode_linear.kernel() is not None:
        assert paths == ["kernel"] * 2
    elif decode_linear._has_onednn():  # the output layer from 4 rows, every layer from 17 (a prefill)
        assert paths == ["onednn"] * ((rows >= ONEDNN_HEAD_FROM) + (rows >= ONEDNN_FROM))
    else:
        assert paths == []


def test_a_three_dimensional_input_keeps_its_shape_and_follows_the_weight():
    model = Tied()
    use_decode_linear(model)
    x = torch.randn(2, 3, 24)  # 6 rows
    with torch.inference_mode():
        assert model.head(x).shape == (2, 3, 300)
        model.embed.weight.mul_(2.0)  # a version swap writes the weight in place
        assert torch.allclose(model.head(x), x @ model.embed.weight.T, atol=1e-5)


def test_an_input_of_the_wrong_width_gets_torch_s_error_not_the_kernel():
    model = Tied()
    use_decode_linear(model)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        model.head(torch.randn(2, 23))


def test_with_gradients_on_or_another_dtype_it_is_plain_f_linear(monkeypatch):
    model = Tied()
    use_decode_linear(model)
    monkeypatch.setattr(decode_linear, "kernel_product", lambda *a: pytest.fail("the kernel was used"))
    x = torch.randn(8, 24, requires_grad=True)
    model.head(x).sum().backward()
    assert x.grad is not None and model.embed.weight.grad is not None
    model = model.to(torch.bfloat16)
    with torch.inference_mode():
        assert model.head(torch.randn(4, 24, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_without_a_compiler_the_layers_keep_torch_s_product_and_say_so(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("RLFF_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    forget()
    try:
        with caplog.at_level(logging.WARNING, logger=decode_linear.__name__):
            assert decode_linear.kernel() is None
        assert "no-such-compiler failed" in caplog.text and "torch's products" in caplog.text
        model = Tied()
        use_decode_linear(model)
        x = torch.randn(2, 24)
        with torch.inference_mode():
            assert torch.allclose(model.head(x), x @ model.embed.weight.T, atol=1e-5)
        assert not list(tmp_path.glob("kernels/*.so"))
    finally:
        forget()


def test_the_environment_can_turn_it_off(monkeypatch):
    monkeypatch.setenv("RLFF_DECODE_KERNEL", "0")
    forget()
    try:
        assert decode_linear.kernel() is None
    finally:
        forget()


def test_a_damaged_cached_kernel_is_not_loaded_and_says_so(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("RLFF_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "cc")  # named, so that the fake build below runs on a machine without one
    forget()

    def damaged(compiler, target):
        target.parent.mkdir(parents=True)
        target.write_bytes(b"not a library")  # what a disk error or a cut-off copy leaves

    monkeypatch.setattr(decode_linear, "_compile", damaged)
    try:
        with caplog.at_level(logging.WARNING, logger=decode_linear.__name__):
            assert decode_linear.kernel() is None
        assert "loading" in caplog.text and "torch's products" in caplog.text
    finally:
        forget()


@needs_kernel
def test_a_fresh_cache_builds_the_kernel_once(monkeypatch, tmp_path):
    monkeypatch.setenv("RLFF_CACHE", str(tmp_path))
    forget()
    try:
        assert decode_linear.kernel() is not None
        built = list(tmp_path.glob("kernels/*"))
        assert len(built) == 1 and built[0].suffix == ".so"  # no partial file left behind
    finally:
        forget()


@pytest.mark.skipif(
    decode_linear.compiler() is None or platform.machine() != "x86_64", reason="an x86 build with a compiler"
)
def test_the_kernel_built_without_avx512_gives_torch_s_product_too(tmp_path):
    """Where the compiler may not use AVX-512 (most laptops), the kernel takes 8-float vectors."""
    target = tmp_path / "kernel.so"
    assert decode_linear._compile(decode_linear.compiler(), target, ("-mno-avx512f", "-Wno-psabi")) is None
    run = decode_linear.load(target)
    for rows, width, outputs in [(1, 37, 67), (8, 576, 100), (13, 40, 33), (16, 1536, 31)]:
        x, w = torch.randn(rows, width), torch.randn(outputs, width)
        y = torch.empty(rows, outputs)
        run(x.data_ptr(), w.data_ptr(), y.data_ptr(), rows, width, outputs)
        assert torch.allclose(y, F.linear(x, w), atol=1e-4, rtol=1e-5), (rows, width, outputs)
