"""The sandbox's supervisor and confinement, run as `python -I -S -c RUNNER ARGS...` in the run's temp dir.

It is a string (not a module the child imports) and uses only cheap C-backed modules, so the child
interpreter starts in ~15 ms: importing t2cli or site-packages would add ~40 ms to every run. See
t2cli.sandbox for what it enforces. Its own failures go to the STATUS pipe, which the program never
holds (the child closes it before running the program), so no program can pass for a sandbox failure.
"""

RUNNER = r"""
import ctypes, os, resource, select, sys, time

(UID, STDLIB_BY_MOUNT, TIMEOUT, CPU, MEMORY, FSIZE, NPROC, SETUP_FAILED, TIMED_OUT, STATUS, TMPFS) = (
    int(sys.argv[1]), sys.argv[2] == "1", float(sys.argv[3]), *map(int, sys.argv[4:12]))
CGROUP, DISK, ENTRIES = sys.argv[12], int(sys.argv[13]), int(sys.argv[14])
LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWNET, SIGKILL = 0x00020000, 0x40000000, 9
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38


def check(result, what):
    if result != 0:
        raise OSError(ctypes.get_errno(), what + " failed")


def prctl(option, value):
    check(LIBC.prctl(option, ctypes.c_ulong(value), 0, 0, 0), "prctl(%d)" % option)


def mount(source, target, kind, flags, data=None):
    check(LIBC.mount(source and source.encode(), target.encode(), kind and kind.encode(), ctypes.c_ulong(flags),
                     data and data.encode()), "mount %s" % target)


def private_mounts():
    # A mount namespace of the run's own: fresh tmpfs on /tmp, /var/tmp and /dev/shm, and one at the run's
    # folder holding a copy of the program (all capped in size and entries, gone with the run's last
    # process, never on the host's disk); the stdlib bound read-only.
    check(LIBC.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host's mounts
    here = os.getcwd()
    for target in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(target) and not os.path.islink(target):
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "size=%d,nr_inodes=%d,mode=1777" % (TMPFS, ENTRIES))
    os.makedirs(here, exist_ok=True)
    size = DISK + len(SOURCE.encode())  # the copy of the program does not count
    mount("tmpfs", here, "tmpfs", MS_NOSUID | MS_NODEV,
          "size=%d,nr_inodes=%d,mode=700,uid=%d,gid=%d" % (size, ENTRIES, UID, UID))
    os.chdir(here)
    with open("program.py", "w", encoding="utf-8") as handle:
        handle.write(SOURCE)
    os.chown("program.py", UID, UID)
    if STDLIB_BY_MOUNT:
        # The stdlib sits below a folder other users cannot enter (pyenv under a 0700 /root): bind each
        # of its folders to a path they can reach. `..` from a bind mount's root stays in /tmp, so nothing
        # else in the locked folder becomes reachable.
        for position, entry in enumerate(sys.path):
            if os.path.isdir(entry):
                target = "/tmp/.t2-stdlib-%d" % position
                os.mkdir(target, 0o755)
                mount(entry, target, None, MS_BIND | MS_REC)
                mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
                sys.path[position] = target
        sys.path_importer_cache.clear()


def tasks_of_this_user():
    # RLIMIT_NPROC counts every task (thread) of the real uid, so the allowance is added to these.
    me, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat("/proc/" + name).st_uid == me:
                    count += len(os.listdir("/proc/%s/task" % name))
            except OSError:
                pass
    return count


def deny_network(event, args):
    if event.startswith("socket."):
        raise PermissionError("network access is disabled in the t2 sandbox")


def confine():
    own_network = False
    if CGROUP != "-":  # the whole run's memory, every process of it together
        with open(CGROUP + "/cgroup.procs", "w") as handle:
            handle.write(str(os.getpid()))
    if UID < 0:
        nproc = tasks_of_this_user() + NPROC
    else:
        own_network = LIBC.unshare(CLONE_NEWNET) == 0
        try:
            private_mounts()
        except OSError:
            if STDLIB_BY_MOUNT:  # without a mount namespace the stdlib cannot be reached safely
                raise
        os.setgroups([])
        os.setgid(UID)
        os.setuid(UID)
        nproc = NPROC
    for limit, value in ((resource.RLIMIT_AS, MEMORY), (resource.RLIMIT_FSIZE, FSIZE),
                         (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU, CPU + 1))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_PDEATHSIG, SIGKILL)  # after setuid, which clears it
    if not own_network:
        sys.addaudithook(deny_network)


def kill_everything_of(uid):
    # kill(-1) from a process of that uid reaches exactly that uid's processes, atomically with fork.
    helper = os.fork()
    if helper == 0:
        try:
            os.setuid(uid)
            if os.getuid() == uid and os.geteuid() == uid and uid != 0:
                os.kill(-1, SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def exited_within(child, timeout):
    # Waiting with WNOWAIT keeps the child a zombie, so its process-group id cannot be recycled
    # before the killpg below.
    try:
        pidfd = os.pidfd_open(child)
    except OSError:  # no pidfd_open here: poll
        deadline = time.monotonic() + timeout
        while os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


def supervise(child):
    info = os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT) if exited_within(child, TIMEOUT) else None
    try:
        os.killpg(child, SIGKILL)
    except ProcessLookupError:
        pass
    if UID >= 0:
        kill_everything_of(UID)
    flags = 0 if UID >= 0 else os.WNOHANG  # without root, setsid() escapees may live on
    while True:  # reap the child and every orphan adopted as subreaper
        try:
            if os.waitpid(-1, flags) == (0, 0):
                break
        except ChildProcessError:
            break
    if info is None:
        return TIMED_OUT
    return info.si_status if info.si_code == os.CLD_EXITED else 128 + info.si_status


def fail(stage, error):
    os.write(STATUS, ("%s: %r" % (stage, error)).encode())
    os._exit(SETUP_FAILED)


try:
    with open("program.py", encoding="utf-8") as handle:
        SOURCE = handle.read()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_DUMPABLE, 0)  # a program of the same uid cannot open this process's fds via /proc
    CHILD = os.fork()
except BaseException as error:
    fail("cannot start", error)
if CHILD == 0:
    try:
        os.setpgid(0, 0)
        confine()
        CODE = compile(SOURCE, "program.py", "exec")
    except SyntaxError:
        os.close(STATUS)
        raise
    except BaseException as error:
        fail("setup failed", error)
    os.close(STATUS)
    sys.argv = ["program.py"]
    exec(CODE, {"__name__": "__main__", "__file__": "program.py", "__builtins__": __builtins__})
    sys.exit(0)
os.close(STATUS)
try:
    os.setpgid(CHILD, CHILD)
except OSError:
    pass  # the child already did it, or is already gone
os._exit(supervise(CHILD))
"""
