"""The two small programs the sandbox runs: the launcher and the child's prelude.

They are source text, not imported code: the launcher runs under `python -I -S`
before privileges are dropped, the prelude runs in the interpreter that executes
the untrusted code. Both use only the standard library.
"""

from __future__ import annotations

LAUNCHER = r"""
import ctypes, json, os, resource, signal, sys

cfg = json.loads(sys.argv[1])
report = {"network": "none", "filesystem": "workdir", "pid_namespace": False, "notes": []}
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


def fail(msg):
    sys.stderr.write("sandbox launcher: " + msg + "\n")
    os._exit(125)


def map_own_ids():
    # Map our own ids to themselves: files keep their owner, and the capabilities the new
    # namespace grants are dropped again when the non-root interpreter is exec'd.
    uid, gid = os.getuid(), os.getgid()
    for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)),
                       ("gid_map", "%d %d 1" % (gid, gid))):
        with open("/proc/self/" + name, "w") as f:
            f.write(text)


namespaces = False
base = CLONE_NEWNET | CLONE_NEWNS
if not cfg["namespaces"]:
    report["notes"].append("namespaces turned off: network blocked by an audit hook only")
else:
    attempts = [base | CLONE_NEWPID, base]
    if os.geteuid() != 0:
        attempts = [CLONE_NEWUSER | a for a in attempts]
    for flags in attempts:
        if libc.unshare(flags) == 0:
            namespaces = True
            report["pid_namespace"] = bool(flags & CLONE_NEWPID)
            if flags & CLONE_NEWUSER:
                map_own_ids()
                report["notes"].append("namespaces from an unprivileged user namespace")
            break
    else:
        report["notes"].append(
            "no new namespaces (errno %d): network blocked by an audit hook only"
            % ctypes.get_errno()
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


def run_code(expected_parent):
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
        if os.getuid() == 0 or os.geteuid() == 0:
            fail("could not drop root")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # Set after setuid: a change of credentials clears the parent-death signal.
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if os.getppid() != expected_parent:  # the parent died before PDEATHSIG was armed
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


if not report["pid_namespace"]:
    run_code(cfg["parent_pid"])

# With a PID namespace: a tiny init (pid 1) runs the code as pid 2. When init exits the
# kernel kills everything left in the namespace, so no forked process outlives the run.
# The code is not pid 1 itself because pid 1 ignores signals it has no handler for,
# which would disarm the CPU limit's SIGXCPU.
status_r, status_w = os.pipe()
init = 0


def stop(signum, frame):
    # The agent asks us to stop (wall clock): kill init, and so the namespace, and reap it
    # here, so that no zombie is left for whatever pid 1 the agent's container has.
    if init:
        os.kill(init, signal.SIGKILL)
        os.waitpid(init, 0)
    os._exit(137)


signal.signal(signal.SIGTERM, stop)
init = os.fork()
if init == 0:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.close(status_r)
    # getppid() is 0 across the namespace border, so there is no race check here; the
    # agent kills the whole process group anyway.
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) == 0:
        report["notes"].append("private /proc: only the sandbox's processes are visible")
    code = os.fork()
    if code == 0:
        os.close(status_w)
        run_code(1)
    os.close(cfg["report_fd"])
    _, status = os.waitpid(code, 0)
    os.write(status_w, str(status).encode())
    os._exit(0)
os.close(status_w)
os.close(cfg["report_fd"])
data = os.read(status_r, 64)
os.waitpid(init, 0)
if not data:
    fail("the sandbox init process died")
status = int(data)
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 125)
"""

PRELUDE = r"""
import os, sys

if os.environ.pop("HANLIN_SANDBOX_AUDIT", "0") == "1":
    _blocked = (
        "socket.", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "subprocess.Popen",
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "pty.spawn",
    )

    # Without a PID namespace a forked child could outlive the run; without a network
    # namespace an exec'd program would not carry this hook. So neither is allowed.
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
