"""`t2 registry`: list, show, verify, remove, push and pull expert versions."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from t2cli.cli.common import human_size, print_json, settings, stdout_console
from t2cli.cli.options import (
    BaseModelOption,
    JsonOption,
    PlotOption,
    RegistryOption,
    SpecArgument,
    check_plot,
    model_slug,
)

if TYPE_CHECKING:
    from pathlib import Path

    from t2cli.experts.remotes.base import SyncRecord
    from t2cli.experts.versions import Problem

app = typer.Typer(
    name="registry",
    help="Expert versions on disk (ROOT/<model>/<expert>/<version>/) and on remotes (file://, hf://).",
    no_args_is_help=True,
)

RemoteArgument = Annotated[str, typer.Argument(help="Remote: file:///absolute/path or hf://user/repo[@revision].")]


def version_list(versions: list[int]) -> str:
    return ", ".join(map(str, versions)) if len(versions) <= 4 else f"{versions[0]}…{versions[-1]} ({len(versions)})"


@app.command("list")
def list_command(
    ctx: typer.Context, model: BaseModelOption = None, registry: RegistryOption = None, json_output: JsonOption = False
) -> None:
    """List experts with their versions, base model, task, main metric, size and creation time.

    Example: t2 registry list --model smollm2-135m
    """
    from t2cli.experts.bundled import open_registry

    store = open_registry(registry)
    summaries = store.list(model_slug(model))
    if json_output:
        print_json({"root": str(store.root), "experts": [asdict(s) for s in summaries]})
        return
    if settings(ctx).quiet:
        return
    if not summaries:
        stdout_console().print(f"no experts in {store.root}", markup=False)
        return
    table = Table(title=escape(f"experts in {store.root}"))
    for column in ("name", "versions", "base", "task", "metric", "size", "created"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for s in summaries:
        metric = f"{s.metric} {s.metric_value:.4g}" if s.metric is not None else ""
        created = (s.created or "")[:16].replace("T", " ")
        base = escape(s.base_model) if s.base_model else f"[red]{escape(s.problem or '')}[/red]"
        table.add_row(
            s.name, version_list(s.versions), base, escape(s.task or ""), metric, human_size(s.size_bytes), created
        )
    stdout_console().print(table)


@app.command("show")
def show_command(
    ctx: typer.Context,
    spec: SpecArgument,
    model: BaseModelOption = None,
    registry: RegistryOption = None,
    json_output: JsonOption = False,
    plot: PlotOption = None,
) -> None:
    """Show an expert's manifest and per-layer statistics of its z vectors (the version is verified first);
    for a probe, its layer, tokens, categories and threshold.

    --plot draws mean |z − 1| per layer and role, the z spectra of the most changed matrices and, for a mix, its α.

    Example: t2 registry show arc@2 --plot arc-z.png
    """
    from t2cli.errors import BadInputError
    from t2cli.experts.bundled import open_registry
    from t2cli.experts.files import z_stats

    check_plot(plot)
    ref = open_registry(registry).resolve(spec, model_slug(model))
    expert = ref.load()
    manifest = expert.manifest
    stats = z_stats(expert)
    if plot is not None and manifest.probe is not None:
        raise BadInputError(f"{ref.spec} is a probe: it has no z to plot; drop --plot")
    if plot is not None:
        from t2cli.plots.expert import plot_expert

        plot_expert(expert, plot, title=f"{ref.spec} ({ref.model_slug})")
    if json_output:
        print_json(
            {
                "ref": ref.spec,
                "model_slug": ref.model_slug,
                "path": str(ref.path),
                "manifest": manifest.to_dict(),
                "z_stats": [asdict(s) for s in stats],
            }
        )
        return
    if settings(ctx).quiet:
        return
    ranks: dict[str, set[int]] = {}
    for info in manifest.targets.values():
        ranks.setdefault(info.role, set()).add(info.rank)
    about = Table(title=f"{ref.spec} ({ref.model_slug})", show_header=False)
    about.add_row("path", escape(str(ref.path)))
    about.add_row("base model", escape(f"{manifest.base_model} (fingerprint {manifest.base_fingerprint[:16]})"))
    about.add_row("task", escape(manifest.task or ""))
    about.add_row("description", escape(manifest.description or ""))
    if manifest.probe is not None:
        probe = manifest.probe
        about.add_row("kind", "probe (`--adapt probe`)")
        about.add_row(
            "reads",
            f"the mean hidden state after decoder layer {probe.layer} over the first {probe.tokens} tokens "
            f"(width {probe.hidden_size}); temperature {float(expert.z['temperature']):.3g}",
        )
        about.add_row("categories", escape(", ".join(name for name, _ in probe.categories)))
        about.add_row("threshold", f"{probe.threshold:.2f} (below it: the base weights)")
    else:
        about.add_row("svf rule", manifest.svf_rule)
        about.add_row(
            "targets",
            f"{len(manifest.targets)} matrices; ranks "
            + ", ".join(f"{role} {'/'.join(map(str, sorted(r)))}" for role, r in ranks.items()),
        )
    about.add_row("metrics", escape(", ".join(f"{k} {v:.4g}" for k, v in manifest.metrics.items())))
    about.add_row("provenance", escape(json.dumps(manifest.provenance, default=str)))
    about.add_row("created", f"{manifest.created} with t2 {manifest.t2_version}")
    about.add_row("sha256", manifest.sha256)
    for name, digest in manifest.files.items():
        about.add_row(escape(f"file {name}"), digest)
    table = Table(title="z per matrix")
    for column in ("layer", "role", "rank", "mean", "std", "min", "max"):
        table.add_column(column, justify="left" if column == "role" else "right")
    for i, s in enumerate(stats):
        last_of_layer = i + 1 == len(stats) or stats[i + 1].layer != s.layer
        table.add_row(
            str(s.layer), s.role, str(s.rank), f"{s.mean:.4f}", f"{s.std:.4f}", f"{s.min:.4f}", f"{s.max:.4f}",
            end_section=last_of_layer,
        )  # fmt: skip
    console = stdout_console()
    console.print(about)
    if manifest.probe is None:
        console.print(table)


def print_problems(root: Path, problems: list[Problem]) -> None:
    if not problems:
        stdout_console().print(f"ok: every version in {root} verifies", markup=False)
        return
    table = Table(title=escape(f"problems in {root}"))
    table.add_column("version")
    table.add_column("problem")
    for problem in problems:
        table.add_row(escape(problem.where), escape(problem.message))
    stdout_console().print(table)


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    spec: Annotated[str | None, typer.Argument(help="Only this expert (NAME or NAME@VERSION).")] = None,
    model: BaseModelOption = None,
    registry: RegistryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check every version's manifest and checksums; exit 4 listing each problem found.

    Example: t2 registry verify
    """
    from t2cli.errors import IntegrityError
    from t2cli.experts.bundled import open_registry

    store = open_registry(registry)
    problems = store.verify(spec, model_slug(model))
    if json_output:
        print_json({"root": str(store.root), "ok": not problems, "problems": [asdict(p) for p in problems]})
    elif not settings(ctx).quiet:
        print_problems(store.root, problems)
    if problems:
        raise IntegrityError(
            f"{len(problems)} corrupt version(s) in {store.root}; re-pull them from a remote "
            "or remove them with `t2 registry rm NAME@VERSION`"
        )


