#!/usr/bin/env python3
"""test_cluster with its nodes in a network namespace of their own: rank 0 in this one,
ranks 1 and 2 in another, joined by a veth pair (addresses inside the sandbox only), so
every frame between rank 0 and a node crosses a network interface, not loopback or shared
memory. Skipped (exit 77) where namespaces cannot be made (not root, no iproute2).

usage: netns.py MPIEXEC PROGRAM [ARGS...]
"""
import os
import shutil
import subprocess
import sys

mpiexec, program, *args = sys.argv[1:]
NS, V0, V1 = "coray_test_ns", "coray_tv0", "coray_tv1"
SUBNET, ADDR0, ADDR1 = "10.213.77.0/24", "10.213.77.1/24", "10.213.77.2/24"


def ip(*a, check=True):
    return subprocess.run(["ip", *a], capture_output=True, text=True, check=check)


def cleanup():
    ip("link", "del", V0, check=False)  # takes its peer with it
    ip("netns", "del", NS, check=False)


if os.geteuid() != 0 or not shutil.which("ip"):
    print("skipped: network namespaces need root and iproute2's ip")
    sys.exit(77)
cleanup()  # what an interrupted run may have left
try:
    try:
        ip("netns", "add", NS)
        ip("link", "add", V0, "type", "veth", "peer", "name", V1)
        ip("link", "set", V1, "netns", NS)
        ip("addr", "add", ADDR0, "dev", V0)
        ip("link", "set", V0, "up")
        ip("netns", "exec", NS, "ip", "addr", "add", ADDR1, "dev", V1)
        ip("netns", "exec", NS, "ip", "link", "set", V1, "up")
        ip("netns", "exec", NS, "ip", "link", "set", "lo", "up")
    except subprocess.CalledProcessError as e:
        print(f"skipped: cannot make the namespaces here: {e.stderr.strip()}")
        sys.exit(77)
    # MPI's TCP transport and its runtime's messages on the veth pair only; PMIx, which a
    # rank reaches over TCP, accepts connections from the other namespace.
    env = dict(os.environ, PMIX_MCA_ptl_tcp_remote_connections="1",
               PMIX_MCA_ptl_tcp_if_include=SUBNET)
    mca = ["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", SUBNET,
           "--mca", "oob_tcp_if_include", SUBNET]
    cmd = [mpiexec, *mca, "-np", "1", program, *args, ":",
           "-np", "2", "ip", "netns", "exec", NS, program, *args]
    try:
        job = subprocess.run(cmd, env=env, timeout=150)
    except subprocess.TimeoutExpired:
        print("FAIL: the job still ran after 150 s")
        sys.exit(1)
    sys.exit(job.returncode)
finally:
    cleanup()
