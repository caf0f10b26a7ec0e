"""The two small programs the sandbox runs: the launcher and the child's prelude.

They are source text, not imported code: the launcher runs under `python -I -S`
before privileges are dropped, the prelude runs in the interpreter that executes
the untrusted code. Both use only the standard library.
"""

from __future__ import annotations

LAUNCHER = r"""
import ctypes, json, os, resource, sys

cfg = json.loads(sys.argv[1])
report = {"network": "none", "filesystem": "workdir", "notes": []}
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_REC, MS_PRIVATE, MS_BIND = 16384, 1 << 18, 4096
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


def fail(msg):
    sys.stderr.write("sandbox launcher: " + msg + "\n")
    os._exit(125)


namespaces = False
if not cfg["namespaces"]:
    report["notes"].append("namespaces turned off: network blocked by an audit hook only")
elif libc.unshare(CLONE_NEWNET | CLONE_NEWNS) == 0:
    namespaces = True
elif os.geteuid() != 0 and libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS) == 0:
    namespaces = True
    report["notes"].append("namespaces from an unprivileged user namespace")
else:
    report["notes"].append(
        "no new namespaces (errno %d): network blocked by an audit hook only" % ctypes.get_errno()
    )
if namespaces:
    report["network"] = "netns"
    workdir = cfg["workdir"]
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        report["notes"].append("mount propagation not changed: kept shared /tmp")
    else:
        size = ("size=%d,mode=1777" % max(cfg["limits"]["file_bytes"], 1 << 20)).encode()
        keep = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
        covered = []
        for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
            if not os.path.isdir(d) or os.path.islink(d):
                continue
            if libc.mount(b"tmpfs", d.encode(), b"tmpfs", 0, size) != 0:
                report["notes"].append("could not mount a private %s" % d)
                continue
            covered.append(d)
            if workdir.startswith(d + "/"):
                # The working dir lived under a dir now covered: bind it back at its path.
                os.makedirs(workdir, exist_ok=True)
                src = ("/proc/self/fd/%d" % keep).encode()
                if libc.mount(src, workdir.encode(), None, MS_BIND, None) != 0:
                    fail("cannot bind the working directory back (errno %d)" % ctypes.get_errno())
        os.chdir(workdir)
        os.close(keep)
        report["filesystem"] = "private-tmp"
        report["notes"].append("private tmpfs over " + ", ".join(covered))

lim = cfg["limits"]
for res, value in (
    (resource.RLIMIT_CPU, lim["cpu_seconds"]),
    (resource.RLIMIT_AS, lim["memory_bytes"]),
    (resource.RLIMIT_FSIZE, lim["file_bytes"]),
    (resource.RLIMIT_NPROC, cfg["nproc"]),
    (resource.RLIMIT_CORE, 0),
    (resource.RLIMIT_NOFILE, 256),
):
    hard = value + 1 if res == resource.RLIMIT_CPU else value
    resource.setrlimit(res, (value, hard))

if cfg["uid"] is not None:
    os.setgroups([])
    os.setgid(cfg["uid"])
    os.setuid(cfg["uid"])
    if os.getuid() == 0 or os.geteuid() == 0:
        fail("could not drop root")
libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
# Set after setuid: a change of credentials clears the parent-death signal.
libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
if os.getppid() == 1:
    os._exit(125)

if not namespaces:
    report["network"] = "audit-hook"
fd = cfg["report_fd"]
os.write(fd, json.dumps(report).encode())
os.close(fd)
env = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": cfg["workdir"],
    "TMPDIR": cfg["workdir"],
    "LANG": "C.UTF-8",
    "HANLIN_SANDBOX_AUDIT": "1" if not namespaces else "0",
}
py = cfg["interpreter"]
# -I ignores PYTHON* variables, so unbuffered output and no bytecode are flags.
os.execve(py, [py, "-I", "-u", "-B", "-c", cfg["prelude"], "main.py"], env)
"""

PRELUDE = r"""
import os, sys

if os.environ.pop("HANLIN_SANDBOX_AUDIT", "0") == "1":
    _blocked = (
        "socket.", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "subprocess.Popen",
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.forkpty", "pty.spawn",
    )

    def _hook(event, args, _blocked=_blocked):
        if event.startswith(_blocked):
            raise PermissionError("sandbox: %s is not allowed here (no network)" % event)

    sys.addaudithook(_hook)
_path = sys.argv[1]
sys.argv = [_path]
with open(_path) as _f:
    _source = _f.read()
del _f
exec(compile(_source, _path, "exec"), {"__name__": "__main__", "__file__": _path})
"""
