"""BDSA's attention with narrow heads zero-padded (the AVX-512 fast path) is the plain attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from h2aseg.models import bdsa


def test_padded_attention_equals_unpadded_attention(monkeypatch):
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 20, 8, requires_grad=True) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v)
    grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    monkeypatch.setattr(bdsa, "AVX512_CPU", True)
    widths = []  # head widths the attention kernel is called with: the padded path must have run
    kernel = F.scaled_dot_product_attention
    monkeypatch.setattr(
        bdsa.F,
        "scaled_dot_product_attention",
        lambda q, *a, **kw: widths.append(q.shape[-1]) or kernel(q, *a, **kw),
    )
    padded = bdsa.attention(q, k, v, 0.0)
    assert widths == [bdsa.PADDED_HEAD_WIDTH]
    assert padded.shape == expected.shape
    torch.testing.assert_close(padded, expected, rtol=1e-5, atol=1e-6)
    for got, want in zip(torch.autograd.grad(padded.square().sum(), (q, k, v)), grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_bdsa_compiles_as_one_graph():
    """torch.compile (``h2aseg train --compile``) traces BDSA without a graph break (a capability query
    inside the forward pass broke it)."""
    import torch._dynamo

    torch._dynamo.reset()
    x, y = torch.randn(2, 8, 4, 4, 4), torch.randn(2, 8, 4, 4, 4)
    explanation = torch._dynamo.explain(bdsa.BDSA(8))(x, y)
    assert explanation.graph_break_count == 0, [b.reason for b in explanation.break_reasons]
