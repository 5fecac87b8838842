#!/usr/bin/env python3
"""Runs the interop scripts' commands in one long-lived Python (test/helpers/interop.ts starts it).

Importing torch, transformers and peft costs seconds per process, more than most commands take, so
the Python interop tests (`npm run test:peft`) send their commands here instead of starting Python
for each one. A command is the same argument list the script takes on its command line:

  stdin, one JSON object per line:   {"script": "peft_interop.py", "args": ["eval", "--model", ...]}
  fd 3 (or stdout), one per line:    {"code": 0, "stdout": "...", "stderr": "..."}

`script` names one of SCRIPTS (in this folder); its main(argv) runs with stdout and stderr captured,
as if it were `python scripts/<script> ARGS`: code 0 when it returns, the SystemExit code when it
exits, 1 with the traceback on stderr when it raises. The server reads requests until stdin closes,
one at a time (the tests run several servers to run commands concurrently).
"""
import contextlib
import importlib
import io
import json
import os
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

SCRIPTS = {
    "peft_interop.py": "peft_interop",
    "qlora_interop.py": "qlora_interop",
    "peft_merge_check.py": "peft_merge_check",
    "loftq_interop.py": "loftq_interop",
}


def run(req):
    module = SCRIPTS.get(req.get("script"))
    if module is None:
        return {"code": 2, "stdout": "", "stderr": f"interop_server: unknown script {req.get('script')!r}; one of {sorted(SCRIPTS)}"}
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            importlib.import_module(module).main([str(a) for a in req.get("args", [])])
        except SystemExit as e:
            if isinstance(e.code, int):
                code = e.code
            elif e.code is not None:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: B036 - reported to the caller, the server keeps serving
            traceback.print_exc()
            code = 1
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main():
    # Replies go to fd 3 when the caller opened it, else to the real stdout; anything a library
    # prints to fd 1 outside a command then goes to stderr and cannot corrupt a reply.
    try:
        reply = os.fdopen(3, "w", buffering=1, encoding="utf-8")
    except OSError:
        reply = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except ValueError as e:
            res = {"code": 2, "stdout": "", "stderr": f"interop_server: a request is not JSON: {e}"}
        else:
            res = run(req)
        reply.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
