#!/usr/bin/env python3
"""A cluster node killed with SIGKILL: the job ends, says which rank died, and leaves no
process of the program behind (no driver, node agent, supervisor or worker, and so no
shared memory: coray's segments are memfds, gone with the last process holding them).

usage: node_loss.py MPIEXEC NUMPROC_FLAG PROGRAM
"""
import os
import subprocess
import sys
import time

mpiexec, numproc_flag, program = sys.argv[1:4]
program = os.path.realpath(program)


def survivors():
    """Processes running `program`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{pid}/exe") == program:
                found.append(int(pid))
        except OSError:
            pass
    return found


def fail(why, output=""):
    print(f"FAIL: {why}\n--- output ---\n{output}", file=sys.stderr)
    for pid in survivors():
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    sys.exit(1)


start = time.monotonic()
try:
    job = subprocess.run([mpiexec, numproc_flag, "3", program], capture_output=True, text=True,
                         timeout=60)
except subprocess.TimeoutExpired as e:
    fail("the job still ran 60 s after it started: a call hangs",
         (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""))
output = job.stdout + job.stderr
print(f"the job ended in {time.monotonic() - start:.1f} s with status {job.returncode}")
if "node_loss: killing rank 2" not in output:
    fail("the program did not reach the kill", output)
if job.returncode == 0:
    fail("the job ended with status 0 although a node died", output)
if "rank 2" not in output:
    fail("nothing in the output names rank 2, the node that died", output)

# Every process of the job goes: polled for up to 15 s (the supervisors notice their
# driver's death and end their workers).
deadline = time.monotonic() + 15
while survivors() and time.monotonic() < deadline:
    time.sleep(0.1)
left = survivors()
if left:
    fail(f"processes of the program still run after the job ended: {left}", output)
print("no process of the program is left")
