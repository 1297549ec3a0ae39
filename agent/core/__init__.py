"""The agent's core: who is calling, what they may do, what is recorded, and the one
service every front end goes through. Imports neither Starlette nor asyncssh.

Modules are imported directly (`from agent.core.service import AgentService`);
this package re-exports nothing, so importing one leaf never loads the rest.
"""
