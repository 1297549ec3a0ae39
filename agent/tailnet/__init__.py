"""The agent as a tailnet node: its own userspace tailscaled, configured from the
settings (node.py), and the hosts the netmap brings (fleet.py: the inventory's
`tailnet:` selectors applied to the peers).
"""
