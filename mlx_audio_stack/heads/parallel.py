"""Data-parallel helpers over MLX's own distributed layer (`mx.distributed`).

`mlx.launch -n 2 -- mas train heads ...` starts 2 processes (ring backend: TCP between
local processes or Macs); each one calls `default_group()`, which returns the group when
there is more than one process and None otherwise, so a plain run pays nothing.
"""

from __future__ import annotations

import os


def default_group():
    """The `mx.distributed` group `mlx.launch` set up (size > 1), else None. Only looks when
    the launcher's environment is present, so a plain run never opens sockets."""
    import mlx.core as mx

    launched = any(k in os.environ for k in ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "MLX_HOSTFILE"))
    if not launched or not mx.distributed.is_available():
        return None
    g = mx.distributed.init()
    return g if g.size() > 1 else None


def barrier(group) -> None:
    """Wait until every process of `group` gets here (no-op without a group)."""
    if group is None:
        return
    import mlx.core as mx

    mx.eval(mx.distributed.all_sum(mx.array(1.0), group=group))


def rank_of(group) -> tuple[int, int]:
    """(rank, size) of `group` ((0, 1) without one)."""
    return (group.rank(), group.size()) if group is not None else (0, 1)
