"""The benchmark is a command (`make bench`), not a test: pytest must not collect it."""

collect_ignore = ["run.py", "bench_load.py", "bench_servers.py", "bench_ssh.py",
                  "bench_stats.py", "bench_tailnet.py", "scale.py", "scale_floor.py",
                  "scale_hosts.py", "scale_tailnet.py"]
