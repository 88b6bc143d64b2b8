"""Did this commit make training slower or break determinism: everything that talks to asv, and the decisions.

`decide` is pure statistics (the process as the unit); `asvdata` is the one adapter onto asv's Python
objects (its results, benchmarks, environments and config); `calibration`, `alert` and `gate` are the
commands' engines; `asvenv` prints the matrix's environment names for scripts. Parent side: asv starts
the benchmark processes.
"""
