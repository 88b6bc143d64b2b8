"""The exit statuses of every fitbench command, one table: each number means one thing whichever command
returns it, so a shell script or a CI job reads them the same way (docs/reference.md prints this table; the
GitHub workflow acts on it).

| status | name | meaning |
|---|---|---|
| 0 | OK | done: nothing found (no regression, bit-identical, every layer covered), every cell decided |
| 1 | FOUND | found what it looks for: a regression, a divergence, a culprit, an uncovered layer, a cost > --max-cost |
| 2 | ERROR | bad input (one line, nothing run or written), or a measurement failed: the answer is incomplete |
| 3 | UNDECIDED | could not tell: too noisy, too few processes or commits; never a pass (--undecided-ok makes it 0) |
| 70 | INTERNAL | fitbench itself failed (sysexits' EX_SOFTWARE): one line, the traceback in a crash log |
| 130 | INTERRUPTED | Ctrl-C, SIGTERM or SIGHUP (128 + SIGINT, what a shell reports); what was measured is kept |
"""

OK = 0
FOUND = 1
ERROR = 2
UNDECIDED = 3
INTERNAL = 70  # never 1, which a CI job reads as "found"
INTERRUPTED = 130

MEANINGS = {OK: "ok", FOUND: "found", ERROR: "error", UNDECIDED: "undecided", INTERNAL: "internal error",
            INTERRUPTED: "interrupted"}
