"""One small module per private API of another project that fitbench leans on, each saying why and which
versions were checked. When one breaks, it breaks here, with a fallback where there is one.

asv's Python objects (results, benchmarks, environments) are read in fitbench.regress.asvdata, asv's
adapter, which pyproject pins below asv 0.7.
"""
