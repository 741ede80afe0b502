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
    monkeypatch.setattr(bdsa, "_cpu_has_avx512", lambda: True)
    padded = bdsa.attention(q, k, v, 0.0)
    assert padded.shape == expected.shape
    torch.testing.assert_close(padded, expected, rtol=1e-5, atol=1e-6)
    for got, want in zip(torch.autograd.grad(padded.square().sum(), (q, k, v)), grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
