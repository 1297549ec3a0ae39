"""Who is calling and what they may do: the caller's identity (identity.py), the
grants it carries (grants.py), and the policy that decides every call (policy.py).
Below the core, the audit log and the output store, which all need to know the
caller; it imports nothing of the agent but the shared errors.
"""
