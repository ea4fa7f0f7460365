"""`t2 decompose`: SVD of a model's target matrices into the on-disk cache."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from t2cli.cli.common import human_size, make_progress, print_json, settings, stdout_console
from t2cli.cli.options import ModelArgument, TargetsOption, model_and_threads


def decompose_command(
    ctx: typer.Context,
    model: ModelArgument = None,
    targets: TargetsOption = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute even if the cache has the factors.")] = False,
    driver: Annotated[
        str, typer.Option("--driver", help="gram (fp64 Gram eigh, verified; falls back) or gesdd (LAPACK SVD).")
    ] = "gram",
    cache_dtype: Annotated[
        str,
        typer.Option(
            "--cache-dtype",
            help="Factors' dtype in the cache: float32, or bfloat16/float16 (half the size, ~1e-3 error).",
        ),
    ] = "float32",
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Decompose the targeted weight matrices (U, s, V per matrix), cached per model fingerprint.

    Each matrix is read from the checkpoint as stored and factorised on --device, one at a time.

    Example: t2 --device cuda decompose meta-llama/Meta-Llama-3-8B --cache-dtype bfloat16
    """
    from t2cli.models.matching import parse_roles
    from t2cli.svd import check_driver, decompose, summarize
    from t2cli.svd_cache import cache_dtype_of

    parse_roles(targets)  # refuse a bad --targets, --cache-dtype or --driver before spending seconds on the model
    cache_dtype_of(cache_dtype)
    check_driver(driver)
    loaded = model_and_threads(ctx, model)
    selected = loaded.select(targets)
    with make_progress(ctx) as progress:
        task = progress.add_task("decomposing", total=len(selected))
        result = decompose(
            loaded,
            selected,
            force=force,
            driver=driver,
            cache_dtype=cache_dtype,
            resident=False,
            on_matrix=lambda t: progress.update(task, advance=1),
        )
    summary = summarize(loaded, selected, result)
    if json_output:
        print_json(asdict(summary))
        return
    if settings(ctx).quiet:
        return
    table = Table(title=f"SVD of {summary.model_id}", show_header=False)
    table.add_row("matrices", str(summary.matrices))
    table.add_row("ranks", ", ".join(f"{role} {rank}" for role, rank in summary.ranks.items()))
    table.add_row("z parameters", f"{summary.z_parameters:,}")
    table.add_row("LoRA r=16 parameters", f"{summary.lora_r16_parameters:,}")
    table.add_row("computed now", f"{summary.computed} (cached: {summary.matrices - summary.computed})")
    table.add_row("seconds", f"{summary.seconds:.2f}")
    table.add_row("fingerprint", summary.fingerprint[:16])
    table.add_row("reconstruction error", f"{summary.max_reconstruction_error:.1e} (largest, of those computed now)")
    table.add_row("cache", f"{summary.cache} ({human_size(summary.cache_bytes)})")
    stdout_console().print(table)
