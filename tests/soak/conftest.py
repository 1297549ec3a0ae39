"""The soak is a command (`make soak`), not a test: pytest must not collect it."""

collect_ignore = ["run.py", "faults.py"]
