"""The hosts the agent runs commands on: their configuration (inventory.py: REMOTE_*
variables, the inventory file, its `tailnet:` selectors), the live registry of
every host with its presence and what a caller is shown of each (registry.py), and
a fleet a page at a time (query.py). Nothing here opens a connection (agent.ssh
does) or reads the netmap (agent.tailnet.node does).
"""