@app.command("rm")
def remove_command(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="The version to delete: NAME@VERSION.")],
    model: BaseModelOption = None,
    registry: RegistryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete one version; its number is never reused.

    Example: t2 registry rm arc@1
    """
    from t2cli.experts.bundled import open_registry

    ref = open_registry(registry).remove(spec, model_slug(model))
    if json_output:
        print_json({"removed": ref.spec, "model_slug": ref.model_slug, "path": str(ref.path)})
    elif not settings(ctx).quiet:
        stdout_console().print(f"removed {ref.spec} ({ref.model_slug})", markup=False)


def report(ctx: typer.Context, transfer: SyncRecord, json_output: bool, direction: str) -> None:
    if json_output:
        print_json(asdict(transfer))
        return
    if settings(ctx).quiet:
        return
    where = f"{transfer.spec} ({transfer.model_slug}) {direction} {transfer.remote}"
    line = f"{transfer.action} {where}" if transfer.action != "unchanged" else f"unchanged: {where} already in place"
    stdout_console().print(line, markup=False)


@app.command("push")
def push_command(
    ctx: typer.Context,
    spec: SpecArgument,
    remote: RemoteArgument,
    model: BaseModelOption = None,
    registry: RegistryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Copy a version to a remote (verified first; a version the remote holds with other content is refused).

    Examples: t2 registry push arc@2 hf://me/t2-experts ; t2 registry push arc file:///srv/t2-registry
    """
    from t2cli.experts.bundled import open_registry
    from t2cli.experts.remotes import push

    report(ctx, push(open_registry(registry), spec, remote, model_slug=model_slug(model)), json_output, "to")


@app.command("pull")
def pull_command(
    ctx: typer.Context,
    remote: RemoteArgument,
    spec: SpecArgument,
    model: BaseModelOption = None,
    registry: RegistryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Install a version from a remote; it is verified against its checksums before it is installed.

    Examples: t2 registry pull hf://me/t2-experts arc ; t2 registry pull file:///srv/t2-registry arc@2
    """
    from t2cli.experts.bundled import open_registry
    from t2cli.experts.remotes import pull

    report(ctx, pull(open_registry(registry), remote, spec, model_slug=model_slug(model)), json_output, "from")


@app.command("gc")
def gc_command(ctx: typer.Context, registry: RegistryOption = None, json_output: JsonOption = False) -> None:
    """Delete staging folders left by interrupted writes (publishing does it too, per expert).

    Example: t2 registry gc
    """
    from t2cli.experts.bundled import open_registry

    store = open_registry(registry)
    removed = store.gc()
    if json_output:
        print_json({"root": str(store.root), "removed": removed})
    elif not settings(ctx).quiet:
        stdout_console().print(f"removed {removed} stale staging folder(s) in {store.root}", markup=False)
