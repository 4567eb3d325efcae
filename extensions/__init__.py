"""Implementations of ConvNN outside the reference, each registered like any third-party one
(entry-point group ``convnn_ref.implementations``) and held to the same conformance suite."""
