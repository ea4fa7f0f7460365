"""What SVF adapts: the matrix roles of a decoder layer and the record of one targeted matrix."""

from __future__ import annotations

from dataclasses import dataclass

ATTENTION_ROLES = ("q", "k", "v", "o")
MLP_ROLES = ("gate", "up", "down")
ALL_ROLES = ATTENTION_ROLES + MLP_ROLES


@dataclass(frozen=True)
class TargetMatrix:
    """One weight matrix SVF adapts, named by the model's own parameter name."""

    name: str
    role: str
    layer: int
    shape: tuple[int, int]

    @property
    def rank(self) -> int:
        return min(self.shape)
