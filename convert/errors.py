"""The one exception the converter raises for anything the user can fix.

Loading, mapping and writing wrap lower-level failures (a missing shard, a truncated file, an
unmapped tensor) in `ConversionError` with a message that names the file or tensor, so the CLI
can print one line and exit non-zero instead of a traceback.
"""

from __future__ import annotations


class ConversionError(Exception):
    """A checkpoint that cannot be converted, said in one line."""
