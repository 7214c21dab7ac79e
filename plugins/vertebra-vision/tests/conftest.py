"""Test-wide settings, as in the core's tests: only this project's distributions load.

The entry-point cache goes to a temporary folder, so a run never reads or writes the
user's cache.
"""

from __future__ import annotations

import os
import tempfile

os.environ["VERTEBRA_PLUGINS"] = "vertebra,vertebra-vision,vertebra-text"
os.environ["VERTEBRA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vertebra-test-cache-")
