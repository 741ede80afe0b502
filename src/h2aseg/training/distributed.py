"""Multi-process training with torch.distributed (DDP), started by ``torchrun``.

``torchrun --nproc_per_node N -m h2aseg train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
variables; :func:`init_distributed` then joins the process group (NCCL on GPUs, gloo on the CPU) and
each process uses ``cuda:LOCAL_RANK`` or the CPU. Several machines use torchrun's multi-node rendezvous
(``--nnodes``, ``--rdzv-backend c10d --rdzv-endpoint HOST:PORT``) with the same command on each node.
A plain ``h2aseg train`` is a world of one, and every helper here is a no-op then.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from h2aseg.device import pick_device  # re-exported: the one rule, in h2aseg.device

__all__ = [
    "DistContext",
    "pick_device",
    "init_distributed",
    "barrier",
    "broadcast_object",
    "broadcast_flag",
    "parameter_digest",
    "gather_digests",
    "cleanup",
]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(requested_device: str = "auto") -> DistContext:
    """Join the process group when started by torchrun; a world of one otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world_size <= 1:
        return DistContext(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), world_size, local_rank, device)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_object(ctx: DistContext, value):
    """Rank 0's ``value`` on every rank."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_flag(ctx: DistContext, flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank: one 1-element broadcast, no pickling (cheap enough for every step)."""
    if not ctx.enabled:
        return flag
    box = torch.tensor([1 if flag else 0], dtype=torch.int32, device=ctx.device)
    dist.broadcast(box, src=0)
    return bool(box.item())


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-1 of all parameters' bytes: equal digests mean bit-identical weights."""
    digest = hashlib.sha1()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def gather_digests(ctx: DistContext, model: torch.nn.Module) -> list[str]:
    """Every rank's :func:`parameter_digest`, in rank order."""
    mine = parameter_digest(model)
    if not ctx.enabled:
        return [mine]
    out: list[str] = [""] * ctx.world_size
    dist.all_gather_object(out, mine)
    return out


def cleanup(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
