"""vertebra-vision: image backbones and datasets for vertebra.

Parts are offered through entry points (see this distribution's pyproject.toml); this
package imports nothing heavy, so listing parts stays cheap.
"""

__version__ = "0.1.0"
