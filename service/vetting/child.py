"""The vetting child's entry: `python -m service.vetting.child DIRECTORY LIMITS_JSON` checks the folder and says,
one line each, `doing <what>` before each reading step and `trying <what>` before each probe text, then
`failed <message>` or `passed`. Any exception is a failure with its type and message: the server's process never
sees it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from service.errors import bounded
from service.vetting.checks import Limits, RefusedError, check_folder


def main(directory: str, limits: str) -> None:
    try:
        check_folder(Path(directory), Limits(**json.loads(limits)), say)
    except RefusedError as refusal:
        say(f"failed {refusal}")
    except Exception as problem:  # RecursionError included
        say(f"failed the files could not be read: {type(problem).__name__}: {problem}")
    else:
        say("passed")


def say(line: str) -> None:
    """One line to the server, at once (bounded as every error message is; line breaks escaped)."""
    print(bounded(line).replace("\n", "\\n"), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
