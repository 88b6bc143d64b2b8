"""The process machinery: starting a framework child and reading its answer (`isolation`, `worker`), what a
process is told before a framework is imported and what it reports about itself (`runtime`: thread pools,
CPU pinning, versions, device names), simulated devices (`devices`), and the settings that cross the process
boundary as text, parsed by the same functions on both sides (`options`)."""
