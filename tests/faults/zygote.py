"""Import acqkit once, then fork one child per job: each child is a new process running the CLI.

On a loaded 2-core machine importing torch and transformers takes longer than
a tiny comparison, and the kill-resume tests start a dozen processes. A forked
child shares nothing with the one killed before it (each starts from this
freshly imported state and builds its own plugin registry, so the fault
plugin reads its own environment); the fresh-process determinism test uses
plain subprocesses instead.

Protocol (JSON lines): stdin {"args": [...], "env": {...}, "log": path};
stdout {"pid": n} when the child starts, then {"code": exit code, -9 for SIGKILL}.
"""
import json
import os
import sys

import acqkit.cli  # noqa: F401  (the expensive imports, once)
import acqkit.compare  # noqa: F401
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401


def child(job: dict) -> None:
    os.environ.update(job["env"])
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 0
    try:
        acqkit.cli.cli.main(job["args"], prog_name="acqkit", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        child(job)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
