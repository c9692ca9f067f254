"""The project's exceptions. The CLI prints any of them as one line and exits with status 2."""


class ShareBertError(Exception):
    """A problem the user can fix: bad input data, a bad setting, an output folder in the way."""


class DataError(ShareBertError):
    """An input file is missing, unreadable, of the wrong kind, or inconsistent with its description."""


class ConfigError(ShareBertError, ValueError):
    """A setting is out of range or disagrees with another setting."""


def file_error(path, problem: str) -> DataError:
    """A DataError whose message names the file first, as every data error should."""
    return DataError(f"{path}: {problem}")
