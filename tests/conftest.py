"""Test-wide settings: tests never autoload the machine's plugins.

Only the distributions this project installs load (the core and its two first-party
plugins); tests that need other plugins write them with the `vertebra_plugins` fixture
(a `vertebra.testing.PluginSandbox`). The entry-point cache goes to a temporary folder.
"""

from __future__ import annotations

import os
import tempfile

os.environ["VERTEBRA_PLUGINS"] = "vertebra,vertebra-vision,vertebra-text"
os.environ["VERTEBRA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vertebra-test-cache-")
