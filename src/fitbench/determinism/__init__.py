"""Is training bit-identical: across the three APIs, across processes, and the seed question's replay.

The process seam: `check` and `compare` run in the parent (no framework imported); `check` starts one fresh
process per run, which runs `train` (TF op determinism is process-wide and one-way); `replay` replays the
seed question, each replay in its own process. `explain` (parent) has `trace` (child) train two streams step by
step and locates where they part: step, layer, phase.
"""
