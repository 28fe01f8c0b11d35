"""A Slurm job's state as the worker needs it: ``scontrol show job`` while Slurm remembers the
job (``MinJobAge``), then ``sacct`` (clusters with accounting)."""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

ENDED = {"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED", "GONE"}


@dataclass(frozen=True)
class Job:
    job_id: str
    state: str              # Slurm's JobState ("PENDING", "RUNNING", "TIMEOUT", ...); "" unknown
    reason: str = ""        # why it is pending / why it ended ("Resources", "Priority", ...)
    nodes: str | None = None
    exit_code: int = 0
    signal: int = 0
    restarts: int = 0

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def _field(text: str, key: str) -> str:
    m = re.search(rf"(?:^|\s){key}=(\S*)", text)
    return m.group(1) if m else ""


def _exit(code: str) -> tuple[int, int]:
    rc, _, sig = code.partition(":")
    return (int(rc) if rc.isdigit() else 0), (int(sig) if sig.isdigit() else 0)


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(argv, 1, "", str(e))


def job_state(job_id: str) -> Job:
    """The job's state; ``state == ""`` when Slurm did not answer (try again later), ``GONE``
    when neither ``scontrol`` nor ``sacct`` knows the job."""
    p = _run(["scontrol", "show", "job", "-o", job_id])
    if p.returncode == 0 and "JobState=" in p.stdout:
        t = p.stdout
        nodes = _field(t, "NodeList")
        rc, sig = _exit(_field(t, "ExitCode"))
        return Job(job_id, _field(t, "JobState"), _field(t, "Reason"),
                   nodes if nodes and nodes != "(null)" else None, rc, sig,
                   int(_field(t, "Restarts") or 0))
    if "Invalid job id" not in p.stderr:
        return Job(job_id, "")
    return _from_sacct(job_id)


def _from_sacct(job_id: str) -> Job:
    p = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode,Reason,NodeList"])
    rows = [line.split("|") for line in p.stdout.splitlines() if line.count("|") == 3]
    if p.returncode != 0 or not rows:
        return Job(job_id, "GONE", "Slurm no longer knows the job and sacct has no record of it")
    state, code, reason, nodes = rows[-1]
    rc, sig = _exit(code)
    return Job(job_id, state.split()[0] if state else "", reason, nodes or None, rc, sig)
