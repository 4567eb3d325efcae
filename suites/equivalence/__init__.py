"""The equivalence suite: Hypothesis properties holding an implementation of ConvNN to PyTorch's
convolution and attention, to KVT, and to the naive oracle (docs/semantics.md, docs/error-model.md). One file per family."""
