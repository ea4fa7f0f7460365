"""`t2 serve`: the two passes behind an OpenAI-compatible HTTP API (the `t2cli[serve]` extra)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from t2cli.cli.common import settings, stderr_console
from t2cli.cli.options import EngineSettings, group_values
from t2cli.cli.passes import Routing, check_adapt_name, open_slot, strategy_options, with_pass_options


@with_pass_options
def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="T2_API_KEY",
            show_default=False,
            help="Require `Authorization: Bearer KEY` on /v1 and /metrics (401 without it). Default: no key.",
        ),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="The most max_tokens a request may ask for (400 above it).")
    ] = 1024,
    max_request_bytes: Annotated[
        int, typer.Option("--max-request-bytes", min=1024, help="The largest request body accepted (400 above it).")
    ] = 1_048_576,
    max_queue: Annotated[
        int, typer.Option("--max-queue", min=1, help="Requests that may wait; beyond them 429 with Retry-After.")
    ] = 256,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Requests routed and answered together.")] = 64,
    batch_window: Annotated[
        float,
        typer.Option("--batch-window", min=0, max=10, help="Seconds a batch waits for more requests after its first."),
    ] = 0.02,
    lora_rank: Annotated[
        int | None,
        typer.Option(
            "--lora-rank",
            min=1,
            help="Pass 2 without swaps (hf engine): every expert's requests in mixed batches, as in t2 run.",
        ),
    ] = None,
    pass2: Annotated[
        str,
        typer.Option("--pass2", help="How pass 2 batches the experts: groups or rows, as in t2 run."),
    ] = "groups",
    **given: Any,  # Routing, EngineSettings and StrategyOptions (with_pass_options)
) -> None:
    """Serve the bank over an OpenAI-compatible API: each request is answered by the expert pass 1 picks.

    POST /v1/chat/completions and /v1/completions (stream: true for server-sent events), GET /v1/models,
    /health and /metrics (Prometheus). A request's `model` is auto (default: routed with --adapt), base,
    or an expert NAME or NAME@V; its answer names the expert, its α and pass 1's confidence (the `t2`
    field and X-T2-* headers). Requests arriving within --batch-window are routed together and answered
    in batches grouped by expert; greedy unless a request sets a temperature, as t2 run. Access log: one
    JSON line per request on stdout. SIGTERM drains, then exits 0. Needs the serve extra (docs/guide.md).

    Example: t2 serve --port 8000, then:
    curl -s localhost:8000/v1/chat/completions -d '{"messages": [{"role": "user", "content": "What is 12 * 7?"}]}'
    """
    from t2cli.adapt.prepare import make_router
    from t2cli.adapt.two_pass import check_batching_name
    from t2cli.serve.server import require_server_stack, run

    require_server_stack()
    routing, on = group_values(Routing, ctx.params), group_values(EngineSettings, ctx.params)
    adapt = routing.adapt
    options = strategy_options(ctx, routing.config)
    options.check(adapt)
    from t2cli.serve.app import ServeConfig, create_app
    from t2cli.serve.batcher import BatchSettings
    from t2cli.serve.schema import Limits
    from t2cli.serve.service import Service

    config = ServeConfig(
        Limits(max_tokens=max_tokens, max_request_bytes=max_request_bytes),
        BatchSettings(window=batch_window, max_batch=max_batch, max_queue=max_queue),
        api_key=api_key or None,
    )
    check_adapt_name(adapt, on.registry)  # an expert name: it must exist before the model loads
    check_batching_name(pass2)
    loaded, slot = open_slot(ctx, on)
    router = make_router(adapt, slot, loaded, slot.registry, options)
    service = Service(slot, router, chunk_size=max_batch, lora_rank=lora_rank, batching=pass2)
    app = create_app(service, config, sys.stdout)
    quiet = settings(ctx).quiet
    if not quiet:
        console = stderr_console()
        if router.note:
            console.print(router.note, markup=False, soft_wrap=True)
        console.print(
            f"t2 serve: http://{host}:{port}/v1 — {loaded.model_id} on {slot.engine.name}, model auto = --adapt "
            f"{adapt}{', key required' if config.api_key else ''}; access log on stdout (JSON lines)",
            markup=False,
            soft_wrap=True,
        )
    run(app, host, port)
    if not quiet:
        stderr_console().print("t2 serve: drained and stopped", markup=False)
