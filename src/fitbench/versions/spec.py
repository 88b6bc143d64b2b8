"""`fitbench versions` columns: what each environment installs, parsed from the command line. Pure.

Grammar (comma-separated items, in one argument or several):
- `keras==3.13.*` — a requirement: one column that installs it;
- `3.15.*` (a bare version, or one with its own operator, `~=3.14.0`) — the previous item's package again:
  `keras==3.13.*,3.15.*` is two columns;
- `tensorflow==2.20.*+tf-keras==2.20.*` — several requirements in one column;
- `installed` — this environment as it is, no install (a baseline that costs nothing to build).
The first column is the reference every other column is compared with.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

from fitbench.errors import UsageError

INSTALLED = "installed"
_OPERATOR = re.compile(r"^(===|==|~=|!=|<=|>=|<|>)")


@dataclass(frozen=True)
class Column:
    label: str  # as the table prints it
    requirements: tuple[str, ...] = ()  # () for `installed`

    @property
    def installed(self) -> bool:
        return not self.requirements

    def key(self, python_tag: str) -> str:
        """The cache key of this column's environment: its requirements and the Python that runs it."""
        text = "\n".join([python_tag, *sorted(self.requirements)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _requirement(text: str, previous_name: str | None) -> Requirement:
    text = text.strip()
    if text[:1].isdigit() or _OPERATOR.match(text):
        if previous_name is None:
            raise UsageError(f"versions: {text!r} is a version with no package before it; "
                             f"write e.g. keras=={text.lstrip('=')}")
        text = f"{previous_name}{text if _OPERATOR.match(text) else '==' + text}"
    if re.fullmatch(r"[A-Za-z0-9._-]+\s*(===|==|>=|<=|~=|!=|<|>)\s*", text):
        raise UsageError(f"versions: {text!r} names no version after its operator; write e.g. {text.strip()}3.15.*")
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise UsageError(f"versions: {text!r} is not a requirement pip understands "
                         f"({str(exc).strip().splitlines()[0]})") from None
    if req.url or req.marker:
        raise UsageError(f"versions: {text!r}: give a package and a version from the package index, "
                         "not a URL or an environment marker")
    if not req.specifier:
        raise UsageError(f"versions: {text!r} names no version; write e.g. {req.name}==3.15.*")
    if req.name.lower() == "fitbench":
        raise UsageError("versions: fitbench itself is the one measuring: it is not a version axis")
    return req


def parse_columns(texts: list[str]) -> list[Column]:
    """The columns asked for, in order; bad input is one UsageError line (exit 2)."""
    items = [item.strip() for text in texts for item in str(text).split(",")]
    if not items or any(not item for item in items):
        raise UsageError("versions: give at least two comma-separated versions, e.g. keras==3.13.*,3.15.*")
    columns: list[Column] = []
    previous: str | None = None
    for item in items:
        if item == INSTALLED:
            columns.append(Column(INSTALLED))
            continue
        reqs = []
        for part in item.split("+"):
            req = _requirement(part, previous)
            reqs.append(req)
            previous = req.name if len(item.split("+")) == 1 else previous
        names = [r.name.lower() for r in reqs]
        if len(set(names)) != len(names):
            raise UsageError(f"versions: {item!r} names a package twice")
        requirements = tuple(str(r) for r in reqs)
        columns.append(Column("+".join(requirements), requirements))
    labels = [c.label for c in columns]
    if len(set(labels)) != len(labels):
        twice = sorted({x for x in labels if labels.count(x) > 1})
        raise UsageError(f"versions: a column is asked twice ({', '.join(twice)})")
    if len(columns) < 2:
        raise UsageError("versions: give at least two versions to compare, e.g. keras==3.13.*,3.15.* "
                         "(or one and `installed`)")
    return columns
