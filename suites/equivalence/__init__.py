"""The equivalence suite: Hypothesis properties holding an implementation of ConvNN to PyTorch's
convolution and attention, to KVT, and to the naive oracle (SPEC §3-§5). One file per family."""
