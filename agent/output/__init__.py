"""A command's output, from the bytes SSH receives to what a caller reads: spooled
and redacted as it arrives within a disk budget (spool.py, redact.py with the
formats in secret_formats.py), shown live (live.py), cut to head and tail with the
rest kept behind a handle (store.py), parsed into rows (parsing.py), and the
result every front end shows (results.py).
"""
