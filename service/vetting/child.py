"""The vetting child's entry: `python -m service.vetting.child DIRECTORY LIMITS_JSON` checks the folder and says,
one line each, `trying <what>` while probing the tokenizer, then `failed <message>` or `passed`. Any exception is a
failure with its type and message: the server's process never sees it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from service.vetting.checks import Limits, RefusedError, check_folder

MESSAGE_CHARACTERS = 2000


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
    """One line to the server, at once (line breaks in it escaped; cut to 2,000 characters)."""
    print(line.replace("\n", "\\n")[:MESSAGE_CHARACTERS], flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
