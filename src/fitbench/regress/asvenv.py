"""`python -m fitbench.regress.asvenv [BACKEND ...]`: the asv environment name of each backend of the matrix
(KERAS_BACKEND values, and tf-keras for the Keras 2 row).

asv's `-E` selects an environment by its full name, which asv builds from asv.conf.json's matrix
(requirements and environment variables). Prints one "BACKEND ENV-NAME" line per backend, for scripts
such as .ci/run: `asv run -E "$(python -m fitbench.regress.asvenv jax | cut -d' ' -f2)" HEAD^!`.
"""

from __future__ import annotations

import sys

from fitbench.errors import UsageError
from fitbench.regress.asvdata import backend_environments


def main(argv: list[str]) -> int:
    try:
        envs = backend_environments(".", argv or None, every=True)
    except UsageError as exc:
        sys.stderr.write(f"fitbench.regress.asvenv: error: {exc}\n")
        return 2
    for backend, name in envs.items():
        print(backend, name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
