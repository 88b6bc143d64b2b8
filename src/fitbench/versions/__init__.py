"""Released versions as an axis: the same cells in one cached environment per version set, side by side.

`spec` parses what the user asks for (pure), `envs` builds and caches the environments (pip, no framework),
`compare` runs `fitbench run` in each, interleaved round by round, and decides per cell with the process as
the unit (fitbench.regress.decide).
"""
