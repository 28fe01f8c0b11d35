"""A real single-host Slurm cluster for tests: munged on its own socket and key, slurmctld and
two slurmd (nodes ``n1``, ``n2`` on this host), each node with one GPU declared as GRES.

GPUs are declared with ``File=`` pointing at character devices made in the temp dir (``mknod``,
the numbers of ``/dev/null``): Slurm 22.05 drops file-less GPUs from a node's GRES, and a plain
file is refused; with ``task/none`` nothing opens the device, so the scheduling path (counting,
``--gres=gpu:N``, ``CUDA_VISIBLE_DEVICES``) is Slurm's own.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers.jobs import free_port

DAEMONS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch")
NODES = ("n1", "n2")


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    gone = [d for d in DAEMONS if not (shutil.which(d) or Path("/usr/sbin", d).exists())]
    if gone:
        return f"Slurm/munge binaries missing ({', '.join(gone)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs"
    return None


def _bin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


CONF = """ClusterName=csntest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge.sock
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool/%n
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.%n.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
KillWait=5
InactiveLimit=0
{nodes}
PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """Start with :meth:`start`, stop with :meth:`stop`; :attr:`env` points clients at it."""

    def __init__(self, root: Path):
        self.dir = root
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ, SLURM_CONF=str(root / "slurm.conf"))

    def _write_conf(self) -> None:
        d = self.dir
        for sub in ("state", "dev", *(f"spool/{n}" for n in NODES)):
            (d / sub).mkdir(parents=True, exist_ok=True)
        host = socket.gethostname().split(".")[0]
        nodes = "\n".join(f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={free_port()} "
                          f"CPUs=2 RealMemory=1000 Gres=gpu:1 State=UNKNOWN" for n in NODES)
        (d / "slurm.conf").write_text(CONF.format(host=host, ctld_port=free_port(), d_port=free_port(),
                                                  dir=d, nodes=nodes, names=",".join(NODES)))
        gres = ["AutoDetect=off"]
        for n in NODES:
            dev = d / "dev" / f"{n}gpu0"
            if not dev.exists():
                os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))   # a character device
            gres.append(f"NodeName={n} Name=gpu File={dev}")
        (d / "gres.conf").write_text("\n".join(gres) + "\n")

    def _spawn(self, argv: list[str], log: str) -> None:
        f = (self.dir / log).open("ab")
        self.procs.append(subprocess.Popen(argv, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def start(self, timeout: float = 60) -> "Cluster":
        self._write_conf()
        d = self.dir
        key = d / "munge.key"
        if not key.exists():
            subprocess.run([_bin("mungekey"), "-c", "-k", str(key)], check=True, capture_output=True)
            key.chmod(0o400)
        self._spawn([_bin("munged"), "-F", "-f", f"--key-file={key}", f"--socket={d}/munge.sock",
                     f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log",
                     f"--seed-file={d}/munged.seed"], "munged.out")
        self._wait(lambda: (d / "munge.sock").exists(), 20, "munged")
        self._spawn([_bin("slurmctld"), "-D", "-i"], "slurmctld.out")
        self._wait(lambda: self.run("sinfo", "-h", check=False).returncode == 0, timeout, "slurmctld")
        for n in NODES:
            self._spawn([_bin("slurmd"), "-D", "-N", n], f"slurmd.{n}.out")
        self._wait(lambda: self.run("sinfo", "-h", "-o", "%t", check=False).stdout.split() == ["idle"],
                   timeout, "both nodes idle")
        return self

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.dir.glob("*.log")))

    def _wait(self, pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError(f"Slurm test cluster: {what} did not come up\n{self.logs()}")
            time.sleep(0.3)

    def _stepds(self) -> list[int]:
        """Job step daemons of this cluster (they outlive a stopped slurmd)."""
        conf, found = f"SLURM_CONF={self.env['SLURM_CONF']}".encode(), []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "slurmstepd" and \
                        conf in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    found.append(int(pid))
            except OSError:
                continue
        return found

    def stop(self) -> None:
        if self.procs:
            self.run("scancel", f"--user={os.getuid()}", check=False)
            deadline = time.monotonic() + 20
            while self._stepds() and time.monotonic() < deadline:
                time.sleep(0.3)
        for pid in self._stepds():
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()
