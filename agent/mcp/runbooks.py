"""Runbooks: a few investigations that chain catalog commands, offered as MCP prompts and as
starters on the chat page.

A runbook is data (the steps and why each one helps); `render` writes it for one caller,
leaving out the commands the policy does not let them run, so the model is never told to
call a command that would be refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    command: str
    why: str
    arguments: str = ""  # how to fill the parameters, in words


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    description: str
    goal: str  # may use {host} and {unit}
    steps: tuple[Step, ...]
    needs_unit: bool = False


RUNBOOKS: tuple[Runbook, ...] = (
    Runbook(
        name="disk_filling_up",
        title="Disk is filling up",
        description="Find the filesystem that is filling up, what takes the space, and what "
                    "could be freed.",
        goal="A filesystem on {host} is filling up. Find which one, what is taking the space "
             "and what could safely be freed.",
        steps=(
            Step("disk_usage", "see which filesystem is nearly full (Use%, Avail)"),
            Step("largest_files", "list the largest files under the full filesystem",
                 "path = its mount point"),
            Step("disk_usage_path", "size the usual suspects one by one",
                 "path = /var/log, /var/lib/docker, /home, /tmp"),
            Step("docker_images", "when Docker runs there, images and layers take room"),
        ),
    ),
    Runbook(
        name="service_failing",
        title="A service is failing",
        description="Find out why a systemd service fails: its state, its recent logs, and "
                    "whether the host itself is short of something.",
        goal="The service {unit} on {host} is failing. Find out why.",
        needs_unit=True,
        steps=(
            Step("service_status", "its state, exit code and last log lines", "unit = {unit}"),
            Step("service_logs", "the recent log, errors first",
                 "unit = {unit}, lines = 200 (then priority = err)"),
            Step("failed_services", "whether other units fail too (a shared cause)"),
            Step("disk_usage", "a full disk is a common cause"),
            Step("memory_usage", "so is memory (look for the OOM killer in the logs)"),
            Step("listening_ports", "whether its port is taken or not listening"),
        ),
    ),
    Runbook(
        name="host_health_check",
        title="Health check of a host",
        description="A quick, read-only health check: load, disk, memory, failed services, "
                    "busy processes and open ports.",
        goal="Give a short health report of {host}: what is fine and what needs attention.",
        steps=(
            Step("uptime", "load averages and whether it rebooted recently"),
            Step("disk_usage", "filesystems close to full"),
            Step("memory_usage", "memory and swap pressure"),
            Step("failed_services", "units in a failed state"),
            Step("top_processes", "what uses the CPU"),
            Step("listening_ports", "what listens, and whether something unexpected does"),
        ),
    ),
)

BY_NAME = {r.name: r for r in RUNBOOKS}


def offered(visible: set[str]) -> list[Runbook]:
    """The runbooks worth offering someone who may run `visible`: one step at least."""
    return [r for r in RUNBOOKS if any(s.command in visible for s in r.steps)]


def render(runbook: Runbook, *, host: str, unit: str = "",
           may_run: Callable[[str], bool] = lambda _: True) -> str:
    """The runbook as a request to the assistant, with only the steps this caller may run."""
    fill = {"host": host, "unit": unit or "(the failing unit)"}
    lines = [runbook.goal.format(**fill), "", "Work through these catalog commands in order, "
             f"on host {host}, and stop early once the cause is clear:"]
    skipped: list[str] = []
    for number, step in enumerate((s for s in runbook.steps if may_run(s.command)), 1):
        how = f" ({step.arguments.format(**fill)})" if step.arguments else ""
        lines.append(f"{number}. {step.command}{how}: {step.why}.")
    skipped = [s.command for s in runbook.steps if not may_run(s.command)]
    if skipped:
        lines.append(f"(Not available to you, so skipped: {', '.join(skipped)}.)")
    lines += ["", "Quote the numbers you rely on. Do not run destructive commands; if a fix "
              "needs one, say which and why, and let the person decide."]
    return "\n".join(lines)
