"""Container health check: exit 0 when GET /health/live on LRP_PORT answers 200, 1 otherwise."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """Probe the local service's liveness endpoint with a short timeout."""
    url = f"http://127.0.0.1:{os.environ.get('LRP_PORT', '8000')}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
