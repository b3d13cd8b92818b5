"""The fork server: one per parent process, forks one sandboxed child per session.

Started by the parent as `python -I -S -B wr_forkserver.py <control fd> <sys.path JSON>` with an
empty environment and cwd "/". It imports everything user code may need, then waits on its
control socket (AF_UNIX SOCK_SEQPACKET). It never sees code, secrets or requests: for each
`fork` message it receives the child's end of a socketpair (SCM_RIGHTS), forks, and answers with
the child's pid and a pidfd (so the parent can SIGKILL exactly that process, never a reused pid).

The child isolates itself BEFORE it reads anything from its channel (see `lockdown`), then hands
over to `wr_child.serve`.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import fcntl
import gc
import importlib
import json
import os
import signal
import socket
import sys
from typing import Any

LAYERS = ("namespaces", "rlimits", "unprivileged_uid", "no_new_privs", "landlock", "seccomp")
NOBODY = 65534
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PROT_EXEC = 0x4
# A backstop over the child's whole life; each call is bounded by the CPU timer and the parent.
LIFETIME_CPU_SECONDS = 600
MAX_FDS = 16
STACK_BYTES = 8 * 2**20  # a C-level recursion bomb ends in a crash of the child, early

# Syscalls a sandboxed child may make after lockdown; everything else fails with EPERM. No file
# opening (open/openat/stat), no sockets, no process creation or exec, no signals to others, no
# sleeping or waiting (nanosleep, poll, select), no namespaces, ptrace, bpf, io_uring, keyrings.
ALLOWED_SYSCALLS = (
    "read",
    "write",
    "readv",
    "writev",
    "close",
    "munmap",
    "mremap",
    "brk",
    "madvise",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "setitimer",
    "getitimer",
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "getrusage",
    "times",
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "exit",
    "exit_group",
    "futex",
    "getrandom",
    "sched_yield",
    "restart_syscall",
)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]


def _capabilities_drop() -> None:
    """Empty this process's effective, permitted and inheritable capability sets (capset(2),
    version 3: two 32-bit words each). Nothing can raise them again without an exec."""
    header = _CapHeader(0x20080522, 0)
    _check(_libc.capset(ctypes.byref(header), (_CapData * 2)()), "capset")


def _capabilities() -> tuple[int, int]:
    """(effective, permitted) capability sets, from /proc/self/status."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith("Cap"))
    return int(fields["CapEff"], 16), int(fields["CapPrm"], 16)


def build_seccomp() -> Any:
    """The filter, compiled once here; each child loads its copy-on-write copy."""
    import seccompy
    from seccompy import Action, ArgCmp, CmpOp, Filter

    flt = Filter(default=int(Action.ERRNO) | errno.EPERM)
    for name in ALLOWED_SYSCALLS:
        flt.allow(name)
    # Memory may be mapped or re-protected, but never executable: no injected native code.
    no_exec = [ArgCmp(2, CmpOp.MASKED_EQ, 0, mask=PROT_EXEC)]
    flt.allow("mmap", args=no_exec)
    flt.allow("mprotect", args=no_exec)
    # A child may lower its own priority (wr_child demotes a spinning call), never another's:
    # every child runs as the same user, and renicing a neighbour would slow another tenant.
    flt.allow("setpriority", args=[ArgCmp(0, CmpOp.EQ, 0), ArgCmp(1, CmpOp.EQ, 0)])
    # The same for the scheduling policy: itself (pid 0), and only ever down to SCHED_IDLE.
    flt.allow(
        "sched_setscheduler", args=[ArgCmp(0, CmpOp.EQ, 0), ArgCmp(1, CmpOp.EQ, os.SCHED_IDLE)]
    )
    if not seccompy.supported():
        raise OSError("seccomp is not supported by this kernel")
    flt.program  # noqa: B018 - compile now, not in every child
    return flt


def _vm_bytes() -> int:
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        pages = int(os.read(fd, 256).split()[0])
    finally:
        os.close(fd)
    return pages * os.sysconf("SC_PAGE_SIZE")


def build_landlock() -> int:
    """A Landlock ruleset handling every right this kernel knows, with no rule granting any back:
    no file may be opened, listed, written, executed or created; no TCP bind or connect; no
    signals or abstract UNIX sockets outside the domain. Built once; each child enforces it."""
    import landlockpy
    from landlockpy import _syscall

    abi = landlockpy.abi_version()
    if abi < 1:
        raise OSError("Landlock is not supported or not enabled in this kernel")
    attr = _syscall.RulesetAttr(
        handled_access_fs=int(landlockpy.fs_for_abi(abi)),
        handled_access_net=int(landlockpy.net_for_abi(abi)),
        scoped=int(landlockpy.scope_for_abi(abi)),
    )
    return _syscall.create_ruleset(attr)


