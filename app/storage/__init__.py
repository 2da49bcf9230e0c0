"""Storage adapter: where an archive goes (:mod:`.paths`), how it is written (:mod:`.store`) and
recorded (:mod:`.manifest`)."""

from app.storage.paths import (
    DEFAULT_PATH_TEMPLATE,
    PLACEHOLDERS,
    build_relative_path,
    sanitize_segment,
    validate_path_template,
)
from app.storage.store import ArchiveStore

__all__ = [
    "DEFAULT_PATH_TEMPLATE",
    "PLACEHOLDERS",
    "ArchiveStore",
    "build_relative_path",
    "sanitize_segment",
    "validate_path_template",
]
