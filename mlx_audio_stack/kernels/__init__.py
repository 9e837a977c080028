"""CPU kernels for MLX's CPU backend (Linux): one operation each, each with an MLX twin.

MLX's CPU backend runs element-wise ops on one thread with scalar exp/erf and hands every
matrix product to the BLAS, which packs the whole weight first even for one row. Where that
dominates, a model calls a kernel from here instead of its MLX twin; the models stay one MLX
definition, and a Mac (or `MAS_GEMV=off`) runs the twins.

- `dispatch`: the one switch (`kernels_on`, `use_kernels`) and NumPy views of MLX arrays;
- `library`, `build`: the C library (`c/*.c`: products, element-wise, attention, convolution
  pieces, LSTM, one thread pool) built on first use or by `mas setup`, never at import;
- `elementwise`, `attention`, `depthwise`, `lstm`: the Python side of each kernel.

This file imports nothing: `_blas` loads `library` before `import mlx.core`.
"""
