"""The benchmarks (`make bench`, `make bench-scale`): figures, not tests.

Run as `python -m tests.bench...`, they import the agent's packages without its start-up,
so the dependency noise the agent silences at start is silenced here first.
"""

from agent.logs import quiet_known_noise

quiet_known_noise()
