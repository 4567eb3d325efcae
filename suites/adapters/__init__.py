"""Implementations of ConvNN outside the reference, shipped with the suites and registered like
any third-party one (entry-point group ``convnn_ref.implementations``), held to the same
conformance suite: ``fused_knn`` (a fused C++ kernel), ``natten`` (NATTEN's neighbourhood
attention) and ``flex_na`` (PyTorch's FlexAttention with a neighbourhood mask)."""
