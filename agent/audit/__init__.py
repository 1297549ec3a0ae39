"""The audit log: every call's two records, written before anything runs
(writer.py), each one bounded canonical JSON line (shape.py), in a hash chain
with optional seals (chain.py), read back (reader.py, follow.py), verified
(verify.py) and shipped to syslog as they are written (ship.py, syslog.py); and
each command's recording, an asciinema cast (recorder.py, casts.py).
"""
