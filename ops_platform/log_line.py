"""The type of the callbacks that take one line of progress or warning to log
(`context.log.info`, `print`, …); rules and batch loops accept one, or None for quiet."""

from collections.abc import Callable

LogLine = Callable[[str], None]
