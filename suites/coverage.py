"""The argument coverage table: every argument of every public function and constructor of
`convnn_ref` (read from their signatures), the property that draws it, and over which range.

The rows come from the signatures; the cells from `COVERAGE` below, written by hand next to the
properties. `suites/test_coverage.py` fails when a signature has an argument the table does not
cover, when a cell names a property that does not exist, when a cell is blank, or when the
committed docs/coverage.md differs from what this module renders. After adding an argument (or a
public callable), add its cells here and regenerate the page:

    python -m suites.coverage            # writes docs/coverage.md
    python -m suites.coverage --check    # exit 1 when docs/coverage.md is stale
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import convnn_ref

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "coverage.md"

#: Abbreviations of the property files, for the cells.
ORACLE = "test_oracle"

Cell = tuple[str, str]  # (properties, the range they draw)

_CONFIG_OF_GENERAL = "test_image_form_vs_oracle, test_gradients_vs_oracle"

COVERAGE: dict[str, dict[str, Cell]] = {
    "ConvNNConfig": {
        "k": (_CONFIG_OF_GENERAL + ", test_kvt_matches_paper", "1..min(available, 9) or every candidate; None (all) in test_attention_layer_matches_its_projections_and_the_oracle"),
        "basis": (_CONFIG_OF_GENERAL, "position, feature, hybrid"),
        "metric": ("test_position_basis_vs_oracle_all_dtypes, test_calls_do_not_leak_into_each_other", "chebyshev, euclidean"),
        "coordinates": ("test_position_basis_vs_oracle_all_dtypes, test_hybrid_vs_oracle", "integer, normalized"),
        "kernel_size": ("test_position_basis_vs_oracle_all_dtypes, test_conv2d_exact", "None, 1..3 per axis (oracle); 1..9 per axis (conv)"),
        "kernel_scaled": ("test_position_basis_vs_oracle_all_dtypes, test_conv2d_exact", "True, False"),
        "similarity": ("test_image_form_vs_oracle, test_attention_form_vs_oracle", "cosine, euclidean, dot, scaled_dot"),
        "scale": ("test_image_form_vs_oracle, test_sdpa_exact", "None (1/sqrt(D)), 0.05..2"),
        "hybrid_lambda": ("test_hybrid_vs_oracle", "0 (exact similarities), 0.05..1"),
        "candidates": ("test_random_candidates_vs_oracle, test_grid_candidates_vs_oracle, test_window_vs_masked_sdpa", "all, random, grid, window"),
        "num_candidates": ("test_random_candidates_vs_oracle, test_grid_candidates_vs_oracle", "1..N (random); 1..min side (grid)"),
        "grid_margin": ("test_grid_candidates_vs_oracle, test_grid_rounding_matches_the_oracle", "0..(min side - 1) // 2"),
        "grid_rounding": ("test_grid_rounding_matches_the_oracle, test_grid_candidates_vs_oracle", "round, truncate"),
        "self_slot": ("test_forced_self_vs_oracle", "candidate, forced"),
        "slot_order": ("test_position_basis_vs_oracle_all_dtypes, test_offset_slots_are_conv_taps", "rank, offset"),
        "rho": (_CONFIG_OF_GENERAL, "ones, softmax, scores"),
        "rho_scale": ("test_image_form_vs_oracle, test_dense_limit_k_equals_n", "0.25..4"),
        "kernel": (_CONFIG_OF_GENERAL, "full, grouped, sum"),
        "groups": ("test_image_form_vs_oracle, test_conv2d_exact", "1, divisors of C (grouped, depthwise, multipliers)"),
        "coord_encoding": ("test_image_form_vs_oracle, test_hybrid_vs_oracle", "none, score, aggregate, both"),
        "stride": ("test_image_form_vs_oracle, test_conv2d_exact", "1..2 per axis"),
        "padding": ("test_position_basis_vs_oracle_all_dtypes, test_padded_feature_bases_match_the_oracle, test_conv2d_exact", "0..1 per side (oracle); int, tuple, 'valid', 'same' (conv)"),
        "dilation": ("test_position_basis_vs_oracle_all_dtypes, test_conv2d_exact", "1..2 per axis"),
        "border": ("test_border_in_bounds_matches_the_oracle", "zeros, in_bounds (no padding)"),
        "window_stride": ("test_window_vs_masked_sdpa, test_window_vs_oracle", "1..kernel per axis (candidates='window')"),
        "causal": ("test_window_vs_masked_sdpa, test_window_vs_oracle", "False, True per axis (candidates='window')"),
    },
    "convnn": {
        "x": (_CONFIG_OF_GENERAL, "(B 1..2, C 1..3, 1-3 axes, <= 36 tokens); every input style, magnitudes 1e-3..1e4"),
        "weight": (_CONFIG_OF_GENERAL, "standard normal, (C_out, C_in'/groups, k); None with the sum kernel"),
        "bias": (_CONFIG_OF_GENERAL, "standard normal or None"),
        "config": (_CONFIG_OF_GENERAL, "every ConvNNConfig knob (rows above)"),
        "generator": ("test_random_draw_follows_the_seed, test_random_candidates_vs_oracle", "seeded torch.Generator, None"),
        "memory_budget": ("test_output_does_not_depend_on_the_budget", "None, 1, 64, 512, 4096 bytes"),
    },
    "convnn_attention": {
        "q": ("test_attention_form_vs_oracle, test_sdpa_exact", "(B*H, Nq 1..12, D 1..8), every style"),
        "k": ("test_attention_form_vs_oracle, test_sdpa_exact", "(B*H, Nk 1..12, D), keys = queries in half the cases"),
        "v": ("test_attention_form_vs_oracle, test_sdpa_exact", "(B*H, Nk, Dv 1..8)"),
        "config": ("test_attention_form_vs_oracle, test_kvt_matches_paper", "feature basis: similarities, scale, k, candidates all/random, forced self"),
        "allowed": ("test_sdpa_bool_mask, test_sdpa_causal, test_attention_form_vs_oracle", "None, causal, random bool, key padding; fully masked rows"),
        "weight": ("test_weighted_attention_and_its_neighbours_match_the_oracle", "None, standard normal (C_out, Dv, k)"),
        "bias": ("test_weighted_attention_and_its_neighbours_match_the_oracle", "None, standard normal (C_out,)"),
        "generator": ("test_attention_form_vs_oracle", "seeded torch.Generator (random candidates)"),
        "memory_budget": ("test_attention_layer_matches_its_projections_and_the_oracle", "None, 64 bytes"),
        "dropout_p": ("test_attention_dropout_is_unbiased", "0 (eval), 0.2..0.8 (mean of 2000 draws)"),
    },
    "neighbours": {
        "x": ("test_neighbours_match_position_table, test_neighbours_of_random_candidates_follow_the_seed", "as convnn (position; feature and hybrid with random candidates)"),
        "config": ("test_neighbours_match_position_table", "position basis, every metric and geometry"),
        "generator": ("test_neighbours_of_random_candidates_follow_the_seed", "seeded torch.Generator"),
        "memory_budget": ("test_neighbours_of_random_candidates_follow_the_seed", "None, 64 bytes"),
    },
    "attention_neighbours": {
        "q": ("test_kvt_neighbours_are_topk", "(B*H, Nq 1..12, D 1..8)"),
        "k": ("test_kvt_neighbours_are_topk", "(B*H, Nk 1..12, D)"),
        "config": ("test_kvt_neighbours_are_topk", "kvt_config(k 1..Nk, scale None or 0.05..2)"),
        "allowed": ("test_weighted_attention_and_its_neighbours_match_the_oracle", "None, random bool masks"),
        "generator": ("test_weighted_attention_and_its_neighbours_match_the_oracle", "seeded torch.Generator (random candidates)"),
        "memory_budget": ("test_weighted_attention_and_its_neighbours_match_the_oracle", "None, 64 bytes"),
    },
    "position_table": {
        "geometry": ("test_neighbours_match_position_table, test_position_table_of_a_34x34_map_matches_the_oracle", "resolve_geometry of 1-2 axes up to 34x34"),
        "config": ("test_neighbours_match_position_table", "position basis, every metric and geometry"),
        "device": ("test_neighbours_match_position_table", "cpu (and cuda when present)"),
        "cand_index": ("test_position_table_of_a_candidate_subset", "None, random subsets of the padded grid"),
    },
    "gather_neighbours": {
        "values": ("test_step_functions_match_their_formulas", "(B 1..2, M 1..6, C 1..8) float64"),
        "index": ("test_step_functions_match_their_formulas", "(Nq, k) shared or (B, Nq, k), uniform in 0..M-1"),
    },
    "rho_weights": {
        "scores": ("test_step_functions_match_their_formulas", "standard normal (B, Nq, k)"),
        "valid": ("test_step_functions_match_their_formulas", "None, random bool (70% valid, empty rows included)"),
        "rho": ("test_step_functions_match_their_formulas", "ones, softmax, scores"),
        "rho_scale": ("test_step_functions_match_their_formulas", "0.25..4"),
    },
    "apply_kernel": {
        "neighbours": ("test_step_functions_match_their_formulas", "(B, Nq, k 1..4, C 1..8)"),
        "weight": ("test_step_functions_match_their_formulas", "standard normal (C_out, C/groups, k); None (sum)"),
        "bias": ("test_step_functions_match_their_formulas", "standard normal or None"),
        "kernel": ("test_step_functions_match_their_formulas", "full, grouped, sum"),
        "groups": ("test_step_functions_match_their_formulas", "1, 2"),
    },
    "aggregate_as_conv1d": {
        "neighbours": ("test_step_functions_match_their_formulas", "(B, Nq, k 1..4, C 1..8)"),
        "weight": ("test_step_functions_match_their_formulas", "standard normal (C_out, C/groups, k)"),
        "bias": ("test_step_functions_match_their_formulas", "standard normal or None"),
        "groups": ("test_step_functions_match_their_formulas", "1, 2"),
    },
    "Neighbours": {
        "index": ("test_step_functions_match_their_formulas", "(Nq, k) or (B, Nq, k) int64"),
        "score": ("test_step_functions_match_their_formulas", "(Nq, k) or (B, Nq, k) float64"),
        "valid": ("test_step_functions_match_their_formulas", "None, random bool"),
    },
    "conv_config": {
        "kernel_size": ("test_conv2d_exact, test_conv_layers_and_conv_config_match_torch_conv", "1..9 per axis, odd, even, non-square"),
        "spatial_dims": ("test_conv_layers_and_conv_config_match_torch_conv, test_conv1d_exact", "1, 2, 3"),
        "stride": ("test_conv2d_exact, test_conv_layers_and_conv_config_match_torch_conv", "1..2 per axis"),
        "padding": ("test_conv2d_exact, test_conv_layers_and_conv_config_match_torch_conv", "0..2, per-axis tuples, 'valid', 'same'"),
        "dilation": ("test_conv2d_exact, test_conv_layers_and_conv_config_match_torch_conv", "1..2 per axis"),
        "groups": ("test_conv2d_exact, test_conv_layers_and_conv_config_match_torch_conv", "1, depthwise, channel multipliers"),
        "convention": ("test_trap_research_convention_at_7x7, test_trap_research_convention_exact_at_3x3_square", "exact, research"),
    },
    "from_conv": {
        "conv": ("test_from_conv_module", "nn.Conv1d/2d/3d of the conv cases, every padding mode"),
        "convention": ("test_trap_research_convention_at_7x7, test_trap_research_convention_exact_at_3x3_square", "exact, research"),
    },
    "from_multihead_attention": {
        "mha": ("test_multihead_attention_exact, test_defaults_taken_from_pytorch_are_pytorchs", "nn.MultiheadAttention: heads, kdim/vdim, biases, batch_first"),
        "k": ("test_from_multihead_attention_and_sdpa_twin_with_k", "None, 1..S"),
    },
    "scaled_dot_product_attention": {
        "query": ("test_sdpa_twin", "(B, H, L 1..12, E 1..8)"),
        "key": ("test_sdpa_twin", "(B, H, S 1..12, E)"),
        "value": ("test_sdpa_twin", "(B, H, S, Ev 1..8)"),
        "attn_mask": ("test_sdpa_twin", "None, bool masks, causal"),
        "dropout_p": ("test_sdpa_and_kvt_dropout_are_unbiased", "0, 0.2..0.8 (mean of 2000 draws)"),
        "is_causal": ("test_sdpa_twin", "False, True"),
        "scale": ("test_sdpa_twin, test_defaults_taken_from_pytorch_are_pytorchs", "None (1/sqrt(E), checked against F.scaled_dot_product_attention), 0.05..2"),
        "k": ("test_from_multihead_attention_and_sdpa_twin_with_k", "None, 1..S"),
        "memory_budget": ("test_from_multihead_attention_and_sdpa_twin_with_k", "None, 64 bytes"),
    },
    "kvt_attention": {
        "q": ("test_kvt_matches_paper", "(B*H, Nq 1..12, D 1..8)"),
        "k": ("test_kvt_matches_paper", "(B*H, Nk 1..12, D)"),
        "v": ("test_kvt_matches_paper", "(B*H, Nk, Dv 1..8)"),
        "topk": ("test_kvt_matches_paper", "1..Nk"),
        "scale": ("test_kvt_matches_paper", "None (1/sqrt(D)), 0.05..2"),
        "dropout_p": ("test_sdpa_and_kvt_dropout_are_unbiased", "0, 0.2..0.8 (mean of 2000 draws)"),
    },
    "kvt_config": {
        "k": ("test_kvt_matches_paper", "1..Nk"),
        "scale": ("test_kvt_matches_paper, test_defaults_taken_from_pytorch_are_pytorchs", "None (1/sqrt(D), checked against SDPA), 0.05..2"),
    },
    "KVTAttention": {
        "dim": ("test_kvt_block_arguments_match_the_paper", "heads * 1..3"),
        "num_heads": ("test_kvt_block_arguments_match_the_paper", "1..3"),
        "topk": ("test_kvt_block_arguments_match_the_paper", "1..N"),
        "qkv_bias": ("test_kvt_block_arguments_match_the_paper", "True, False"),
        "qk_scale": ("test_kvt_block_arguments_match_the_paper, test_defaults_taken_from_pytorch_are_pytorchs", "None (head_dim**-0.5, the paper's), 0.1..2"),
        "attn_drop": ("test_eval_mode_turns_attention_dropout_off", "0.1..0.9 (eval), 0 (train)"),
        "proj_drop": ("test_eval_mode_turns_attention_dropout_off", "0.1..0.9 (eval)"),
    },
    "ConvNNAttention": {
        "embed_dim": ("test_attention_layer_matches_its_projections_and_the_oracle", "num_heads * 1..3"),
        "num_heads": ("test_attention_layer_matches_its_projections_and_the_oracle", "1..2"),
        "k": ("test_attention_layer_matches_its_projections_and_the_oracle", "None, 1..candidates"),
        "similarity": ("test_attention_layer_matches_its_projections_and_the_oracle", "scaled_dot, dot, cosine, euclidean"),
        "scale": ("test_attention_layer_matches_its_projections_and_the_oracle", "None, 0.1..2"),
        "candidates": ("test_attention_layer_matches_its_projections_and_the_oracle", "all, random"),
        "num_candidates": ("test_attention_layer_matches_its_projections_and_the_oracle", "None, S - 1"),
        "dropout": ("test_eval_mode_turns_attention_dropout_off, test_attention_layer_dropout_is_unbiased_in_train_mode", "0.1..0.9 (eval), 0.2..0.8 (train, 2000 draws); default checked against nn.MultiheadAttention"),
        "bias": ("test_attention_layer_matches_its_projections_and_the_oracle, test_defaults_taken_from_pytorch_are_pytorchs", "True, False"),
        "batch_first": ("test_attention_layer_matches_its_projections_and_the_oracle, test_defaults_taken_from_pytorch_are_pytorchs", "True, False"),
        "kdim": ("test_attention_layer_matches_its_projections_and_the_oracle, test_defaults_taken_from_pytorch_are_pytorchs", "None, 1..4"),
        "vdim": ("test_attention_layer_matches_its_projections_and_the_oracle, test_defaults_taken_from_pytorch_are_pytorchs", "None, 1..4"),
        "memory_budget": ("test_attention_layer_matches_its_projections_and_the_oracle", "None, 64 bytes"),
        "device": ("test_attention_layer_matches_its_projections_and_the_oracle", "cpu"),
        "dtype": ("test_attention_layer_matches_its_projections_and_the_oracle, test_eval_mode_turns_attention_dropout_off", "float64"),
    },
    "CoordinateEncoding": {
        "args": ("test_coordinate_encoding_appends_linspace_channels", "none (nn.Module's; the layer takes no argument)"),
        "kwargs": ("test_coordinate_encoding_appends_linspace_channels", "none (nn.Module's; the layer takes no argument)"),
    },
    "PixelShuffleConvNN2d": {
        "in_channels": ("test_pixel_shuffle_layer_is_unshuffle_convnn_shuffle", "1..2"),
        "out_channels": ("test_pixel_shuffle_layer_is_unshuffle_convnn_shuffle", "1..2"),
        "config": ("test_pixel_shuffle_layer_is_unshuffle_convnn_shuffle", "feature, position (padded), hybrid"),
        "factor": ("test_pixel_shuffle_layer_is_unshuffle_convnn_shuffle", "1..2"),
        "bias": ("test_pixel_shuffle_layer_is_unshuffle_convnn_shuffle", "True, False"),
    },
    "BranchingConvNN": {
        "in_channels": ("test_branching_layer_fuses_a_convnn_and_a_conv_branch", "1..3"),
        "out_channels": ("test_branching_layer_fuses_a_convnn_and_a_conv_branch", "1..4"),
        "config": ("test_branching_layer_fuses_a_convnn_and_a_conv_branch", "feature basis, k = 3, full kernel"),
        "ratio": ("test_branching_layer_fuses_a_convnn_and_a_conv_branch", "0..1 (one branch only at the ends)"),
        "conv_kernel_size": ("test_branching_layer_fuses_a_convnn_and_a_conv_branch", "1..3"),
        "spatial_dims": ("test_branching_layer_fuses_a_convnn_and_a_conv_branch", "1, 2, 3"),
        "bias": ("test_branching_layer_fuses_a_convnn_and_a_conv_branch", "True, False"),
    },
    "neighborhood_attention": {
        "query": ("test_neighborhood_attention_is_natten, test_window_output_does_not_depend_on_the_budget", "(B 1..2, *S 1-3 axes, H 1..3, D 8, 16) vs NATTEN; D 1..16 vs masked SDPA"),
        "key": ("test_neighborhood_attention_is_natten, test_window_output_does_not_depend_on_the_budget", "as query"),
        "value": ("test_neighborhood_attention_is_natten, test_window_output_does_not_depend_on_the_budget", "(B, *S, H, Dv): Dv = D vs NATTEN, 1..8 vs masked SDPA"),
        "kernel_size": ("test_neighborhood_attention_is_natten", "2..9 (1-D), 2..5 (2-D, 3-D) per axis, odd and even"),
        "dilation": ("test_neighborhood_attention_is_natten", "1..3 per axis"),
        "stride": ("test_neighborhood_attention_is_natten", "1..kernel per axis"),
        "is_causal": ("test_neighborhood_attention_is_natten", "False, True per axis"),
        "scale": ("test_neighborhood_attention_is_natten", "None (1/sqrt(D)), 0.05, 0.5, 2"),
        "memory_budget": ("test_window_output_does_not_depend_on_the_budget", "64, 4096, 65536 bytes"),
    },
    "neighborhood_config": {
        "kernel_size": ("test_window_vs_masked_sdpa, test_window_vs_oracle", "2..9 (1-D), 2..5 (2-D, 3-D) per axis"),
        "dilation": ("test_window_vs_masked_sdpa, test_window_vs_oracle", "1..3 per axis"),
        "stride": ("test_window_vs_masked_sdpa, test_window_vs_oracle", "1..kernel per axis"),
        "is_causal": ("test_window_vs_masked_sdpa, test_window_vs_oracle", "False, True per axis"),
        "scale": ("test_window_vs_masked_sdpa, test_window_vs_oracle", "None (1/sqrt(D)), 0.05, 0.5, 2"),
    },
    "window_attention": {
        "q": ("test_window_vs_masked_sdpa, test_window_gradients", "(B*H 1..6, *S 1-3 axes, D 1..16), every input style"),
        "k": ("test_window_vs_masked_sdpa, test_window_gradients", "as q"),
        "v": ("test_window_vs_masked_sdpa, test_window_gradients", "(B*H, *S, Dv 1..16)"),
        "config": ("test_window_vs_masked_sdpa, test_window_config_refuses_other_knobs", "neighborhood_config of the drawn window; other knobs refused"),
        "memory_budget": ("test_window_output_does_not_depend_on_the_budget", "64, 4096, 65536 bytes"),
    },
    "NeighborhoodAttention": {
        "dim": ("test_layer_is_qkv_window_attention_proj, test_layer_loads_natten_module", "heads * 1..16"),
        "num_heads": ("test_layer_is_qkv_window_attention_proj, test_layer_loads_natten_module", "1..3"),
        "kernel_size": ("test_layer_is_qkv_window_attention_proj", "2..9 (1-D), 2..5 (2-D, 3-D) per axis"),
        "spatial_dims": ("test_layer_is_qkv_window_attention_proj, test_layer_loads_natten_module", "1, 2, 3"),
        "dilation": ("test_layer_is_qkv_window_attention_proj, test_layer_loads_natten_module", "1..3 per axis"),
        "stride": ("test_layer_is_qkv_window_attention_proj", "1..kernel per axis"),
        "is_causal": ("test_layer_is_qkv_window_attention_proj", "False, True per axis"),
        "qkv_bias": ("test_layer_is_qkv_window_attention_proj, test_layer_loads_natten_module", "True, False"),
        "scale": ("test_layer_is_qkv_window_attention_proj", "None (1/sqrt(head_dim)), 0.05, 0.5, 2"),
    },
    "convnn_layer": {
        "spatial_dims": ("test_conv_layers_and_conv_config_match_torch_conv", "1, 2, 3"),
    },
}

_LAYER = {
    "in_channels": ("test_conv_layers_and_conv_config_match_torch_conv", "1..4"),
    "out_channels": ("test_conv_layers_and_conv_config_match_torch_conv", "1..4"),
    "config": ("test_conv_layers_and_conv_config_match_torch_conv, test_from_conv_module", "conv_config of the drawn geometry"),
    "bias": ("test_conv_layers_and_conv_config_match_torch_conv", "True, False"),
    "padding_mode": ("test_conv_layers_and_conv_config_match_torch_conv", "zeros, reflect, replicate, circular"),
    "memory_budget": ("test_conv_layers_and_conv_config_match_torch_conv", "None, 64, 4096 bytes"),
    "device": ("test_conv_layers_and_conv_config_match_torch_conv", "cpu"),
    "dtype": ("test_conv_layers_and_conv_config_match_torch_conv", "float64, float32"),
}
for _name in ("ConvNN1d", "ConvNN2d", "ConvNN3d"):
    COVERAGE[_name] = dict(_LAYER)


def public_callables() -> Iterator[tuple[str, object]]:
    """``(name, callable)`` of every public function and class of `convnn_ref`, sorted by name."""
    for name in sorted(convnn_ref.__all__):
        obj = getattr(convnn_ref, name)
        if callable(obj):
            yield name, obj


def arguments(obj: object) -> list[tuple[str, str]]:
    """``(argument, default)`` of a function, or of a class's constructor."""
    params = inspect.signature(obj).parameters.values()  # type: ignore[arg-type]
    rows = []
    for p in params:
        if p.name == "self":
            continue
        default = "required" if p.default is inspect.Parameter.empty else repr(p.default)
        if p.kind is p.VAR_POSITIONAL:
            default = "*args"
        elif p.kind is p.VAR_KEYWORD:
            default = "**kwargs"
        rows.append((p.name, default))
    return rows


def rows() -> list[tuple[str, str, str, str, str]]:
    """``(callable, argument, default, properties, range)`` for every argument; a missing cell
    is left empty (the test names it)."""
    out = []
    for name, obj in public_callables():
        cells = COVERAGE.get(name, {})
        for arg, default in arguments(obj):
            props, span = cells.get(arg, ("", ""))
            out.append((name, arg, default, props, span))
    return out


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """docs/coverage.md."""
    lines = [
        "# Argument coverage",
        "",
        "Generated by `python -m suites.coverage` from the public API's signatures and the cells in",
        "`suites/coverage.py`; `suites/test_coverage.py` checks that every argument has a row, that",
        "every named property exists and that this page is current. Do not edit by hand.",
        "",
        "| callable | argument | default | properties that draw it | range drawn |",
        "|---|---|---|---|---|",
    ]
    for name, arg, default, props, span in rows():
        lines.append(f"| `{name}` | `{arg}` | `{_escape(default)}` | {_escape(props)} | {_escape(span)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suites.coverage", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/coverage.md is not what this module renders")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE.relative_to(ROOT)} is stale: run python -m suites.coverage", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)} ({len(rows())} arguments)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
