"""Which model a command measures (`--model`): the seed network, the zoo, a user's factory or a .keras file.

`choice` is the parent side (parse and check the spec, no framework); `workload` and `zoo` are the child side
(build, compile, feed). Every command takes a ModelChoice and hands it to its children as a dict.
"""