def lockdown(
    params: dict[str, Any], seccomp_filter: Any, ruleset_fd: int, server_pid: int
) -> tuple[dict[str, bool], dict[str, str]]:
    """Apply every isolation layer to this (child) process. Irreversible; order matters."""
    import resource

    disabled = set(params.get("disable") or ())  # tests only: simulate a missing layer
    layers: dict[str, bool] = {}
    errors: dict[str, str] = {}

    def apply(name: str, fn: Any) -> None:
        if name in disabled:
            layers[name] = False
            errors[name] = "disabled"
            return
        try:
            fn()
        except Exception as error:
            layers[name] = False
            errors[name] = f"{type(error).__name__}: {error}"
        else:
            layers[name] = True

    root = os.geteuid() == 0

    def namespaces() -> None:
        # No network (a fresh net namespace has only a down loopback) and no System V IPC shared
        # with the host. Without root, a user namespace makes this possible unprivileged.
        flags = CLONE_NEWNET | CLONE_NEWIPC
        _check(_libc.unshare(flags if root else flags | CLONE_NEWUSER), "unshare")

    def rlimits() -> None:
        memory = _vm_bytes() + int(params["memory_bytes"])
        for limit, value in (
            (resource.RLIMIT_AS, memory),
            (resource.RLIMIT_CPU, LIFETIME_CPU_SECONDS),
            (resource.RLIMIT_STACK, STACK_BYTES),
            (resource.RLIMIT_FSIZE, 0),
            (resource.RLIMIT_NOFILE, MAX_FDS),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_NPROC, 0),
            (resource.RLIMIT_MEMLOCK, 0),
            (resource.RLIMIT_MSGQUEUE, 0),
        ):
            resource.setrlimit(limit, (value, value))

    def unprivileged_uid() -> None:
        if root:  # leaving uid 0 clears every capability
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
        else:  # the user namespace gave this process every capability inside it: drop them
            _capabilities_drop()
        if os.getuid() == 0 or os.geteuid() == 0:
            raise OSError("still running as root")
        if _capabilities() != (0, 0):
            raise OSError("capabilities left")
        try:
            os.setuid(0)
        except OSError:  # EPERM; EINVAL in a user namespace that maps no root
            return
        raise OSError("could regain root")

    def no_new_privs() -> None:
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        if _libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
            raise OSError("no_new_privs did not stick")

    def landlock() -> None:
        from landlockpy import _syscall

        if ruleset_fd < 0:
            raise OSError(landlock_error or "Landlock is not available")
        _syscall.restrict_self(ruleset_fd, 0)
        os.close(ruleset_fd)

    def seccomp() -> None:
        if seccomp_filter is None:
            raise OSError("seccomp is not available")
        seccomp_filter.load()

    apply("namespaces", namespaces)
    apply("rlimits", rlimits)
    apply("unprivileged_uid", unprivileged_uid)
    # Die with the fork server (set after the uid change, which clears it), and make this process
    # non-dumpable so that no other process of the same uid can ptrace it or read its memory.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != server_pid:
        os._exit(1)
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    apply("no_new_privs", no_new_privs)
    apply("landlock", landlock)
    apply("seccomp", seccomp)
    return layers, errors


landlock_error = ""


