"""The options that pick an inference engine, shared by every command that runs the model."""

from __future__ import annotations

from typing import Annotated

import typer

EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        envvar="T2_ENGINE",
        help="auto (vllm when installed and able to run here, else hf), hf (transformers), or vllm.",
    ),
]
TensorParallelOption = Annotated[
    int, typer.Option("--tp", help="vllm: GPUs to shard the model over (tensor parallelism).", min=1)
]
