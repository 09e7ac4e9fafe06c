"""Quiet Hugging Face libraries: their progress bars and chatter would bury sparsecheck's report
(training logs are kept in files; errors still raise)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

_LIBRARIES = r"(transformers|trl|datasets|accelerate)"


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """Within the block: no transformers/datasets progress bars, only their errors, and no
    FutureWarning/DeprecationWarning from them."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        import datasets  # type: ignore[import-untyped]

        datasets.disable_progress_bars()
    except ImportError:  # datasets is needed only by training backends
        pass
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning, UserWarning):
                warnings.filterwarnings(
                    "ignore", category=category, module=r"(transformers|trl|datasets|accelerate)"
                )
            yield
    finally:
        transformers_logging.set_verbosity(previous)
