"""Bi-Directional Spatial Attention (BDSA), Eq. 1 of Lu et al., "H2ASeg", MICCAI 2024, Sec. 2.1.

For a source s and a target t (both C×H×W×D), 1×1×1 convolutions give Q_t, K_t, V_t and Q_s from E_t,
and K_s, V_s from E_s. Flattened to C×N (N = H·W·D)::

    A_s = V_s · softmax(Q_sᵀ K_s / √C)ᵀ     target queries read the source modality (cross-modal)
    A_t = V_t · softmax(Q_tᵀ K_t / √C)ᵀ     the target reads itself (intra-modal)
    E'_t = Conv3×3×3(concat(A_s, A_t))      2C -> C channels

(The paper calls the two terms "A_self" and "A_cross" the other way round; one term is intra-modal and one
cross-modal, which is what matters.) "Bi-directional" means two such units with their own weights,
(s = PET, t = CT) and (s = CT, t = PET); :class:`BDSA` holds both and returns both improved features.

Implementation: each modality has one 1×1×1 projection to 6C channels, laid out as

    proj_ct(E_ct)  = [Q_t, K_t, V_t, Q_s | unit CT<-PET ;  K_s, V_s | unit PET<-CT]
    proj_pet(E_pet) = [Q_t, K_t, V_t, Q_s | unit PET<-CT ;  K_s, V_s | unit CT<-PET]

(each block C channels, in this order), and the four attentions (cross and intra for each target) run as
four heads of one ``scaled_dot_product_attention`` call with scale 1/√C (:func:`attention`). The two 3×3×3
fusion convolutions run as one grouped convolution (groups = 2: CT's then PET's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Head widths below this are zero-padded up to it before the fused CPU attention kernel (AVX-512 only).
PADDED_HEAD_WIDTH = 16
#: Whether PyTorch runs its AVX-512 CPU kernels here; read once at import (a constant to torch.compile, where
#: calling the capability query inside the network would break the graph).
AVX512_CPU = torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float) -> torch.Tensor:
    """softmax(q kᵀ / √C) v over (B, heads, N, C) tensors, C the true head width.

    On an AVX-512 CPU PyTorch's flash-attention kernel runs a head of 4 or 8 channels slower than one of 16
    (forward + backward at 32 windows × 4 heads × 256 tokens: 58 ms at C = 8 against 39 ms padded to 16;
    5.6 % of a cpu-recipe H2ASeg step, ``benchmarks/results/speed_cpu.md``), so narrow heads are zero-padded
    to 16 channels there. Zero columns add nothing to q kᵀ, the scale stays 1/√C, and the padded output
    columns (weighted sums of zeros) are cut off: the same attention to rounding. Elsewhere (AVX2 CPUs,
    GPUs: not measured) it runs unpadded.
    """
    c = q.shape[-1]
    if c < PADDED_HEAD_WIDTH and q.device.type == "cpu" and AVX512_CPU:
        pad = (0, PADDED_HEAD_WIDTH - c)
        out = F.scaled_dot_product_attention(
            F.pad(q, pad), F.pad(k, pad), F.pad(v, pad), dropout_p=dropout, scale=c**-0.5
        )
        return out[..., :c]
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)


class BDSA(nn.Module):
    """Bi-directional spatial attention between a CT and a PET feature map (Eq. 1).

    Args:
        channels: C, channels of each modality's feature map (one attention head of width C).
        attention_dropout: dropout on the attention probabilities during training.

    Shapes: ``forward(ct, pet)`` takes two tensors (B, C, h, w, d) (a whole map, a token grid or a
    batch of windows) and returns ``(ct', pet')`` of the same shape.
    """

    def __init__(self, channels: int, attention_dropout: float = 0.0) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.channels = channels
        self.attention_dropout = attention_dropout
        self.proj_ct = nn.Conv3d(channels, 6 * channels, kernel_size=1)
        self.proj_pet = nn.Conv3d(channels, 6 * channels, kernel_size=1)
        self.fuse = nn.Conv3d(4 * channels, 2 * channels, kernel_size=3, padding=1, groups=2)

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ct, pet: (B, C, h, w, d) -> (ct', pet'), each (B, C, h, w, d)."""
        if ct.shape != pet.shape:
            raise ValueError(
                f"BDSA needs CT and PET maps of one shape, got {tuple(ct.shape)} and {tuple(pet.shape)}"
            )
        b, c, h, w, d = ct.shape
        n = h * w * d
        # (B, 6, N, C): blocks [Q_t, K_t, V_t, Q_s, K_s', V_s'] of each modality, tokens first.
        p_ct = self.proj_ct(ct).reshape(b, 6, c, n).transpose(-1, -2)
        p_pet = self.proj_pet(pet).reshape(b, 6, c, n).transpose(-1, -2)
        # Heads: 0 = CT target reads PET (cross), 1 = CT reads CT (intra),
        #        2 = PET target reads CT (cross), 3 = PET reads PET (intra).
        # torch.stack returns contiguous (B, heads, N, C) tensors, the layout for which SDPA has fused
        # (flash) kernels on the CPU as well; softmax over keys is Eq. 1's row-wise softmax of QᵀK/√C.
        # unbind (not indexing): its backward stacks the six block gradients instead of zero-filling a
        # full-size gradient per selected block (12 such fills cost ~10 % of MCSA's step at 32³).
        ct_b, pet_b = p_ct.unbind(1), p_pet.unbind(1)
        q = torch.stack((ct_b[3], ct_b[0], pet_b[3], pet_b[0]), dim=1)
        k = torch.stack((pet_b[4], ct_b[1], ct_b[4], pet_b[1]), dim=1)
        v = torch.stack((pet_b[5], ct_b[2], ct_b[5], pet_b[2]), dim=1)
        dropout = self.attention_dropout if self.training else 0.0
        attended = attention(q, k, v, dropout)
        # Back to (B, 4C, h, w, d) in head order: [A_s, A_t] for CT, then [A_s, A_t] for PET.
        attended = attended.transpose(-1, -2).reshape(b, 4 * c, h, w, d)
        fused = self.fuse(attended)
        return fused[:, :c], fused[:, c:]
