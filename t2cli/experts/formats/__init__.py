"""Export formats (`t2 export --format NAME`), registered by name as plug-ins.

A format is one class in a file of its own (`base.ExportFormat`): its name, whether it takes a size
budget (--rank/--energy), how it writes an expert and how other runtimes load the result. t2's own are
`peft-lora` and `merged`; other packages add theirs through the `t2cli.exporters` entry-point group
(t2cli.plugins).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from t2cli.plugins import PluginRegistry

if TYPE_CHECKING:
    from t2cli.experts.formats.base import ExportFormat

EXPORTERS: PluginRegistry[ExportFormat] = PluginRegistry(
    "export format",
    "t2cli.exporters",
    {
        "peft-lora": "t2cli.experts.formats.peft_lora:PeftLoraFormat",
        "merged": "t2cli.experts.formats.merged:MergedFormat",
    },
)
