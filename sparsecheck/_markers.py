"""The pluggy marker plugins implement hooks with: ``@sparsecheck.hookimpl``.

It lives alone, at the bottom of the import graph, so every built-in plugin can import it
without importing the plugin manager or the hook specifications.
"""

from __future__ import annotations

import pluggy

#: The pluggy project name of sparsecheck's hooks.
PROJECT = "sparsecheck"

hookimpl = pluggy.HookimplMarker(PROJECT)
