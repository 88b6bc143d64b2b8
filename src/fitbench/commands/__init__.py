"""One module per `fitbench` command: each has NAME, SUMMARY, `add_parser(subparsers)` and
`main(args, console) -> exit status`; `fitbench.cli` only builds the parser from them and dispatches."""

from __future__ import annotations

from types import ModuleType

from fitbench.commands import (
    alert,
    asv_init,
    bisect,
    breakdown,
    calibrate,
    cost,
    coverage,
    determinism,
    explain,
    gate,
    history,
    replay,
    run,
    versions,
)

COMMANDS: tuple[ModuleType, ...] = (run, breakdown, determinism, cost, coverage, explain, replay, versions, alert,
                                    bisect, history, calibrate, gate, asv_init)
ALIASES = {alias: module.NAME for module in COMMANDS for alias in getattr(module, "ALIASES", ())}


def by_name(name: str) -> ModuleType:
    return next(m for m in COMMANDS if m.NAME == ALIASES.get(name, name))
