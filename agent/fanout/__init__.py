"""One command on many hosts, the parts that need no service: the strategy (how
many hosts at once, canary first, when to stop: strategy.py), each host's
outcome (host_outcome.py), outcomes grouped by what they said (outcome_groups.py),
host names compacted into ranges (hostlist.py), the result fitted to a budget
(view.py), and the row filter (row_filter.py). agent.core.fanout_run runs it.
"""
