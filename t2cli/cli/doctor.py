"""`t2 doctor`: versions, devices, threads, engines, model packages, data folders and their sizes."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from t2cli.cli.common import human_size, print_json, settings, stdout_console
from t2cli.cli.options import JsonOption

if TYPE_CHECKING:
    from t2cli.doctor import DoctorReport, EngineStatus, FolderUsage, ModelPackage


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def engine_line(engine: EngineStatus) -> str:
    return (engine.version or "version unknown") if engine.available else "not installed"


def model_line(model: ModelPackage) -> str:
    if not model.installed:
        return f"not installed ({model.install_hint})"
    return f"{model.package} {model.version}, " + ("converted" if model.converted else "not converted yet")


def folder_line(folder: FolderUsage) -> str:
    if not folder.exists:
        return f"none ({folder.path})"
    files = "1 file" if folder.files == 1 else f"{folder.files} files"
    return f"{human_size(folder.size_bytes)} in {files} ({folder.path})"


def bank_line(report: DoctorReport) -> str:
    if report.bank_root is None:
        return "none"
    versions = "1 version" if report.bank_versions == 1 else f"{report.bank_versions} versions"
    return f"{versions} in {report.bank_root}, imported into {report.t2_home}/registry when t2 uses it"


def plugin_rows(report: DoctorReport) -> list[tuple[str, str]]:
    """One row per plug-in kind: its entries by origin (t2cli's own, then each distribution's)."""
    by_kind: dict[str, dict[str, list[str]]] = {}
    for info in report.plugins:
        by_kind.setdefault(f"{info.kind}s", {}).setdefault(info.origin, []).append(info.name)
    return [
        (kind, "; ".join(f"{', '.join(names)} ({origin})" for origin, names in origins.items()))
        for kind, origins in by_kind.items()
    ]


def report_table(report: DoctorReport) -> Table:
    torch = report.torch
    threads_env = report.t2_threads_env or "unset"
    sections: list[list[tuple[str, str]]] = [
        [
            ("t2", report.t2_version),
            ("python", f"{report.python} ({report.python_executable})"),
            ("platform", report.platform),
        ],
        [
            ("torch", f"{torch.version} ({torch.build} build)"),
            ("CUDA devices", ", ".join(torch.cuda_devices) or "none"),
            ("MPS", yes_no(torch.mps)),
            ("device auto", report.auto_placement),
            ("device in use", report.placement),
            ("threads", f"{torch.threads} in use; {report.cpu_count} CPUs; $T2_THREADS {threads_env}"),
        ],
        [(f"engine {engine.name}", engine_line(engine)) for engine in report.engines],
        [(f"model {model.model}", model_line(model)) for model in report.models],
        [
            ("t2 home", report.t2_home),
            ("registry root", f"{report.registry_root} (from {report.registry_source})"),
            ("bundled bank", bank_line(report)),
            *((folder.name, folder_line(folder)) for folder in report.caches),
        ],
        [("HF token", yes_no(report.hf_token)), ("code sandbox", report.sandbox)],
        plugin_rows(report),
        [("problem", problem) for problem in report.problems],
    ]
    table = Table(title="t2 doctor", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for rows in filter(None, sections):
        for i, (key, value) in enumerate(rows):
            # Text, not markup: paths and package hints may hold [brackets]
            table.add_row(key, Text(value), end_section=i + 1 == len(rows))
    return table


def doctor_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Report versions, devices, threads, engines, model packages, and t2's folders with their sizes.

    Exits 0 whatever is missing: it is a report. Example: t2 doctor --json
    """
    from t2cli.config import configure_threads
    from t2cli.doctor import THREADS_ENV, collect, threads_env_problem

    threads = settings(ctx).threads
    # Apply the thread rule every command uses, so the report shows their count; a bad $T2_THREADS
    # is listed as a problem instead of stopping the report that diagnoses it.
    if threads is not None or threads_env_problem(os.environ.get(THREADS_ENV)) is None:
        configure_threads(threads)
    report = collect(settings(ctx).device, settings(ctx).dtype)
    if json_output:
        print_json(asdict(report))
    elif not settings(ctx).quiet:
        stdout_console().print(report_table(report))
