"""How fast is the fit loop: cells, harnesses, the raw-step floor and the peak probe.

The process seam: `cells`, `profiles`, `record`, `metrics` and `engine` run in the parent (no framework
imported); `engine` starts one fresh process per cell and probe, which runs `child` (`harness`, `raw`,
`peak`: Keras and the backend's framework are imported there, inside the functions).
"""
