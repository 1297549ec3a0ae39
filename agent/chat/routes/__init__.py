"""The chat's HTTP endpoints, one module per thing served: the conversation
(conversation.py), the command palette (palette.py), the hosts panel (hosts.py),
approvals (approvals.py), shared turns (shares.py), a call's replay (replay.py)
and runbook starters (starters.py). agent.chat.chat_routes lists them.
"""
