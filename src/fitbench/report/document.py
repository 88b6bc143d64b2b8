"""What every document fitbench writes shares: `to_dict`, the dict JSON is written from (fields whose metadata
says `optional` left out while unset). A document's own fields, `command` and `schema_version` among them,
stay on its dataclass, which the shipped schemas are built from (fitbench.schema)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any


class Document:
    """A mixin for a dataclass written as JSON."""

    def to_dict(self) -> dict[str, Any]:
        optional = {f.name for f in fields(self) if f.metadata.get("optional")}  # type: ignore[arg-type]
        return {k: v for k, v in asdict(self).items()  # type: ignore[call-overload]
                if not (k in optional and v is None)}