def child_main(
    channel_fd: int,
    params: dict[str, Any],
    devnull: int,
    seccomp_filter: Any,
    ruleset_fd: int,
    server_pid: int,
) -> None:
    """Runs in the forked child; never returns to the fork server's loop."""
    code = 70
    try:
        # The channel becomes fd 3 and the Landlock ruleset fd 4; everything else is closed.
        channel = fcntl.fcntl(channel_fd, fcntl.F_DUPFD_CLOEXEC, 10)
        ruleset = fcntl.fcntl(ruleset_fd, fcntl.F_DUPFD_CLOEXEC, 10) if ruleset_fd >= 0 else -1
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.dup2(channel, 3, inheritable=False)
        if ruleset >= 0:
            os.dup2(ruleset, 4, inheritable=False)
        os.closerange(5 if ruleset >= 0 else 4, 1 << 20)  # close_range(2)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        nice = params.get("nice")
        if type(nice) is int and nice > 0:
            # Before the lockdown (seccomp may refuse it later); lowering it back needs a
            # privilege the child no longer has.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + nice)
        layers, errors = lockdown(params, seccomp_filter, 4 if ruleset >= 0 else -1, server_pid)
        missing = [name for name in LAYERS if not layers.get(name)]
        hello = {"layers": layers, "errors": errors, "missing": missing, "pid": os.getpid()}
        child = importlib.import_module("wr_child")
        child.serve(hello, proceed=not missing or bool(params.get("weak")))
        code = 0
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _probe(devnull: int, seccomp_filter: Any, ruleset_fd: int, server_pid: int) -> dict[str, Any]:
    """Fork one child that applies every layer and reports which ones held."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            layers, errors = lockdown(
                {"memory_bytes": 64 * 2**20}, seccomp_filter, ruleset_fd, server_pid
            )
            os.write(write_end, json.dumps({"layers": layers, "errors": errors}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    try:
        report: dict[str, Any] = json.loads(data)
    except ValueError:
        report = {
            "layers": dict.fromkeys(LAYERS, False),
            "errors": {"probe": "the probe child died"},
        }
    return report


def _preload() -> dict[str, str]:
    import codecs
    import hashlib
    import hmac

    child = importlib.import_module("wr_child")
    failed: dict[str, str] = {}
    for name in (*child.PRELOAD, "webreducer", "resource", "landlockpy", "seccompy"):
        try:
            importlib.import_module(name)
        except Exception as error:
            failed[name] = f"{type(error).__name__}: {error}"
    # Both isolation bindings locate libc lazily (ctypes.util.find_library runs ldconfig): do it
    # here, where files and processes are still allowed.
    import landlockpy
    import seccompy

    landlockpy.abi_version()
    seccompy.supported()
    for codec in child.CODECS:
        codecs.lookup(codec)
    # OpenSSL loads its providers and configuration lazily, on the first digest: do it now.
    for algorithm in (
        "md5",
        "sha1",
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "sha3_256",
        "blake2b",
        "blake2s",
    ):
        hashlib.new(algorithm, b"x").hexdigest()
    hmac.new(b"k", b"m", "sha256").hexdigest()
    hmac.compare_digest(b"a", b"a")
    json.loads(json.dumps({"warm": [1, 2.5, "x", None, True]}))
    return failed


def main() -> None:
    # Ctrl-C in a terminal signals the whole process group: the server that started this one
    # decides when it stops (it closes the control socket), so no KeyboardInterrupt here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control_fd = int(sys.argv[1])
    sys.path[:0] = json.loads(sys.argv[2])
    os.chdir("/")
    os.environ.clear()  # started with an empty environment; Python's locale coercion adds LC_CTYPE
    server_pid = os.getpid()
    failed = _preload()
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        seccomp_filter = build_seccomp()
    except Exception as error:
        seccomp_filter = None
        failed["seccomp"] = f"{type(error).__name__}: {error}"
    global landlock_error
    try:
        ruleset_fd = build_landlock()
    except Exception as error:
        ruleset_fd = -1
        landlock_error = f"{type(error).__name__}: {error}"
    control = socket.socket(fileno=control_fd)
    report = _probe(devnull, seccomp_filter, ruleset_fd, server_pid)
    # Every object so far is shared copy-on-write with the children: keep the garbage collector
    # from touching (and so copying) them in each child.
    gc.collect()
    gc.freeze()
    control.send(
        json.dumps({"t": "ready", "pid": server_pid, "preload_errors": failed, **report}).encode()
    )
    control.settimeout(1.0)  # wake up now and then to reap finished children
    children: set[int] = set()
    fds = array.array("i")
    while True:
        _reap(children)
        try:
            message, ancillary, _flags, _addr = control.recvmsg(
                65536, socket.CMSG_SPACE(fds.itemsize)
            )
        except TimeoutError:
            continue
        except OSError:
            message = b""
        if not message:
            break  # the parent has gone: take every child with us
        received = [
            fd
            for level, kind, data in ancillary
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
            for fd in array.array("i", data[: len(data) - len(data) % fds.itemsize])
        ]
        try:
            params = json.loads(message)
            if len(received) != 1:
                raise ValueError("expected exactly one channel fd")
            pid = os.fork()
            if pid == 0:
                child_main(received[0], params, devnull, seccomp_filter, ruleset_fd, server_pid)
            children.add(pid)
            # The pidfd is opened before this loop can reap the child, so it names this process.
            pidfd = os.pidfd_open(pid)
            try:
                control.sendmsg(
                    [json.dumps({"t": "forked", "pid": pid}).encode()],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pidfd]))],
                )
            finally:
                os.close(pidfd)
        except Exception as error:
            try:
                control.send(
                    json.dumps(
                        {"t": "error", "message": f"{type(error).__name__}: {error}"}
                    ).encode()
                )
            except OSError:
                break
        finally:
            for fd in received:
                os.close(fd)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap(children)


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)


if __name__ == "__main__":
    main()
